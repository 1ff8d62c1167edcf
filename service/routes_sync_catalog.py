"""Catalog sync for devices: the catalog data a device ranks with offline, as a full
sync or the changes since its cursor, page by page (``engine/catalog_sync.py``;
docs/sync.md has the protocol and the numbers).

- ``GET /sync/catalog``: the view in the query (no filter: a query string is no
  place for a filter object);
- ``POST /sync/catalog``: the same in a JSON body, with ``filters``.

Any authenticated caller (admin key, user token, device access token): catalog data
only, nothing about any user. The answer is JSON (vectors as base64 of the packed
little-endian values), or msgpack with the vectors as raw bytes when the request
sends ``Accept: application/msgpack`` (a quarter fewer bytes).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

import msgpack
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .. import Engine
from ..engine.catalog_wire import (
    DEFAULT_PAGE_SIZE,
    MAX_NEWEST,
    MAX_PAGE_SIZE,
    MAX_TOKEN_CHARS,
)
from .auth import Authenticated
from .deps import EngineDep
from .errors import responses
from .schemas import Filters

router = APIRouter(tags=["sync"], responses=responses(400, 401, 403, 413, 422, 429, 503))

MSGPACK = "application/msgpack"
MAX_CURSOR_CHARS = 512
MAX_QUERY_TOKEN_CHARS = 8_192  # a page token in a URL (POST takes longer ones)
EncodingName = Literal["f32", "f16", "i8"]
SINCE_RULE = "the cursor of the device's last finished sync; none (or unusable): a full sync"
PAGE_RULE = "the `next` token of the previous page (it carries the view: the rest is ignored)"
ENCODING_RULE = "f32: exact little-endian; f16; i8: int8 with a float32 scale per vector"
NEWEST_RULE = "only the newest N items (by published_at; undated last) of the filter's"
PAGE_SIZE_RULE = "at most this many rows named per page"


def _whole(value: Any) -> Any:
    """47.0 is an integer to JSON Schema (as ``schemas.Integer`` takes it)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


class SyncViewOut(BaseModel):
    """What the copy holds: the encoding, the slice, which texts."""

    encoding: EncodingName
    filters: dict[str, Any] | None
    newest: int | None
    titles: bool
    body: bool


class SyncItemOut(BaseModel):
    """An item under its row (``title``/``body`` null when the view leaves them out)."""

    row: int
    id: str
    title: str | None
    body: str | None
    tags: list[str]
    properties: dict[str, Any]
    published_at: datetime | None


class CatalogSyncPage(BaseModel):
    """One page. Apply ``reset`` (clear the copy), then ``removed`` rows, ``changed``
    items (same row, new properties; keep the vector), then ``items`` with their
    vectors. Go on with ``next`` until it is null; then keep ``cursor``."""

    format: int
    store: str = Field(description="the server store's tag: another store, a full sync")
    full: bool = Field(description="a full sync: the copy is replaced")
    reset: bool = Field(description="clear the copy before this page (a full sync's first)")
    reason: str | None = Field(
        description="why a full sync: no_cursor, unknown_cursor, other_store, other_view, "
        "cursor_ahead, log_trimmed, page_unusable"
    )
    catalog_seq: int = Field(description="the catalog version the sync brings the copy to")
    dimension: int
    view: SyncViewOut
    items: list[SyncItemOut] = Field(description="added or re-sent items, rows ascending")
    vectors: str = Field(
        description="base64 of the items' vectors, packed in their order: len(items) x "
        "dimension little-endian float32 (f32), float16 (f16) or int8 (i8)"
    )
    scales: str | None = Field(description="i8: base64 of one little-endian float32 per vector")
    changed: list[SyncItemOut] = Field(description="same row, new properties: no vector")
    removed: list[int] = Field(description="rows to drop (rows the copy lacks are ignored)")
    next: str | None = Field(description="the next page's token; null: the sync is done")
    cursor: str | None = Field(description="on the last page: the `since` of the next sync")


class CatalogSyncRequest(BaseModel):
    """A page of a catalog sync (``GET /sync/catalog``'s query, with ``filters``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    since: str | None = Field(None, max_length=MAX_CURSOR_CHARS, description=SINCE_RULE)
    page: str | None = Field(None, max_length=MAX_TOKEN_CHARS, description=PAGE_RULE)
    encoding: EncodingName = Field("f32", description=ENCODING_RULE)
    filters: Filters = None
    newest: Annotated[int, Field(ge=1, le=MAX_NEWEST), BeforeValidator(_whole)] | None = Field(
        None, description=NEWEST_RULE
    )
    titles: bool = True
    body: bool = False
    page_size: Annotated[int, Field(ge=1, le=MAX_PAGE_SIZE), BeforeValidator(_whole)] = Field(
        DEFAULT_PAGE_SIZE, description=PAGE_SIZE_RULE
    )


_DOCUMENTED: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {MSGPACK: {"schema": {"type": "string", "format": "binary"}}},
        "description": "a page: JSON, or msgpack (vectors as raw bytes) on request",
    }
}


def _answer(request: Request, engine: Engine, body: CatalogSyncRequest) -> Response:
    page = engine.catalog.changes(
        body.since,
        page=body.page,
        encoding=body.encoding,
        filters=body.filters,
        newest=body.newest,
        titles=body.titles,
        body=body.body,
        page_size=body.page_size,
    )
    if MSGPACK in request.headers.get("accept", ""):
        packed = msgpack.packb(page.to_wire(binary=True), use_bin_type=True)
        return Response(packed, media_type=MSGPACK)
    text = json.dumps(page.to_wire(), separators=(",", ":"), ensure_ascii=False)
    return Response(text.encode(), media_type="application/json")


@router.get("/sync/catalog", response_model=CatalogSyncPage, responses=_DOCUMENTED)
def sync_catalog(
    request: Request,
    _caller: Authenticated,
    engine: EngineDep,
    since: Annotated[str | None, Query(max_length=MAX_CURSOR_CHARS, description=SINCE_RULE)] = None,
    page: Annotated[
        str | None, Query(max_length=MAX_QUERY_TOKEN_CHARS, description=PAGE_RULE)
    ] = None,
    encoding: Annotated[EncodingName, Query(description=ENCODING_RULE)] = "f32",
    newest: Annotated[int | None, Query(ge=1, le=MAX_NEWEST, description=NEWEST_RULE)] = None,
    titles: bool = True,
    body: bool = False,
    page_size: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=PAGE_SIZE_RULE)
    ] = DEFAULT_PAGE_SIZE,
) -> Response:
    """A page of the device catalog sync: a full sync, or the catalog's changes since
    the cursor ``since``; catalog data only (docs/sync.md)."""
    query = CatalogSyncRequest(
        since=since,
        page=page,
        encoding=encoding,
        newest=newest,
        titles=titles,
        body=body,
        page_size=page_size,
    )
    return _answer(request, engine, query)


@router.post("/sync/catalog", response_model=CatalogSyncPage, responses=_DOCUMENTED)
def sync_catalog_sliced(
    request: Request, body: CatalogSyncRequest, _caller: Authenticated, engine: EngineDep
) -> Response:
    """As ``GET /sync/catalog``, the view in a JSON body: the way to sync a slice by a
    property filter (``filters``)."""
    return _answer(request, engine, body)
