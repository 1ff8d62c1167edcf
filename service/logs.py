"""Structured JSON logs, one object per line, each with the request id.

What may be logged is decided here, in one place: the formatter writes the
message and a fixed allow-list of extra fields. Request bodies, query strings,
headers (so tokens and keys) and event contents are never passed to a logger
by the service, and the access log names the route template, not the path.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from .request_context import current_request_id

# extra fields a log call may attach (anything else is dropped)
ALLOWED_EXTRA = (
    "method",
    "route",
    "status",
    "duration_ms",
    "worker_pid",
    "traceback",
    "items",
    "workers",
)


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "request_id", ...allowed extras}``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = current_request_id()
        if request_id is not None:
            out["request_id"] = request_id
        for key in ALLOWED_EXTRA:
            if key in record.__dict__:
                out[key] = record.__dict__[key]
        return json.dumps(out, default=str)


def log_config(level: str = "INFO") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for uvicorn and ownrank: JSON lines on stderr."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            # uvicorn's access log would print raw paths and query strings: off
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "ownrank": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
    }
