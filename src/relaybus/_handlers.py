"""Handler specs, class-based handlers, and the registry a Bus owns."""

from __future__ import annotations

import asyncio
import inspect
import threading
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from ._context import Context
from ._errors import ConfigurationError, EventError
from ._events import Event, EventCodec, codec_for
from ._isolation.call import process_handler
from ._lifecycle import LIFECYCLE_CLASSES
from ._options import BackoffLike, Replace, Unique, resolve_backoff
from ._validate import check_name, optional_seconds

_LIFECYCLE = frozenset(LIFECYCLE_CLASSES.values())

__all__ = [
    "Handler",
    "HandlerFunc",
    "InlineSpec",
    "JobHandler",
    "JobSpec",
    "Registry",
    "call_in_daemon_thread",
    "check_isolation",
    "check_priority",
    "default_handler_name",
]

E = TypeVar("E")
T = TypeVar("T")

HandlerFunc = Callable[[Any, Context[Any]], Any]
AsyncHandler = Callable[[Any, Context[Any]], Awaitable[Any]]
Isolation = Literal["process"] | None


def check_priority(priority: object) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise ConfigurationError(
            f"priority must be an integer 0-9 (lower runs first), not {priority!r}"
        )
    return int(priority)


def default_handler_name(func: Any) -> str:
    module = getattr(func, "__module__", None) or type(func).__module__
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    name = f"{module}.{qualname}".replace("<locals>.", "")
    try:
        return check_name("handler", name)
    except ConfigurationError:
        raise ConfigurationError(
            f"handler {qualname!r} has no valid default name ({name!r}); pass name='...'"
        ) from None


async def call_in_daemon_thread(func: Callable[..., T], *args: Any) -> T:
    """Run a blocking function in a new daemon thread and await its result.

    Daemon threads (unlike the default executor) never keep the process alive at exit, which
    matters when a timed-out sync handler is abandoned while still running.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return  # abandoned (timed out or cancelled)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = func(*args)
        except BaseException as exc:  # handed to the awaiting task, never lost
            loop.call_soon_threadsafe(settle, None, exc)
        else:
            loop.call_soon_threadsafe(settle, result, None)

    threading.Thread(target=run, name="relaybus-sync-handler", daemon=True).start()
    return await future


def _as_async(func: HandlerFunc) -> tuple[AsyncHandler, bool]:
    """An async callable for ``func`` and whether ``func`` itself is async."""
    target: Any = func if inspect.isroutine(func) else getattr(func, "__call__", func)  # noqa: B004
    if inspect.iscoroutinefunction(target):
        return func, True

    async def in_thread(event: Any, ctx: Context[Any]) -> Any:
        return await call_in_daemon_thread(func, event, ctx)

    return in_thread, False


@dataclass(frozen=True, slots=True)
class InlineSpec:
    name: str
    event: type
    call: AsyncHandler
    is_async: bool


@dataclass(frozen=True, slots=True)
class JobSpec:
    name: str
    event: type
    call: AsyncHandler
    is_async: bool
    queue: str
    priority: int
    max_attempts: int
    timeout: float | None
    backoff: Callable[[int], float]
    unique: Unique | None
    replace: Replace | None
    isolation: Isolation = None  # "process": runs in a child process of the worker's pool
    target: HandlerFunc | None = None  # the function itself (what a child process calls)


def check_isolation(
    isolation: object, func: HandlerFunc, name: str, explicit: bool
) -> Isolation:
    """``isolation="process"`` takes a plain ``def`` function a child process can import,
    under a name that is the same there (``explicit``: the caller gave ``name=``)."""
    if isolation is None:
        return None
    if isolation != "process":
        raise ConfigurationError(f"isolation= takes 'process' or None, not {isolation!r}")
    where = f"handler {name!r}"
    if inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(
        getattr(func, "__call__", None)  # noqa: B004
    ):
        raise ConfigurationError(
            f"{where} is async: isolation='process' runs plain def handlers (an async handler "
            "is cancelled at its timeout already)"
        )
    if not inspect.isfunction(func):
        raise ConfigurationError(
            f"{where}: isolation='process' takes a module-level def function, not "
            f"{type(func).__name__} (a child process finds it by importing the app)"
        )
    if func.__name__ == "<lambda>":
        raise ConfigurationError(
            f"{where} is a lambda: isolation='process' needs a module-level def function"
        )
    if "<locals>" in func.__qualname__:
        raise ConfigurationError(
            f"{where} is defined inside {func.__qualname__.split('.<locals>')[0]}(): a child "
            "process imports the app and cannot reach it; define it at module level"
        )
    if func.__module__ == "__main__" and not explicit:
        raise ConfigurationError(
            f"{where} is defined in a script (__main__): a child process imports it under its "
            "module name, where its default name differs; pass name='...'"
        )
    return "process"


class Handler(Generic[E]):
    """Class-based inline handler: subclass ``rb.Handler[MyEvent]``, define ``handle``, then
    ``bus.register(instance)``. Optional class attribute ``name``."""

    name: str | None = None

    async def handle(self, event: E, ctx: Context[Any]) -> None:
        raise NotImplementedError


class JobHandler(Generic[E]):
    """Class-based job handler: subclass ``rb.JobHandler[MyEvent]``, define ``handle``, set any
    of the job options as class attributes, then ``bus.register(instance)``."""

    name: str | None = None
    queue: str = "default"
    priority: int = 2
    max_attempts: int = 10
    timeout: float | timedelta | None = 60.0
    backoff: BackoffLike | None = None
    unique: Unique | None = None
    replace: Replace | None = None

    async def handle(self, event: E, ctx: Context[Any]) -> None:
        raise NotImplementedError


def event_type_of(obj: object, base: type) -> type:
    """The ``E`` of a ``Handler[E]`` / ``JobHandler[E]`` subclass instance."""
    for klass in type(obj).__mro__:
        for orig in getattr(klass, "__orig_bases__", ()):
            if typing.get_origin(orig) is base:
                (arg,) = typing.get_args(orig)
                if isinstance(arg, type):
                    return arg
    raise EventError(f"{type(obj).__qualname__} must subclass {base.__name__}[SomeEvent]")


class Registry:
    """Every handler and event class a Bus knows. Owned by one Bus; never global."""

    def __init__(self) -> None:
        self.inline: dict[type, list[InlineSpec]] = {}
        self.jobs: dict[type, list[JobSpec]] = {}
        self.job_by_name: dict[str, JobSpec] = {}
        self.codecs: dict[type, EventCodec] = {}
        self.codecs_by_name: dict[str, EventCodec] = {}
        #: The Bus's dispatch plans (``_plan.Plan``) per event class, emptied on every change
        #: here so that a cached plan is never stale.
        self.plans: dict[type, Any] = {}

    def codec(self, cls: type) -> EventCodec:
        codec = self.codecs.get(cls)
        if codec is None:
            if not (isinstance(cls, type) and issubclass(cls, Event)):
                raise EventError(f"{cls!r} is not an event class: derive it from relaybus.Event")
            codec = codec_for(cls)
            other = self.codecs_by_name.get(codec.name)
            if other is not None and other.cls is not cls:
                raise ConfigurationError(
                    f"event name {codec.name!r} is used by both {other.cls.__qualname__} and "
                    f"{cls.__qualname__}"
                )
            self.codecs[cls] = codec
            self.codecs_by_name[codec.name] = codec
        return codec

    def add_inline(self, event: type, func: HandlerFunc, name: str | None) -> InlineSpec:
        if event in _LIFECYCLE:
            raise ConfigurationError(
                f"{event.__name__} is a lifecycle event, raised by the store in the transaction "
                f"of a state change, not by dispatch: handle it with a job handler "
                f"(@bus.job(rb.{event.__name__}) on a Bus(lifecycle_events=True))"
            )
        self.codec(event)
        call, is_async = _as_async(func)
        spec = InlineSpec(
            name=check_name("handler", name) if name is not None else default_handler_name(func),
            event=event,
            call=call,
            is_async=is_async,
        )
        self.inline.setdefault(event, []).append(spec)
        self.plans.clear()
        return spec

    def add_job(
        self,
        event: type,
        func: HandlerFunc,
        *,
        name: str | None,
        queue: str,
        priority: int,
        max_attempts: int,
        timeout: float | timedelta | None,
        backoff: BackoffLike | None,
        unique: Unique | None,
        replace: Replace | None,
        isolation: Isolation = None,
    ) -> JobSpec:
        codec = self.codec(event)
        handler_name = (
            check_name("handler", name) if name is not None else default_handler_name(func)
        )
        if handler_name in self.job_by_name:
            raise ConfigurationError(
                f"a job handler named {handler_name!r} is already registered; pass name='...'"
            )
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an integer >= 1, not {max_attempts!r}")
        if unique is not None and not isinstance(unique, Unique):
            raise ConfigurationError("unique= takes rb.Unique(...)")
        if replace is not None and not isinstance(replace, Replace):
            raise ConfigurationError("replace= takes rb.Replace(...)")
        if replace is not None and unique is None:
            raise ConfigurationError("replace= only applies to unique jobs: also pass unique=")
        isolated = check_isolation(isolation, func, handler_name, name is not None)
        call, is_async = _as_async(func)
        if isolated is not None:
            call = process_handler(handler_name, codec.encode, call)
        spec = JobSpec(
            name=handler_name,
            event=event,
            call=call,
            is_async=is_async,
            queue=check_name("queue", queue),
            priority=check_priority(priority),
            max_attempts=max_attempts,
            timeout=optional_seconds("timeout", timeout),
            backoff=resolve_backoff(backoff),
            unique=unique,
            replace=replace,
            isolation=isolated,
            target=func,
        )
        self.jobs.setdefault(event, []).append(spec)
        self.job_by_name[handler_name] = spec
        self.plans.clear()
        return spec

    def register(self, obj: object) -> InlineSpec | JobSpec:
        if isinstance(obj, JobHandler):
            event = event_type_of(obj, JobHandler)
            return self.add_job(
                event,
                obj.handle,
                name=obj.name or default_handler_name(type(obj)),
                queue=obj.queue,
                priority=obj.priority,
                max_attempts=obj.max_attempts,
                timeout=obj.timeout,
                backoff=obj.backoff,
                unique=obj.unique,
                replace=obj.replace,
            )
        if isinstance(obj, Handler):
            event = event_type_of(obj, Handler)
            return self.add_inline(event, obj.handle, obj.name or default_handler_name(type(obj)))
        raise ConfigurationError(
            f"register() takes an rb.Handler[E] or rb.JobHandler[E] instance, not {obj!r}"
        )
