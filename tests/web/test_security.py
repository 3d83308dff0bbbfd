"""Dashboard security: authentication, secrets never shown, and the command's host rule
(the command runs for real, as a process serving HTTP)."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import relaybus as rb
from relaybus.cli.common import CLIError
from relaybus.cli.dashboard import check_host, is_loopback
from relaybus.web import app

from ._support import client_for, dashboard

ROOT = Path(__file__).resolve().parents[2]


def _basic(user: str, password: str) -> dict[str, str]:
    raw = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"authorization": f"Basic {raw}"}


async def test_a_token_guards_every_route_including_static_files() -> None:
    async with dashboard(rb.MemoryStore(), token="t0ken-123") as (client, _bus, ids):
        for path in ("/", "/jobs", "/static/htmx.min.js", f"/jobs/{ids['plain']}"):
            assert (await client.get(path)).status_code == 401, path
        assert (await client.post(f"/jobs/{ids['plain']}/retry")).status_code == 401
        assert (await client.get("/", headers={"authorization": "Bearer wrong"})).status_code == 401
        ok = await client.get("/jobs", headers={"authorization": "Bearer t0ken-123"})
        assert ok.status_code == 200
        # in a browser: ?token= once, kept in an HttpOnly cookie, dropped from the address
        login = await client.get("/jobs?state=discarded&token=t0ken-123")
        assert login.status_code == 303
        assert login.headers["location"] == "/jobs?state=discarded"
        assert "HttpOnly" in login.headers["set-cookie"]
        assert (await client.get("/jobs?state=discarded")).status_code == 200
        client.cookies.clear()
        assert (await client.get("/?token=nope")).status_code == 401


async def test_basic_auth_asks_the_browser_for_credentials() -> None:
    async with dashboard(rb.MemoryStore(), basic_auth=("ops", "s3cret")) as (client, _bus, _ids):
        refused = await client.get("/")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Basic")
        assert (await client.get("/", headers=_basic("ops", "wrong"))).status_code == 401
        assert (await client.get("/", headers=_basic("ops", "s3cret"))).status_code == 200
        garbage = await client.get("/", headers={"authorization": "Basic !!!"})
        assert garbage.status_code == 401


def test_auth_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="token"):
        app(rb.MemoryStore(), token="")
    with pytest.raises(ValueError, match="basic auth"):
        app(rb.MemoryStore(), basic_auth=("ops", ""))
    with pytest.raises(TypeError, match=r"relaybus\.Bus or a store"):
        app("postgresql://x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refresh"):
        app(rb.MemoryStore(), refresh=0)


async def test_dsn_passwords_never_reach_a_page() -> None:
    from relaybus.stores.postgres import PostgresStore

    store = PostgresStore("postgresql://app:hunter2secret@127.0.0.1:1/jobs")
    web = app(store)
    assert "hunter2secret" not in web.state.dashboard.store_name
    async with client_for(web) as client:
        page = await client.get("/")  # nothing listens on port 1: the store fails
        assert page.status_code == 503
        assert "the store failed" in page.text
        assert "hunter2secret" not in page.text


def test_only_loopback_hosts_may_serve_without_auth() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.com")
    check_host("127.0.0.1", False)
    check_host("0.0.0.0", True)
    with pytest.raises(CLIError, match="without authentication"):
        check_host("0.0.0.0", False)


def _cli(*args: str, **env: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RELAYBUS_")}
    environ.update(env, PYTHONPATH=str(ROOT / "src"))
    return subprocess.Popen(
        [sys.executable, "-m", "relaybus", "dashboard", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ,
    )  # fmt: skip


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_up(url: str, proc: subprocess.Popen[str], **kw: object) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=2, **kw)  # type: ignore[arg-type]
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"the dashboard did not come up: {proc.communicate()}"
                ) from None
            time.sleep(0.1)


def test_the_command_refuses_a_public_host_without_auth(tmp_path: Path) -> None:
    proc = _cli("--host", "0.0.0.0", "--dsn", f"sqlite:///{tmp_path}/jobs.db")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "refusing to serve the dashboard on 0.0.0.0 without authentication" in err
    half = _cli("--dsn", f"sqlite:///{tmp_path}/jobs.db", RELAYBUS_DASHBOARD_USER="ops")
    _, err = half.communicate(timeout=60)
    assert half.returncode == 2 and "needs both" in err


def test_the_command_serves_the_dashboard_with_a_token(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    subprocess.run(
        [sys.executable, "-m", "relaybus", "migrate", "--dsn", f"sqlite:///{db}"],
        check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    port = _free_port()
    proc = _cli(
        "--port", str(port), "--read-only", "--dsn", f"sqlite:///{db}",
        RELAYBUS_DASHBOARD_TOKEN="tok-456",
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{port}"
        assert _wait_up(f"{base}/", proc).status_code == 401
        page = httpx.get(f"{base}/jobs", headers={"authorization": "Bearer tok-456"}, timeout=5)
        assert (
            page.status_code == 200 and "read-only" in page.text and "No job matches" in page.text
        )
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
