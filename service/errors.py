"""Every error the service answers is JSON with a stable ``code``, never a stack trace.

Body: ``{"code": "...", "message": "...", "details": ..., "request_id": "..."}``.
The SDK's typed errors map to statuses by their ``code``; request validation is
422 (``validation_error``), except a body that is not JSON at all, which is 400
(``invalid_json``). Validation details name the field and the rule, never echo
the value sent (it may be someone's event or query).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import OwnrankError
from .request_context import current_request_id

log = logging.getLogger("ownrank.service")

# SDK error code -> (HTTP status); anything else an OwnrankError raises is a 400
SDK_STATUS = {
    "invalid_input": 400,
    "invalid_filter": 400,
    "invalid_item": 422,
    "batch_too_large": 413,
    "item_not_found": 404,
    "model_mismatch": 409,
    "dimension_mismatch": 409,
    "user_erased": 409,
    "stale_generation": 409,
    "event_id_conflict": 409,
    "reset_required": 409,
    "version_conflict": 412,
    "clock_ahead": 422,
    "store_busy": 409,
    "device_revoked": 401,
    "too_many_devices": 409,
}

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    412: "precondition_failed",
    413: "body_too_large",
    415: "unsupported_media_type",
    428: "precondition_required",
    422: "validation_error",
    429: "rate_limited",
    503: "not_ready",
}


class ErrorResponse(BaseModel):
    """The body of every error response."""

    code: str
    message: str
    details: Any = None
    request_id: str | None = None


class ApiError(Exception):
    """An error the service answers on purpose."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = dict(headers or {})


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(
        code=code, message=message, details=details, request_id=current_request_id()
    )
    return JSONResponse(body.model_dump(), status_code=status, headers=dict(headers or {}))


def _validation_details(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in list(errors)[:20]:
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")).removeprefix("Value error, "),
                "type": str(err.get("type", "")),
            }
        )
    return out


def _sdk_details(exc: OwnrankError) -> Any:
    problems = getattr(exc, "problems", None)
    if problems:
        return [
            p if isinstance(p, str) else {"position": p[0], "item_id": p[1], "reason": p[2]}
            for p in list(problems)[:100]
        ]
    return None


async def _on_api_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _on_sdk_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, OwnrankError)
    status = SDK_STATUS.get(exc.code, 400)
    return error_response(status, exc.code, exc.message, _sdk_details(exc))


async def _on_validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "invalid_json", "the request body is not valid JSON")
    return error_response(
        422,
        "validation_error",
        "the request does not match the schema",
        _validation_details(errors),
    )


# methods tried for ``Allow`` (QUERY: the safe method with a body, RFC draft)
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "QUERY", "TRACE")
_SCOPE_KEYS = ("type", "path", "raw_path", "root_path", "headers", "query_string", "app")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at the request's path, for RFC 9110's ``Allow``.
    Starlette's 405 names only the methods of the first route matching the path, but one
    path may have several routes (``PUT`` and ``DELETE /users/{user_id}``). Each method
    is tried on a fresh scope, so this relies on nothing but ``BaseRoute.matches``."""
    base = {key: request.scope[key] for key in _SCOPE_KEYS if key in request.scope}
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(route.matches({**base, "method": method})[0] == Match.FULL for route in routes)
    ]


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = HTTP_CODES.get(exc.status_code, "http_error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    headers = dict(exc.headers or {})
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's body parser gives up on JSON nested about a thousand levels deep;
        # no request model accepts anything near that deep (properties: 16 levels)
        return error_response(
            422, "validation_error", "the request body nests lists/objects too deeply"
        )
    if exc.status_code == 405:
        methods = allowed_methods(request)
        if methods:
            headers["Allow"] = ", ".join(methods)
    return error_response(exc.status_code, code, message, headers=headers)


def scrubbed_traceback(exc: BaseException) -> str:
    """Where ``exc`` happened: every frame of it and of its causes, with the exception
    classes but without their messages (a message may quote a user id, a token or
    the request body). Frames show code, never the values of variables."""
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        frames = "".join(traceback.format_tb(current.__traceback__))
        parts.append(f"{frames}{type(current).__module__}.{type(current).__qualname__}")
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )
    # innermost cause first, as Python prints a chain
    joiner = "\n(the error above caused the one below; messages omitted)\n"
    return "Traceback (most recent call last):\n" + joiner.join(reversed(parts))


def log_unexpected(exc: BaseException) -> None:
    """Log an unexpected error with its location; the request id comes with every log
    line (``logs.JsonFormatter``), so a 500's ``request_id`` finds its traceback."""
    log.error(
        "unhandled error: %s",
        type(exc).__name__,
        extra={"traceback": scrubbed_traceback(exc)},
    )


async def _on_unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log_unexpected(exc)
    return error_response(500, "internal_error", "internal error; see the server log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(OwnrankError, _on_sdk_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for the error statuses a route can answer."""
    return {
        s: {"model": ErrorResponse, "description": HTTP_CODES.get(s, "error")} for s in statuses
    }
