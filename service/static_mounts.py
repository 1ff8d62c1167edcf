"""Static files mounted on the app (Swagger UI and ReDoc from ``fastapi-offline``, the
demo page's files) named in logs and metrics by their mount path.

A mount leaves no route in the request scope, so the access log and the metrics would
count its files as unmatched; ``name_mounts`` wraps each mounted app so that it puts
its mount there, as a route does (``/static-offline-docs``, never the file's path).
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send


class _Named:
    def __init__(self, app: ASGIApp, mount: Mount) -> None:
        self.app = app
        self.mount = mount

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self.mount
        await self.app(scope, receive, send)


def name_mounts(app: FastAPI) -> None:
    """Make every mount of ``app`` name itself in the request scope."""
    for route in app.router.routes:
        if isinstance(route, Mount) and not isinstance(route.app, _Named):
            route.app = _Named(route.app, route)
