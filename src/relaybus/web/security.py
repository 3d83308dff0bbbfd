"""The dashboard's guards: authentication (a token or HTTP basic auth) and CSRF protection.

Authentication is an ASGI middleware in front of every route (static files included). A token
is accepted as ``Authorization: Bearer TOKEN``, or once as ``?token=TOKEN``, which sets an
HttpOnly cookie and redirects to the same page without the token in the address.

CSRF: every form carries the value of a random per-browser cookie (double submit), compared in
constant time; a request a browser marks as cross-site (``Sec-Fetch-Site``) or whose ``Origin``
is another host is refused as well. Only POST changes anything.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import URL
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

__all__ = [
    "CSRF_COOKIE",
    "TOKEN_COOKIE",
    "Auth",
    "AuthMiddleware",
    "csrf_problem",
    "csrf_token",
    "remember_csrf",
]

CSRF_COOKIE = "relaybus_csrf"
TOKEN_COOKIE = "relaybus_token"

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


@dataclass(frozen=True)
class Auth:
    """What the dashboard accepts: a bearer token, basic-auth credentials, or both; neither
    means the dashboard is open (the command allows that on localhost only)."""

    token: str | None = None
    basic: tuple[str, str] | None = None

    def __post_init__(self) -> None:
        if self.token is not None and not self.token:
            raise ValueError("the dashboard token must not be empty")
        if self.basic is not None and (not self.basic[0] or not self.basic[1]):
            raise ValueError("basic auth needs a user name and a password")

    @property
    def configured(self) -> bool:
        return self.token is not None or self.basic is not None

    def allows(self, conn: HTTPConnection) -> bool:
        if not self.configured:
            return True
        header = conn.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if self.token is not None:
            cookie = conn.cookies.get(TOKEN_COOKIE, "")
            if scheme.lower() == "bearer" and _same(value.strip(), self.token):
                return True
            if cookie and _same(cookie, self.token):
                return True
        if self.basic is not None and scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False
            return _same(user, self.basic[0]) & _same(password, self.basic[1])
        return False


class AuthMiddleware:
    """Refuse every request that ``auth`` does not allow (401), before any route runs."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or not self.auth.configured:
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        response: Response | None = None
        token = conn.query_params.get("token")
        if token is not None and self.auth.token is not None and _same(token, self.auth.token):
            response = _token_login(conn, token)
        elif not self.auth.allows(conn):
            headers = {}
            if self.auth.basic is not None:
                headers["WWW-Authenticate"] = 'Basic realm="relaybus dashboard"'
            response = PlainTextResponse(
                "relaybus dashboard: authentication required", status_code=401, headers=headers
            )
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)


def _token_login(conn: HTTPConnection, token: str) -> Response:
    """The token once in the address: keep it in a cookie, show the address without it."""
    query = [(k, v) for k, v in conn.query_params.multi_items() if k != "token"]
    target = URL(scope=conn.scope).replace(query=urlencode(query))
    response = RedirectResponse(
        f"{target.path}{'?' + target.query if target.query else ''}", status_code=303
    )
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict", path=_root(conn))
    return response


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: its cookie's, or a new one (see ``remember_csrf``)."""
    existing = request.cookies.get(CSRF_COOKIE)
    if existing and len(existing) >= 32:
        return existing
    return secrets.token_urlsafe(32)


def remember_csrf(request: Request, response: Response, token: str) -> None:
    """Set the CSRF cookie on ``response`` when the browser does not hold ``token`` yet."""
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict", path=_root(request)
        )


def csrf_problem(request: Request, form_token: object) -> str | None:
    """Why a POST fails the CSRF check, or None when it passes."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a cross-site request ({site})"
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.url.netloc:
        return f"a request from another origin ({origin})"
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie:
        return "no CSRF cookie (load a dashboard page first)"
    if not isinstance(form_token, str) or not form_token:
        return "no CSRF token in the form"
    if not _same(form_token, cookie):
        return "a CSRF token that does not match"
    return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _root(conn: HTTPConnection) -> str:
    root = str(conn.scope.get("root_path", "")).rstrip("/")
    return root + "/"
