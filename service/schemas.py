"""Request and response bodies of the HTTP API (what /openapi.json documents).

The request models state the SDK's limits in the schema (id pattern, text
lengths, ``n`` at most 100) so clients and schema-driven tests see them; the
SDK validates again on its side, and what it refuses becomes a JSON error too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field

from ..engine.events import MAX_DWELL_SECONDS
from ..engine.events import MAX_QUERY_CHARS as MAX_EVENT_QUERY_CHARS
from ..engine.items import (
    ITEM_ID_PATTERN,
    MAX_BODY_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    Item,
)

MAX_N = 100
MAX_SEARCH_CHARS = 2_000
ID_RULE = "1-256 characters from A-Z a-z 0-9 . _ : @ ~ -"

Id = Annotated[str, Field(pattern=ITEM_ID_PATTERN, min_length=1, max_length=256)]
UserIdPath = Annotated[
    str, Path(pattern=ITEM_ID_PATTERN, min_length=1, max_length=256, description=ID_RULE)
]
ItemIdPath = Annotated[
    str, Path(pattern=ITEM_ID_PATTERN, min_length=1, max_length=256, description=ID_RULE)
]
N = Annotated[int, Field(ge=1, le=MAX_N, description=f"number of results, 1-{MAX_N}")]
Filters = Annotated[
    dict[str, Any] | None,
    Field(description='property filter, e.g. {"topic": "jazz", "minutes": {"$lte": 5}}'),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- items ---------------------------------------------------------------------------------


class ItemIn(_Request):
    """A catalog item. ``title``, ``body`` and ``tags`` are embedded; ``properties`` are not."""

    id: Id
    title: str = Field("", max_length=MAX_TITLE_CHARS)
    body: str = Field("", max_length=MAX_BODY_CHARS)
    tags: list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS)]] = Field(
        default_factory=list, max_length=MAX_TAGS
    )
    properties: dict[str, Any] = Field(default_factory=dict)
    published_at: datetime | None = None


class ItemOut(BaseModel):
    id: str
    title: str
    body: str
    tags: list[str]
    properties: dict[str, Any]
    published_at: datetime | None

    @classmethod
    def of(cls, item: Item) -> ItemOut:
        return cls(
            id=item.id,
            title=item.title,
            body=item.body,
            tags=list(item.tags),
            properties=dict(item.properties),
            published_at=item.published_at,
        )


class UpsertRequest(_Request):
    items: list[ItemIn] = Field(description="items to add or replace, in one transaction")


class UpsertResponse(BaseModel):
    added: list[str]
    updated: list[str]
    unchanged: list[str]
    embedded: int


class DeleteRequest(_Request):
    ids: list[Id]


class DeleteResponse(BaseModel):
    deleted: list[str]
    missing: list[str]


class PropertiesUpdate(_Request):
    properties: dict[str, Any]
    replace: bool = Field(False, description="replace all properties instead of merging")


class CatalogInfo(BaseModel):
    items: int
    catalog_seq: int
    model_fingerprint: str
    dimension: int
    index: dict[str, Any]
    lmdb: dict[str, Any]


# -- search and recommendations ------------------------------------------------------------


class SearchRequest(_Request):
    query: str = Field(min_length=1, max_length=MAX_SEARCH_CHARS)
    n: N = 10
    filters: Filters = None


class SimilarRequest(_Request):
    n: N = 10
    filters: Filters = None


class Hit(BaseModel):
    item_id: str
    score: float
    item: ItemOut


class HitsResponse(BaseModel):
    results: list[Hit]


class RecommendRequest(_Request):
    n: N = 10
    filters: Filters = None
    exclude_seen: bool = True
    diversity: float = Field(0.0, ge=0.0, le=1.0, description="0 = by score, 1 = most diverse")


class EventIn(_Request):
    """One piece of feedback: about an item, or (``kind`` = search) a query."""

    kind: Literal["view", "click", "like", "dislike", "rating", "dwell", "skip", "search"]
    item_id: Id | None = None
    query: str | None = Field(None, max_length=MAX_EVENT_QUERY_CHARS)
    value: float | None = Field(
        None,
        ge=0.0,
        le=MAX_DWELL_SECONDS,
        description="rating 1-5 (kind rating) or seconds (kind dwell)",
    )
    weight: float = Field(1.0, gt=0.0, le=10.0)
    timestamp: datetime | None = Field(None, description="default: now")


class HistoryRecommendRequest(RecommendRequest):
    events: list[EventIn] = Field(description="the history to recommend from; nothing is stored")


class Recommendation(BaseModel):
    item_id: str
    score: float
    item: ItemOut
    explanation: dict[str, Any]


class RecommendResponse(BaseModel):
    results: list[Recommendation]


# -- users ---------------------------------------------------------------------------------


class InteractRequest(_Request):
    events: list[EventIn]


class InteractResponse(BaseModel):
    accepted: int
    unknown_items: list[str] = Field(description="items not in the catalog; not stored")
    version: int


class UserEvents(_Request):
    user_id: Id
    events: list[EventIn]


class BulkInteractRequest(_Request):
    batches: list[UserEvents] = Field(description="one entry per user (a user id at most once)")


class BulkInteractResponse(BaseModel):
    results: dict[str, InteractResponse]
    erased: list[str] = Field(description="users not written: erased, a tombstone stands")


class ForgetRequest(_Request):
    """Events matching every given criterion are forgotten (at least one is needed)."""

    item_ids: list[Id] | None = None
    before: datetime | None = None
    after: datetime | None = None


class ForgetResponse(BaseModel):
    events_removed: int
    shared_units_subtracted: int
    version: int


class ConsentRequest(_Request):
    shared_statistics: bool


class VersionResponse(BaseModel):
    version: int


class UserExport(BaseModel):
    """A user's complete record (format 1), as ``GET /users/{user_id}/export`` returns it."""

    model_config = ConfigDict(extra="allow")

    format: int
    user_id: str
    exists: bool


class ErasureReceipt(BaseModel):
    """Signed with the operator's Ed25519 key (``GET /receipts/public-keys``); the
    signature covers every other field as canonical JSON (sorted keys, no spaces)."""

    user_key: str = Field(description="HMAC of the user id with the store's secret (hex)")
    erased_at: str
    existed: bool
    events_removed: int
    shared_units_subtracted: int
    data_key_destroyed: bool
    model_fingerprint: str
    model_fingerprint_unchanged: bool
    catalog_seq: int
    lmdb_txn_id: int
    keystore_txn_id: int
    key_id: str
    signature_algorithm: str
    signature: str


class RecreateRequest(_Request):
    shared_statistics: bool | None = Field(
        None, description="consent to shared statistics; default: the server's default"
    )


class PublicKeys(BaseModel):
    keys: dict[str, str] = Field(description="key id -> base64 raw Ed25519 public key")


class AuditFinding(BaseModel):
    term: str
    path: str
    offset: int


class AuditResponse(BaseModel):
    user_key: str
    clean: bool
    record_present: bool
    data_key_present: bool
    ledger_entries: int
    shared_statistics_consistent: bool
    tombstone_erased_at: int | None
    files_scanned: int
    bytes_scanned: int
    findings: list[AuditFinding]


# -- operations ----------------------------------------------------------------------------


class TokenRequest(_Request):
    user_id: Id
    ttl_seconds: int | None = Field(None, ge=60, description="default: the server's token TTL")


class TokenResponse(BaseModel):
    token: str
    token_type: Literal["bearer"] = "bearer"
    user_id: str
    expires_at: datetime


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready"]
    items: int
    catalog_seq: int
    index: str
