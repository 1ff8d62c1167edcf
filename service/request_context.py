"""The request id of the request being served, visible to logs in any thread.

A context variable follows the request into the threadpool (Starlette copies
the context when it runs a sync endpoint), so log lines written by the engine
during a request carry its id too.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar, Token

REQUEST_ID_HEADER = "X-Request-ID"
_request_id: ContextVar[str | None] = ContextVar("ownrank_request_id", default=None)
_VALID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def current_request_id() -> str | None:
    return _request_id.get()


def set_request_id(value: str | None) -> Token[str | None]:
    return _request_id.set(value)


def reset_request_id(token: Token[str | None]) -> None:
    _request_id.reset(token)


def accept_or_new(candidate: str | None) -> str:
    """The client's id when it is short and plain (it goes into logs), else a new one."""
    if candidate and _VALID.match(candidate):
        return candidate
    return uuid.uuid4().hex
