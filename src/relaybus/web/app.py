"""``relaybus.web.app``: the dashboard as one Starlette (ASGI) application.

It reads and changes jobs only through the admin API (``bus.jobs``, ``bus.queues``,
``bus.nodes``); the pages are Jinja2 templates with autoescaping, the JS helper (htmx) and the
stylesheet are served from the package.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from .._bus import Bus
from .._driver import Driver
from .._dsn import mask_text
from .._errors import StoreError
from .actions import routes as action_routes
from .pages import not_found
from .pages import routes as page_routes
from .render import STATES, count_text, pretty, when
from .security import Auth, AuthMiddleware, csrf_token, remember_csrf

__all__ = ["Dashboard", "app"]


class Dashboard:
    """What every route shares: the bus, the settings, the templates."""

    def __init__(
        self,
        bus: Bus[Any],
        *,
        read_only: bool,
        refresh: float,
        title: str,
        owns_bus: bool,
    ) -> None:
        self.bus = bus
        self.read_only = read_only
        self.refresh = refresh
        self.title = title
        self.owns_bus = owns_bus
        self._opening = asyncio.Lock()
        folder = files("relaybus.web").joinpath("templates")
        self.templates = Environment(
            loader=FileSystemLoader(str(folder)),
            autoescape=select_autoescape(default=True, default_for_string=True),
            auto_reload=False,
        )
        self.templates.globals.update(
            states=STATES, pretty=pretty, when=when, count_text=count_text
        )

    @property
    def store_name(self) -> str:
        """The store as the header shows it: its repr, with any password masked again."""
        return mask_text(repr(self.bus.store))

    async def ready(self) -> Bus[Any]:
        """The bus, open (opened on first use; ``Bus.open`` is idempotent)."""
        async with self._opening:
            await self.bus.open()
        return self.bus

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response:
        token = csrf_token(request)
        page = self.templates.get_template(template).render(
            request=request,
            url=lambda name, **params: request.url_for(name, **params).path,
            csrf=token,
            read_only=self.read_only,
            refresh=self.refresh,
            title=self.title,
            store=self.store_name,
            **context,
        )
        response = HTMLResponse(page, status_code=status, headers=_HEADERS)
        remember_csrf(request, response, token)
        return response


#: Sent with every page: no framing, scripts and styles from the dashboard itself only.
_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"
    ),
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


def app(
    bus_or_store: Bus[Any] | Driver,
    *,
    read_only: bool = False,
    token: str | None = None,
    basic_auth: tuple[str, str] | None = None,
    refresh: float = 5.0,
    title: str = "relaybus",
    close: bool | None = None,
) -> Starlette:
    """The dashboard for a bus (its store) or a store, as an ASGI app to serve or mount.

    ``read_only``: no actions (every POST is refused). ``token`` / ``basic_auth``: require a
    bearer token (or ``?token=`` once, kept in a cookie) or HTTP basic auth on every request.
    ``refresh``: seconds between the live updates of the overview and the job list.
    The bus (or a bus over the store passed in) is opened on the first request; ``close``:
    whether the app's lifespan closes it at the end (default: only for a store passed in; a
    bus passed in is left to its owner)."""
    if isinstance(bus_or_store, Bus):
        bus, owns = bus_or_store, False
    elif isinstance(bus_or_store, Driver):
        bus, owns = Bus(store=bus_or_store), True
    else:
        raise TypeError(
            f"relaybus.web.app takes a relaybus.Bus or a store, not {type(bus_or_store).__name__}"
        )
    if not refresh > 0:
        raise ValueError(f"refresh must be a number of seconds > 0, not {refresh!r}")
    auth = Auth(token=token, basic=basic_auth)
    owns = owns if close is None else close
    dash = Dashboard(bus, read_only=read_only, refresh=refresh, title=title, owns_bus=owns)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if dash.owns_bus:
                await bus.close()

    async def store_error(request: Request, exc: Exception) -> Response:
        reason = f"the store failed: {mask_text(str(exc))}"
        return dash.render(request, "refused.html", status=503, reason=reason)

    static = StaticFiles(directory=str(files("relaybus.web").joinpath("static")))
    routes = [
        *page_routes(dash),
        *action_routes(dash),
        Mount("/static", app=static, name="static"),
    ]
    web = Starlette(
        routes=routes,
        middleware=[Middleware(AuthMiddleware, auth=auth)],
        lifespan=lifespan,
        exception_handlers={404: not_found(dash), StoreError: store_error},
    )
    web.state.dashboard = dash
    return web
