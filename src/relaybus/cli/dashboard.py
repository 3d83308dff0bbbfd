"""``relaybus dashboard``: serve ``relaybus.web.app`` with uvicorn (the ``web`` extra).

Credentials come from the environment only (never the command line, which other users of the
machine can read): ``RELAYBUS_DASHBOARD_TOKEN`` and/or ``RELAYBUS_DASHBOARD_USER`` with
``RELAYBUS_DASHBOARD_PASSWORD``. Any host but a loopback address needs one of them.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys

from .common import CLIError
from .target import target_of

__all__ = [
    "ENV_PASSWORD",
    "ENV_TOKEN",
    "ENV_USER",
    "auth_from_env",
    "check_host",
    "dashboard_command",
]

ENV_TOKEN = "RELAYBUS_DASHBOARD_TOKEN"
ENV_USER = "RELAYBUS_DASHBOARD_USER"
ENV_PASSWORD = "RELAYBUS_DASHBOARD_PASSWORD"


def auth_from_env() -> tuple[str | None, tuple[str, str] | None]:
    """(token, (user, password)) from the environment; CLIError for half a basic-auth pair."""
    token = os.environ.get(ENV_TOKEN) or None
    user = os.environ.get(ENV_USER) or None
    password = os.environ.get(ENV_PASSWORD) or None
    if (user is None) != (password is None):
        raise CLIError(f"basic auth needs both {ENV_USER} and {ENV_PASSWORD}")
    return token, (user, password) if user is not None and password is not None else None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, authenticated: bool) -> None:
    """Refuse to serve an open dashboard beyond this machine."""
    if not is_loopback(host) and not authenticated:
        raise CLIError(
            f"refusing to serve the dashboard on {host} without authentication: set "
            f"{ENV_TOKEN}, or {ENV_USER} and {ENV_PASSWORD} (or bind to 127.0.0.1)"
        )


def dashboard_command(args: argparse.Namespace) -> int:
    token, basic = auth_from_env()
    check_host(args.host, token is not None or basic is not None)
    target = target_of(args)
    try:  # the web extra is optional: imported only when the command runs
        import uvicorn

        from ..web import app
    except ImportError as exc:
        raise CLIError(
            f'the dashboard needs the "web" extra: pip install "relaybus[web]" '
            f"({exc.name or exc} is missing)"
        ) from None
    web = app(target.bus, read_only=args.read_only, token=token, basic_auth=basic, close=True)
    mode = " (read-only)" if args.read_only else ""
    print(
        f"relaybus dashboard{mode} on http://{args.host}:{args.port}/ for {target.bus.store!r}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(web, host=args.host, port=args.port, log_level="warning")
    return 0
