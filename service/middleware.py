"""ASGI middleware: request ids, access log and metrics; the request body limit.

Both are plain ASGI (no ``BaseHTTPMiddleware``), so they add no task per
request and see every response, errors included.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response, log_unexpected
from .metrics import UNMATCHED_ROUTE, Metrics
from .request_context import REQUEST_ID_HEADER, accept_or_new, reset_request_id, set_request_id

access_log = logging.getLogger("ownrank.access")
log = logging.getLogger("ownrank.service")
WORKER_HEADER = "X-Ownrank-Worker"


def route_template(scope: Scope) -> str:
    """The matched route's template (``/users/{user_id}/recommend``), never the raw path.

    Routes the framework adds itself (``/docs``, ``/openapi.json``) leave no route in
    the scope; they have no parameters, so a path equal to one of them is its own
    template."""
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    app: Any = scope.get("app")
    raw = scope.get("path")
    for candidate in getattr(app, "routes", ()):
        template = getattr(candidate, "path", None)
        if template == raw and isinstance(template, str) and "{" not in template:
            return template
    return UNMATCHED_ROUTE


class ObserveMiddleware:
    """Gives each request an id (``X-Request-ID``), logs it once, counts and times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self.pid = str(os.getpid())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_or_new(Headers(scope=scope).get(REQUEST_ID_HEADER))
        token = set_request_id(request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = int(message["status"])
                response_started = True
                headers = MutableHeaders(scope=message)
                headers.append(REQUEST_ID_HEADER, request_id)
                headers.append(WORKER_HEADER, self.pid)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            log_unexpected(exc)
            if response_started:
                raise
            response = error_response(500, "internal_error", "internal error; see the server log")
            await response(scope, receive, send_with_headers)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe_request(route, method, status, seconds)
            access_log.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )
            reset_request_id(token)


class BodyLimitMiddleware:
    """Refuses request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not declared.isdigit():
                await error_response(400, "bad_request", "invalid Content-Length")(
                    scope, receive, send
                )
                return
            if int(declared) > self.limit:
                await self._too_large(scope, receive, send)
                return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI lets an HTTPException raised while reading the body through
                    raise HTTPException(413, f"the request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, limited_receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "body_too_large", f"the request body exceeds {self.limit} bytes"
        )
        await response(scope, receive, send)
