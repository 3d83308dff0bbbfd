"""The MySQL/MariaDB executor: a small pool of the store's own connections (asyncmy by default,
or aiomysql: the same API), the caller's connection for ``conn=``, and the contention rules.

- The store's own connections run READ COMMITTED, in UTC, with a strict ``sql_mode`` and a
  bounded lock wait (``session_isolation``, ``session_settings``). A caller's connection keeps
  its own settings: relaybus only inserts into its transaction.
- Deadlocks (1213) and lock wait timeouts (1205) on the store's own connections are retried
  here, the whole work again in a new transaction, so users never see them. On the caller's
  connection nothing is retried: the caller gets a :class:`StoreError` saying that its
  transaction was rolled back (after a lock wait timeout, the store rolls it back: InnoDB would
  otherwise roll back only the statement).
- A connection whose query was cancelled or timed out mid-flight (or that lost its server) is
  closed, never returned to the pool: it may still have an answer in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from ..._dsn import dsn_password, mask_dsn, mask_text
from ..._errors import ConfigurationError, StoreClosed, StoreError
from .._sql.executor import Tx
from .._sql.queries import Query
from .held import HeldConnections
from .tx import MyTx, in_transaction

__all__ = ["MySQLExecutor", "ServerInfo", "parse_dsn"]

T = TypeVar("T")
_logger = logging.getLogger("relaybus.mysql")

#: Server error codes: a deadlock and a lock wait timeout (retried on the store's own
#: connections), a duplicate key, a missing table or database.
DEADLOCK, LOCK_WAIT_TIMEOUT, DUPLICATE_KEY = 1213, 1205, 1062
NO_SUCH_TABLE, UNKNOWN_DATABASE = 1146, 1049
RETRY_CODES = frozenset({DEADLOCK, LOCK_WAIT_TIMEOUT})
#: Codes meaning the server is not reachable (now): client-side connection errors (2000+),
#: server shutdown or kill, too many connections, access denied, read-only, inactivity.
UNAVAILABLE_CODES = frozenset(
    {1040, 1044, 1045, 1053, 1077, 1152, 1153, 1158, 1159, 1160, 1161, 1290, 1836, 1927, 4031}
)
#: How often the store's own work runs again after a deadlock or lock wait timeout.
CONTENTION_TRIES = 20
#: Seconds a new connection may take; seconds a statement of the store waits for a row lock.
CONNECT_TIMEOUT = 10.0
LOCK_WAIT_TIMEOUT_SECONDS = 10

def parse_dsn(dsn: str) -> dict[str, Any]:
    """``mysql://user:password@host:port/database?unix_socket=...`` as connect arguments."""
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"invalid MySQL DSN {mask_dsn(dsn)!r}: {exc}") from None
    if parts.scheme.lower() not in ("mysql", "mariadb"):
        raise ConfigurationError(
            f"a MySQL DSN starts with mysql:// or mariadb://, not {mask_dsn(dsn)!r}"
        )
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise ConfigurationError(
            f"the MySQL DSN {mask_dsn(dsn)!r} names no database (mysql://user@host/DATABASE)"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    args: dict[str, Any] = {
        "host": parts.hostname or "127.0.0.1",
        "port": port or 3306,
        "user": unquote(parts.username) if parts.username else "root",
        "password": dsn_password(dsn) or "",
        "db": database,
        "charset": query.get("charset", "utf8mb4"),
    }
    if "unix_socket" in query:
        args["unix_socket"] = query["unix_socket"]
    if "connect_timeout" in query:
        args["connect_timeout"] = float(query["connect_timeout"])
    return args


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the store learns about its server at open."""

    version: str
    mariadb: bool
    numbers: tuple[int, int, int]
    autoinc_lock_mode: int
    autoinc_increment: int


def parse_version(version: str) -> tuple[bool, tuple[int, int, int]]:
    """(is MariaDB, (major, minor, patch)) of a ``SELECT VERSION()`` string."""
    mariadb = "mariadb" in version.lower()
    text = version
    if mariadb and text.startswith("5.5.5-"):  # old replication prefix of MariaDB 10
        text = text[len("5.5.5-") :]
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    if match is None:
        raise StoreError(f"cannot read the MySQL server version {version!r}")
    numbers = (int(match.group(1)), int(match.group(2)), int(match.group(3)))
    return mariadb, numbers


def check_version(version: str) -> tuple[bool, tuple[int, int, int]]:
    """Refuse a server without ``SKIP LOCKED`` or ``JSON_TABLE`` (MySQL < 8.0.4: SKIP LOCKED
    arrived in 8.0.1, JSON_TABLE in 8.0.4; MariaDB < 10.6), naming the version found."""
    mariadb, numbers = parse_version(version)
    if mariadb and numbers < (10, 6, 0):
        raise StoreError(
            f"MySQLStore needs MariaDB 10.6 or later (FOR UPDATE SKIP LOCKED, JSON_TABLE); "
            f"this server is MariaDB {'.'.join(map(str, numbers))} ({version})"
        )
    if not mariadb and numbers < (8, 0, 4):
        raise StoreError(
            f"MySQLStore needs MySQL 8.0.4 or later (FOR UPDATE SKIP LOCKED, JSON_TABLE); "
            f"this server is MySQL {'.'.join(map(str, numbers))} ({version})"
        )
    return mariadb, numbers


class _Driver:
    """The client library: asyncmy or aiomysql (aiomysql-compatible APIs)."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name == "asyncmy":
            import asyncmy
            import asyncmy.errors

            self.module: Any = asyncmy
            self.error: type[BaseException] = asyncmy.errors.MySQLError
            self.interface_error: type[BaseException] = asyncmy.errors.InterfaceError
            self.connection_types: tuple[type[Any], ...] = (asyncmy.connection.Connection,)
        elif name == "aiomysql":
            import aiomysql  # type: ignore[import-not-found,import-untyped,unused-ignore]
            import pymysql  # type: ignore[import-not-found,import-untyped,unused-ignore]

            self.module = aiomysql
            self.error = pymysql.err.MySQLError
            self.interface_error = pymysql.err.InterfaceError
            self.connection_types = (aiomysql.Connection,)
        else:
            raise ConfigurationError(
                f"MySQLStore driver must be 'asyncmy' or 'aiomysql', not {name!r}"
            )

    async def connect(self, args: Mapping[str, Any]) -> Any:
        kwargs = dict(args)
        kwargs.setdefault("connect_timeout", CONNECT_TIMEOUT)
        return await self.module.connect(autocommit=True, **kwargs)


def error_code(exc: BaseException) -> int | None:
    """The MySQL error number of a driver error, if it has one."""
    args = getattr(exc, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def _broken(exc: BaseException | None, driver: _Driver) -> bool:
    """Whether a connection that raised ``exc`` must be closed rather than pooled."""
    if exc is None:
        return False
    if not isinstance(exc, driver.error) or isinstance(exc, driver.interface_error):
        return True  # cancelled mid-query, timed out, lost, or a client-side fault
    code = error_code(exc)
    return code is None or code >= 2000 or code in UNAVAILABLE_CODES


def _close_now(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


class _Pool:
    """At most ``max_size`` connections; borrow one, give it back or close it."""

    def __init__(
        self, connect: Callable[[], Awaitable[Any]], driver: _Driver, max_size: int
    ) -> None:
        self._connect = connect
        self._driver = driver
        self._idle: list[Any] = []
        self._slots = asyncio.Semaphore(max_size)
        self.max_size = max_size
        self._closed = False

    def grow(self, max_size: int) -> None:
        """Allow up to ``max_size`` connections (never shrinks)."""
        while self.max_size < max_size:
            self.max_size += 1
            self._slots.release()

    async def fill(self, count: int) -> None:
        for _ in range(count):
            self._idle.append(await self._connect())

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[Any]:
        if self._closed:
            raise StoreClosed("MySQLStore is not open: use `async with bus:`")
        async with self._slots:
            conn = self._idle.pop() if self._idle else await self._connect()
            failure: BaseException | None = None
            try:
                yield conn
            except BaseException as exc:
                failure = exc
                raise
            finally:
                if self._closed or _broken(failure, self._driver):
                    _close_now(conn)
                    if failure is not None and not isinstance(failure, asyncio.CancelledError):
                        # The server may be gone: its other idle connections are likely dead.
                        for idle in self._idle:
                            _close_now(idle)
                        self._idle.clear()
                else:
                    self._idle.append(conn)

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            try:
                async with asyncio.timeout(2):
                    await conn.ensure_closed()
            except BaseException:
                _close_now(conn)


class MySQLExecutor(HeldConnections):
    """Connections for a MySQLStore (see the module docstring)."""

    def __init__(
        self,
        dsn: str,
        queries: Mapping[str, Query],
        *,
        driver: str,
        min_size: int,
        max_size: int,
    ) -> None:
        self.dsn = dsn
        self._args = parse_dsn(dsn)
        self._q = queries
        self.driver = _Driver(driver)
        self._min_size = min_size
        self._max_size = max_size
        self.pool: _Pool | None = None
        self.server: ServerInfo | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._init_room(max_size)

    # -- lifecycle
    async def open(self) -> None:
        if self.pool is not None:
            return
        pool = _Pool(self._connect, self.driver, self._max_size)
        try:
            await pool.fill(max(1, self._min_size))
        except BaseException:
            await pool.close()
            raise
        self.pool = pool

    async def _connect(self) -> Any:
        try:
            conn = await self.driver.connect(self._args)
        except (OSError, TimeoutError, self.driver.error) as exc:
            raise StoreError(f"cannot connect to MySQL: {self.describe(exc)}") from None
        try:
            await self._setup(conn)
        except BaseException as exc:
            _close_now(conn)
            if isinstance(exc, StoreError) or not isinstance(exc, (OSError, self.driver.error)):
                raise
            raise StoreError(f"cannot set up a MySQL connection: {self.describe(exc)}") from None
        return conn

    async def _setup(self, conn: Any) -> None:
        tx = MyTx(conn, self._q, caller=False)
        if self.server is None:
            row = await tx.fetchrow("server_info", {})
            assert row is not None
            version = str(row[0])
            mariadb, numbers = check_version(version)
            self.server = ServerInfo(version, mariadb, numbers, int(row[1]), int(row[2] or 1))
        await tx.execute("session_isolation", {})
        await tx.execute("session_settings", {"lock_wait_timeout": LOCK_WAIT_TIMEOUT_SECONDS})

    async def close(self) -> None:
        pool, self.pool = self.pool, None
        if pool is not None:
            await pool.close()

    def _pool(self) -> _Pool:
        if self.pool is None:
            raise StoreClosed("MySQLStore is not open: use `async with bus:`")
        return self.pool

    def _own_tx(self, conn: Any) -> MyTx:
        return MyTx(conn, self._q, caller=False)

    def _reusable(self, conn: Any, exc: BaseException) -> bool:
        return not isinstance(exc, self.driver.error) and not in_transaction(conn)

    # -- running work
    async def run(
        self,
        work: Callable[[Tx], Awaitable[T]],
        *,
        transaction: bool = False,
        conn: Any = None,
        orphan: Callable[[T], None] | None = None,
    ) -> T:
        if conn is not None:
            return await self._run_on_caller(work, conn)
        pool = self._pool()
        for attempt in range(CONTENTION_TRIES):
            try:
                async with pool.borrow() as own:
                    tx = MyTx(own, self._q, caller=False)
                    if not transaction:
                        return await work(tx)
                    async with tx.transaction():
                        return await work(tx)
            except self.driver.error as exc:
                if error_code(exc) not in RETRY_CODES:
                    raise
                if attempt == CONTENTION_TRIES - 1:
                    raise StoreError(
                        f"MySQL kept reporting lock conflicts after {CONTENTION_TRIES} tries: "
                        f"{self.describe(exc)}"
                    ) from exc
                _logger.debug("retrying after %s", self.describe(exc))
                await asyncio.sleep(random.uniform(0.002, 0.01) * min(attempt + 1, 10))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _run_on_caller(self, work: Callable[[Tx], Awaitable[T]], conn: Any) -> T:
        try:
            return await work(MyTx(conn, self._q, caller=True))
        except self.driver.error as exc:
            code = error_code(exc)
            if code not in RETRY_CODES:
                raise
            if code == LOCK_WAIT_TIMEOUT:  # InnoDB rolled back the statement only
                with contextlib.suppress(Exception):
                    await conn.rollback()
            what = "a deadlock" if code == DEADLOCK else "a lock wait timeout"
            raise StoreError(
                f"inserting jobs on your connection (conn=) met {what} ({self.describe(exc)}): "
                "your transaction was rolled back; run it again"
            ) from exc

    async def run_detached(self, work: Callable[[Tx], Awaitable[T]]) -> T:
        """On a connection of its own, closed afterwards (a migration's named lock ends with
        the session), whether or not the store is open."""
        try:
            conn = await self._connect()
        except StoreError as exc:
            raise StoreError(f"cannot connect to migrate: {exc}") from None
        try:
            tx = MyTx(conn, self._q, caller=False)
            await tx.execute("quiet_notes", {})  # no "already exists" notes (IF NOT EXISTS)
            async with tx.transaction():
                return await work(tx)
        finally:
            try:
                async with asyncio.timeout(5):
                    await conn.ensure_closed()
            except BaseException:
                _close_now(conn)

    def post(self, work: Callable[[Tx], Awaitable[object]]) -> None:
        async def run() -> None:
            try:
                await self.run(work, transaction=True)
            except Exception:
                _logger.exception("a background statement failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def check_conn(self, conn: Any) -> None:
        if not isinstance(conn, self.driver.connection_types):
            raise StoreError(
                f"MySQLStore takes conn= as an open {self.driver.name} connection, "
                f"not {type(conn).__name__}"
            )

    def describe(self, exc: BaseException) -> str:
        return mask_text(f"{type(exc).__name__}: {exc}", self.dsn)

    async def listen(
        self, channel: str, on_notify: Callable[[str], None]
    ) -> Callable[[], Awaitable[None]] | None:
        return None  # MySQL cannot push: workers poll (adaptively)
