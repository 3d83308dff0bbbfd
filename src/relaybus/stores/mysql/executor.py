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
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

from ..._dsn import dsn_password, mask_dsn, mask_text
from ..._errors import ConfigurationError, StoreClosed, StoreError
from .._sql.executor import Tx
from .._sql.queries import Query

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
        self._closed = False

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


class MyTx:
    """Named queries on one connection (``caller``: the caller's own, in its transaction).

    A transaction of the store's own costs no round trip of its own: ``transaction()`` only
    notes that one is due, the first statement travels as ``START TRANSACTION; <statement>``
    (both servers take several statements in one query), and a statement the work knows is
    its last can carry the ``COMMIT`` too (``commit=True``). A transaction whose work ran no
    statement sends nothing at all.
    """

    __slots__ = ("_begin", "_committed", "_conn", "_q", "caller")

    def __init__(self, conn: Any, queries: Mapping[str, Query], *, caller: bool) -> None:
        self._conn = conn
        self._q = queries
        self.caller = caller
        self._begin = False  # a transaction is due: the next statement starts it
        self._committed = False  # the work's last statement committed it

    async def _cursor(self) -> Any:
        cur = self._conn.cursor()
        if not hasattr(cur, "execute"):  # aiomysql: an awaitable context manager
            cur = await cur
        return cur

    async def _run(self, name: str, args: Mapping[str, Any], commit: bool = False) -> Any:
        sql = self._q[name].sql
        begin = self._begin
        if begin:
            sql = "START TRANSACTION;\n" + sql
            self._begin = False  # from here on the transaction is open: roll back on error
        if commit:
            if begin or self._in_own_transaction():
                sql += ";\nCOMMIT"
            else:
                commit = False  # no transaction of ours is open: nothing to commit
        cur = await self._cursor()
        await cur.execute(sql, args)
        # Past START TRANSACTION's answer and those of all but the query's last statement (an
        # error in a later statement is raised here).
        for _ in range(begin + self._q[name].sql.count(";\n")):
            await cur.nextset()
        if commit:
            # Read the statement's answer first: the next result set replaces it.
            done = _Done(list(await cur.fetchall()) if cur.description else [], cur.rowcount)
            await cur.nextset()  # COMMIT's answer (an error there is raised here)
            self._committed = True
            return done
        return cur

    def _in_own_transaction(self) -> bool:
        return not self.caller and _in_transaction(self._conn)

    async def fetch(self, name: str, args: Mapping[str, Any], *, commit: bool = False) -> list[Any]:
        cur = await self._run(name, args, commit)
        if isinstance(cur, _Done):
            return cur.rows
        return list(await cur.fetchall())

    async def fetchrow(self, name: str, args: Mapping[str, Any]) -> Any | None:
        cur = await self._run(name, args)
        rows = await cur.fetchall()
        return rows[0] if rows else None

    async def execute(self, name: str, args: Mapping[str, Any], *, commit: bool = False) -> int:
        cur = await self._run(name, args, commit)
        return int(cur.rowcount)

    async def insert(self, name: str, args: Mapping[str, Any]) -> int:
        """Run a one-row INSERT; the id it assigned."""
        cur = await self._run(name, args)
        return int(cur.lastrowid)

    async def executemany(
        self, name: str, rows: Sequence[Mapping[str, Any]] | Sequence[tuple[Any, ...]]
    ) -> None:
        binds = self._q[name].binds
        for row in rows:
            args = dict(zip(binds, row, strict=True)) if isinstance(row, tuple) else row
            await self._run(name, args)

    async def script(self, sql: str) -> None:
        await self._start_due()
        for statement in _statements(sql):
            cur = await self._cursor()
            await cur.execute(statement)

    async def _start_due(self) -> None:
        """Open a due transaction now (for statements that are not named queries)."""
        if self._begin:
            self._begin = False
            await self._conn.begin()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        conn = self._conn
        if self.caller and _in_transaction(conn):
            # Inside the caller's transaction: a savepoint, so a failure undoes only our part.
            await self._plain("SAVEPOINT relaybus_insert")
            try:
                yield
            except BaseException:
                with contextlib.suppress(Exception):
                    await self._plain("ROLLBACK TO SAVEPOINT relaybus_insert")
                raise
            await self._plain("RELEASE SAVEPOINT relaybus_insert")
            return
        if self._begin or self._in_own_transaction():
            yield  # already in one of ours: join it
            return
        self._begin, self._committed = True, False
        try:
            yield
        except BaseException as exc:
            started = not self._begin and not self._committed
            self._begin = False
            if started and not isinstance(exc, asyncio.CancelledError):
                with contextlib.suppress(Exception):
                    await conn.rollback()
            raise
        if self._begin:  # the work ran no statement: there is nothing to commit
            self._begin = False
        elif not self._committed:
            await conn.commit()
        self._committed = False

    async def _plain(self, sql: str) -> None:
        cur = await self._cursor()
        await cur.execute(sql)


@dataclass(frozen=True, slots=True)
class _Done:
    """What a statement that also committed returned (read before COMMIT's answer replaced it
    on the cursor)."""

    rows: list[Any]
    rowcount: int


def _in_transaction(conn: Any) -> bool:
    status = getattr(conn, "get_transaction_status", None)
    if status is not None and status():
        return True
    autocommit = getattr(conn, "get_autocommit", None)
    return autocommit is not None and not autocommit()


def _statements(sql: str) -> list[str]:
    """A migration script's statements: split at ``;`` ending a line (comments dropped)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    parts = re.split(r";[ \t]*(?:\n|$)", "\n".join(lines))
    return [part.strip() for part in parts if part.strip()]


class MySQLExecutor:
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
