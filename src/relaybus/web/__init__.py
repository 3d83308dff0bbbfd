"""The relaybus web dashboard: ``relaybus.web.app(bus_or_store)`` is an ASGI app to serve
(``relaybus dashboard``) or mount in your own ASGI app. Needs the ``web`` extra
(``pip install "relaybus[web]"``: Starlette, Jinja2, and uvicorn for the command).

Modules: ``app`` (the application and what its routes share), ``pages`` (GET pages),
``actions`` (POST actions), ``security`` (auth and CSRF), ``render`` (values, the chart, the
timeline as the templates show them); ``templates/`` and ``static/`` (htmx, vendored).
"""

try:
    from .app import Dashboard, app
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        f'relaybus.web needs the "web" extra ({exc.name or exc} is missing): '
        'pip install "relaybus[web]"'
    ) from exc

__all__ = ["Dashboard", "app"]
