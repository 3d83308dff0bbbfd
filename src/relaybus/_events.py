"""Events: the base class, stable wire names, and the JSON codec per event class."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from ._errors import ConfigurationError, EventError
from ._validate import check_name

__all__ = ["Event", "EventCodec", "codec_for", "event_name"]


class Event:
    """Base class of events.

    Dataclasses, msgspec Structs and pydantic models can all derive from it::

        @dataclass(frozen=True)
        class OrderPlaced(rb.Event, name="order.placed"):
            order_id: int

    ``name=`` is the stable wire name stored with jobs (default ``"module.QualName"``). msgspec
    reserves the ``name`` keyword, so a class attribute ``event_name = "..."`` works too.
    """

    __slots__ = ()
    _relaybus_name: ClassVar[str | None] = None

    def __init_subclass__(cls, name: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if name is not None:
            check_name("event", name)
        cls._relaybus_name = name


def event_name(cls: type) -> str:
    """The wire name of an event class (validated)."""
    if not (isinstance(cls, type) and issubclass(cls, Event)):
        raise EventError(f"{cls!r} is not an event class: derive it from relaybus.Event")
    explicit = cls.__dict__.get("_relaybus_name")
    if explicit:
        return str(explicit)
    attr = getattr(cls, "event_name", None)
    if isinstance(attr, str):  # "" is an invalid name, not "use the default"
        return check_name("event", attr)
    default = f"{cls.__module__}.{cls.__qualname__}".replace("<locals>.", "")
    try:
        return check_name("event", default)
    except ConfigurationError:
        raise ConfigurationError(
            f"event class {cls.__qualname__} has no valid default name ({default!r}); "
            f"give it one: class {cls.__name__}(rb.Event, name='...')"
        ) from None


@dataclass(frozen=True, slots=True)
class EventCodec:
    """Encodes one event class to JSON bytes and decodes (with validation) back."""

    cls: type
    name: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    to_builtins: Callable[[Any], Any]


def codec_for(cls: type) -> EventCodec:
    name = event_name(cls)
    pydantic_model = _is_pydantic(cls)
    if pydantic_model:

        def encode_p(event: Any) -> bytes:
            return event.model_dump_json().encode()  # type: ignore[no-any-return]

        def decode_p(data: bytes) -> Any:
            return cls.model_validate_json(data)  # type: ignore[attr-defined]

        def builtins_p(event: Any) -> Any:
            return event.model_dump(mode="json")

        return EventCodec(cls, name, encode_p, decode_p, builtins_p)
    if not (dataclasses.is_dataclass(cls) or issubclass(cls, msgspec.Struct)):
        raise EventError(
            f"event class {cls.__qualname__} must be a dataclass, msgspec Struct or pydantic model"
        )
    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder(cls)
    return EventCodec(cls, name, encoder.encode, decoder.decode, msgspec.to_builtins)


def _is_pydantic(cls: type) -> bool:
    return any(
        base.__module__.startswith("pydantic") and base.__name__ == "BaseModel"
        for base in cls.__mro__
    )
