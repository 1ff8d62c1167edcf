"""The demo page and its routes, mounted only with ``ownrank serve --demo``.

The page (``GET /``, plain HTML, CSS and JavaScript from ``demo_static/``, no CDN and
no build step) lets a person try ownrank in a browser: browse and search the demo
catalog, like and dislike items, watch "For you" change with every click, see what is
stored and forget parts of it, and erase themselves, receipt verified in the browser.

Each browser session is a fresh visitor: ``POST /demo/visitor`` mints a short-lived
user token for a new random id (``visitor-<16 hex>``) and never for an id the caller
chooses, so the page holds no admin key and a visitor's token acts for that visitor
only; the page then calls the ordinary user routes with it. The route is rate limited
per client address. ``GET /demo/catalog`` lists the demo catalog's topics, and
``POST /demo/verify-receipt`` checks a receipt's signature on the server, for browsers
without Ed25519 in WebCrypto.

``ownrank serve --demo`` turns this on for its workers through ``OWNRANK_DEMO``
(``create_app_from_env`` reads it); without it none of these routes exist.
"""

from __future__ import annotations

import json
import os
import secrets
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..demo import CATALOG_PATH
from ..engine.receipts import verify_receipt
from .auth import TokenSigner
from .deps import EngineDep
from .errors import ApiError, responses
from .ratelimit import RateLimiter

DEMO_ENV = "OWNRANK_DEMO"
STATIC_DIR = Path(__file__).parent / "demo_static"
STATIC_URL = "/demo/static"
VISITOR_PREFIX = "visitor-"
VISITOR_TTL_SECONDS = 3_600
# per client address and worker: a page asks once per browser session (and once more
# after an erasure), so a person never meets these limits
VISITOR_RATE_PER_SECOND = 0.5
VISITOR_BURST = 20
# the page's own files only: no inline script, no other origin
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}

router = APIRouter(tags=["demo"])


def demo_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether ``OWNRANK_DEMO`` asks for the demo page (set by ``ownrank serve --demo``)."""
    value = (os.environ if env is None else env).get(DEMO_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def new_visitor_id() -> str:
    """A fresh random visitor id (64 random bits)."""
    return VISITOR_PREFIX + secrets.token_hex(8)


class Visitor(BaseModel):
    user_id: str = Field(description="a fresh random visitor id, never chosen by the caller")
    token: str = Field(description="a user token for that visitor only")
    expires_at: datetime


class Topic(BaseModel):
    topic: str
    items: int


class CatalogTopics(BaseModel):
    items: int = Field(description="items in the demo catalog file")
    topics: list[Topic]


class ReceiptCheck(BaseModel):
    valid: bool = Field(description="signed by one of the operator's receipt keys, unchanged")
    key_id: str | None


@cache
def _catalog_topics() -> CatalogTopics:
    topics: Counter[str] = Counter()
    count = 0
    for line in CATALOG_PATH.read_text().splitlines():
        if line.strip():
            count += 1
            topics[str(json.loads(line).get("properties", {}).get("topic", "other"))] += 1
    return CatalogTopics(
        items=count, topics=[Topic(topic=t, items=n) for t, n in sorted(topics.items())]
    )


@router.post("/demo/visitor", responses=responses(429))
def new_visitor(request: Request) -> Visitor:
    """A new visitor: a fresh random id and a short-lived token acting for it alone.
    Takes no input: whatever is sent, the id is new."""
    limiter: RateLimiter = request.app.state.demo_limiter
    wait = limiter.acquire(request.client.host if request.client else "unknown")
    if wait > 0.0:
        raise ApiError(
            429,
            "rate_limited",
            "too many new visitors from this address",
            headers={"Retry-After": str(max(1, round(wait + 0.5)))},
        )
    signer: TokenSigner = request.app.state.signer
    token, claims = signer.mint(new_visitor_id(), VISITOR_TTL_SECONDS)
    return Visitor(
        user_id=claims.user_id,
        token=token,
        expires_at=datetime.fromtimestamp(claims.expires_at, UTC),
    )


@router.get("/demo/catalog")
def demo_catalog() -> CatalogTopics:
    """The demo catalog's topics and their sizes, for browsing."""
    return _catalog_topics()


@router.post("/demo/verify-receipt", responses=responses(413, 422))
def check_receipt(
    receipt: Annotated[dict[str, Any], Body(description="an erasure receipt")],
    engine: EngineDep,
) -> ReceiptCheck:
    """Whether an erasure receipt is signed by one of this service's receipt keys (the
    page verifies in the browser where WebCrypto has Ed25519, here otherwise)."""
    key_id = receipt.get("key_id")
    return ReceiptCheck(
        valid=verify_receipt(receipt, engine.receipt_public_keys()),
        key_id=key_id if isinstance(key_id, str) else None,
    )


async def page() -> HTMLResponse:
    """The demo page."""
    return HTMLResponse((STATIC_DIR / "index.html").read_text(), headers=PAGE_HEADERS)


def install_demo(app: FastAPI) -> None:
    """Mount the page, its files and the demo routes on ``app``."""
    app.state.demo_limiter = RateLimiter(VISITOR_RATE_PER_SECOND, VISITOR_BURST)
    app.include_router(router)
    app.add_api_route("/", page, methods=["GET"], include_in_schema=False)
    app.mount(STATIC_URL, StaticFiles(directory=STATIC_DIR), name="demo-static")
