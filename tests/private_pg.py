"""A private, throwaway PostgreSQL server for tests that must crash or restart a server.

The shared servers on this machine (127.0.0.1:5432 and friends) serve every test run at once:
a test never stops, restarts or kills them. A test that needs to do that starts one of these
instead: a fresh cluster made by ``initdb`` in a temporary directory, listening only on
127.0.0.1 on a free port (and on a unix socket in that directory), trust auth, fsync off.

    with PrivatePostgres.running() as server:
        ... server.dsn ...
        server.restart()          # pg_ctl stop -m immediate, then start: a crash + recovery
    # stopped (killed if need be) and its directory removed, even if the test failed

Run as root (CI), the server runs as the ``postgres`` OS user (``runuser -u postgres --``):
PostgreSQL refuses to run as root. Missing binaries call ``server_missing`` (a skip locally,
a failure under CI=true).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.stores import server_missing

_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_isready")
_RUNNING: set[PrivatePostgres] = set()  # stopped at interpreter exit if a teardown was missed


def find_bindir() -> Path | None:
    """$RELAYBUS_PG_BINDIR, else the newest /usr/lib/postgresql/*/bin (Debian), else the
    directory of ``initdb`` on $PATH; None if no directory has every tool."""
    candidates: list[Path] = []
    if os.environ.get("RELAYBUS_PG_BINDIR"):
        candidates.append(Path(os.environ["RELAYBUS_PG_BINDIR"]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if re.fullmatch(r"\d+(\.\d+)?", p.name)]
        for version in sorted(versions, key=lambda p: float(p.name), reverse=True):
            candidates.append(version / "bin")
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all(os.access(bindir / tool, os.X_OK) for tool in _TOOLS):
            return bindir
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """One private cluster. ``start()`` makes it (the first time) and starts it; ``stop()``
    stops it, kills it if it does not stop, and removes its directory. ``stop()`` is
    idempotent and safe to call whatever state the server is in."""

    user = "postgres"

    def __init__(self, *, start_timeout: float = 60.0) -> None:
        bindir = find_bindir()
        if bindir is None:
            server_missing(
                "a private PostgreSQL server",
                FileNotFoundError(f"no directory with {', '.join(_TOOLS)}"),
            )
            raise AssertionError("unreachable")  # server_missing skips or fails
        self.bindir = bindir
        self.start_timeout = start_timeout
        self.as_root = os.geteuid() == 0
        owner = None
        if self.as_root:
            try:
                owner = pwd.getpwnam(self.user)
            except KeyError as exc:
                server_missing("a private PostgreSQL server (no 'postgres' OS user)", exc)
                raise AssertionError("unreachable") from exc
        # Not under pytest's tmp_path: /tmp/pytest-of-root is 0700, the postgres user could not
        # reach a directory there. mkdtemp gives 0700; it then belongs to the server's user.
        self.base = Path(tempfile.mkdtemp(prefix="relaybus-pg-"))
        if owner is not None:
            os.chown(self.base, owner.pw_uid, owner.pw_gid)
        self.data = self.base / "data"
        self.logfile = self.base / "server.log"
        self.port = free_port()
        self._made = False
        self._started = False
        self._removed = False

    # ---------------------------------------------------------------- public surface

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @classmethod
    @contextlib.contextmanager
    def running(cls, **options: float) -> Iterator[PrivatePostgres]:
        server = cls(**options)
        try:
            server.start()
            yield server
        finally:
            server.stop()

    def start(self) -> None:
        """Make the cluster on first use, start it and wait until it accepts connections.

        The port is only known free when chosen: if another process took it before the first
        start, choose another and try again. Later starts (a restart) keep the port, since
        clients hold the DSN."""
        if not self._made:
            self._initdb()
        _RUNNING.add(self)
        for attempt in range(3):
            self._write_port()
            result = self._pg_ctl(
                "start",
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "-l",
                str(self.logfile),
                check=False,
            )
            if result.returncode == 0:
                self._wait_ready()
                self._started = True
                return
            if not self._started and attempt < 2 and "already in use" in self.log_tail():
                self.port = free_port()
                continue
            raise RuntimeError(
                f"private PostgreSQL did not start (pg_ctl exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n--- server log ---\n{self.log_tail()}"
            )

    def restart(self, mode: str = "immediate") -> None:
        """Stop with ``-m mode`` (immediate: every process quits at once, no checkpoint; the
        next start runs crash recovery), then start again on the same port."""
        self._pg_ctl("stop", "-m", mode, "-w", "-t", "60")
        self.start()

    def stop(self) -> None:
        """Stop the server (immediate), kill its process group if it will not stop, remove
        its directory. Never raises for a server that is already gone."""
        try:
            if self.data.joinpath("postmaster.pid").exists():
                with contextlib.suppress(subprocess.SubprocessError, OSError):
                    self._pg_ctl("stop", "-m", "immediate", "-w", "-t", "20", check=False)
                self._kill_leftovers()
        finally:
            _RUNNING.discard(self)
            if not self._removed:
                shutil.rmtree(self.base, ignore_errors=True)
                self._removed = True

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # ---------------------------------------------------------------- internals

    def _run(
        self, *cmd: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = list(cmd)
        if self.as_root:
            argv = ["runuser", "-u", self.user, "--", *argv]
        # The shared server's PG* settings (PGPORT, PGHOST, PGDATA...) must not leak in.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        result = subprocess.run(
            argv,
            cwd=self.base,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv)} failed (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}\n--- server log ---\n{self.log_tail()}"
            )
        return result

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), *args, check=check)

    def _initdb(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        conf = self.data / "postgresql.conf"
        with conf.open("a") as out:  # appending keeps the file's owner (postgres)
            out.write(
                "\n# relaybus tests: a private, disposable server\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.base}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "max_connections = 100\n"
                "shared_buffers = '32MB'\n"
                "include_if_exists = 'port.conf'\n"
            )
        self._made = True

    def _write_port(self) -> None:
        port_conf = self.data / "port.conf"
        port_conf.write_text(f"port = {self.port}\n")
        if self.as_root:
            owner = pwd.getpwnam(self.user)
            os.chown(port_conf, owner.pw_uid, owner.pw_gid)

    def _wait_ready(self) -> None:
        """pg_ctl -w already waited for "ready" in postmaster.pid; confirm over TCP."""
        deadline = time.monotonic() + self.start_timeout
        isready = str(self.bindir / "pg_isready")
        while True:
            result = self._run(
                isready,
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                check=False,
                timeout=10,
            )
            if result.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"private PostgreSQL on port {self.port} not accepting connections after "
                    f"{self.start_timeout}s\n--- server log ---\n{self.log_tail()}"
                )
            time.sleep(0.1)

    def _postmaster_pid(self) -> int | None:
        try:
            first = self.data.joinpath("postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _kill_leftovers(self) -> None:
        """If the postmaster is still there, SIGKILL it and its backends. Only a process whose
        command line names this cluster's data directory (a stale postmaster.pid may name a
        reused pid). pg_ctl starts the postmaster in a session of its own, so its process
        group is exactly this server's processes."""
        pid = self._postmaster_pid()
        if pid is None or not self._is_our_postmaster(pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if os.getpgid(pid) == pid:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while self._is_our_postmaster(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _is_our_postmaster(self, pid: int) -> bool:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return os.fsencode(str(self.data)) in argv


@atexit.register
def _stop_forgotten_servers() -> None:
    for server in list(_RUNNING):
        server.stop()
