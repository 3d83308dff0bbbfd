"""A private, throwaway MariaDB server for tests that must crash a server (``kill -9``).

The shared server (127.0.0.1:3306) serves every test run on the machine: no test stops or kills
it. A test that must, starts one of these: ``mariadb-install-db`` into a temporary directory,
then ``mariadbd`` on a free 127.0.0.1 port and a socket in that directory, root with an empty
password (``--auth-root-authentication-method=normal``), run as the ``mysql`` OS user when the
tests run as root. ``kill()`` is SIGKILL (a crash: InnoDB recovers at the next ``start()``);
``stop()`` kills it if need be and removes the directory, whatever state it is in.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.stores import server_missing

_RUNNING: set[PrivateMariaDB] = set()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateMariaDB:
    def __init__(self, *, start_timeout: float = 60.0) -> None:
        self.mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
        self.install_db = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
        if not (os.access(self.mariadbd, os.X_OK) and os.access(self.install_db, os.X_OK)):
            server_missing("a private MariaDB server", FileNotFoundError("mariadbd"))
        self.start_timeout = start_timeout
        self.dir = Path(tempfile.mkdtemp(prefix="relaybus-mariadb-"))
        self.datadir = self.dir / "data"
        self.socket = self.dir / "mysqld.sock"
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._installed = False
        self._as_root = os.geteuid() == 0

    @property
    def dsn(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/test"

    @classmethod
    @contextlib.contextmanager
    def running(cls) -> Iterator[PrivateMariaDB]:
        server = cls()
        try:
            server.start()
            yield server
        finally:
            server.stop()

    def _user_args(self) -> list[str]:
        return ["--user=mysql"] if self._as_root else []

    def _install(self) -> None:
        self.datadir.mkdir(parents=True)
        if self._as_root:
            uid, gid = pwd.getpwnam("mysql")[2:4]
            os.chown(self.dir, uid, gid)
            os.chown(self.datadir, uid, gid)
        result = subprocess.run(
            [
                self.install_db, "--no-defaults", f"--datadir={self.datadir}",
                "--auth-root-authentication-method=normal", "--skip-test-db",
                *self._user_args(),
            ],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if result.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {result.stderr[-2000:]}")
        self._installed = True

    def start(self) -> None:
        if not self._installed:
            self._install()
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the server writes to it
        self.proc = subprocess.Popen(
            [
                self.mariadbd, "--no-defaults", f"--datadir={self.datadir}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
                f"--pid-file={self.dir / 'mysqld.pid'}", "--skip-name-resolve",
                "--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M",
                "--innodb-flush-log-at-trx-commit=2", "--max-connections=200",
                *self._user_args(),
            ],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        _RUNNING.add(self)
        self._wait_ready()
        self._sql("CREATE DATABASE IF NOT EXISTS test")

    def _sql(self, sql: str) -> None:
        subprocess.run(
            ["mariadb", "--no-defaults", "-uroot", f"--socket={self.socket}", "-e", sql],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"mariadbd exited: {self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                self._sql("SELECT 1")
                return
            except (OSError, subprocess.CalledProcessError):
                time.sleep(0.1)
        raise RuntimeError(f"mariadbd did not start: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the server (a crash) and wait for it to be gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)
        self.proc = None

    def restart_after_kill(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        try:
            self.kill()
        finally:
            _RUNNING.discard(self)
            shutil.rmtree(self.dir, ignore_errors=True)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return (self.dir / "server.log").read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@atexit.register
def _stop_forgotten_servers() -> None:
    for server in list(_RUNNING):
        server.stop()
