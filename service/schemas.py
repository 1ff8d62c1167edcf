"""Request and response bodies of the HTTP API (what /openapi.json documents).

The request models state the SDK's limits in the schema (id pattern, text
lengths, ``n`` at most 100) so clients and schema-driven tests see them; the
SDK validates again on its side, and what it refuses becomes a JSON error too.

Request bodies are validated strictly, as the schema reads: a boolean is ``true`` or
``false`` (never ``0`` or ``"yes"``), a number is a JSON number (never a boolean or a
numeric string), a date-time is an ISO 8601 string (never seconds since the epoch).
Rules across fields (an item needs a non-blank title or body, each event kind its own
fields, forget at least one criterion) are ``anyOf`` clauses in the schema and 422s.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ..engine.event_ids import EVENT_ID_PATTERN
from ..engine.events import MAX_DWELL_SECONDS, Event, RatingScale
from ..engine.events import MAX_QUERY_CHARS as MAX_EVENT_QUERY_CHARS
from ..engine.filters import MAX_DEPTH as MAX_FILTER_DEPTH
from ..engine.filters import MAX_IN_VALUES
from ..engine.items import (
    ITEM_ID_PATTERN,
    MAX_BODY_CHARS,
    MAX_TAG_CHARS,
    MAX_TAGS,
    MAX_TITLE_CHARS,
    PROPERTIES_RULE,
    Item,
    Properties,
)
from ..engine.times import TIME_RANGE_PATTERN, TIME_RANGE_RULE, to_utc
from .settings import ServiceSettings

JsonDict = dict[str, Any]  # a piece of JSON schema

MAX_N = 100
MAX_SEARCH_CHARS = 2_000
ID_RULE = "1-256 characters from A-Z a-z 0-9 . _ : @ ~ -"
# the default of the server setting; a server may be configured with another maximum
DEFAULT_MAX_TTL_SECONDS: int = ServiceSettings.model_fields["token_max_ttl_seconds"].default

# -- strict JSON types ---------------------------------------------------------------------
# Request models are strict (``_Request``); two types keep what JSON itself allows.


def _integral(value: Any) -> Any:
    """5.0 is an integer to JSON Schema; anything else goes on to the strict int check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


_DATE_TIME_START = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")


def _date_time_text(value: Any) -> Any:
    """A date-time is an ISO 8601 string with a time (a datetime from Python callers);
    seconds since the epoch are refused, as a number or as a numeric string."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _DATE_TIME_START.match(value):
        return value
    raise PydanticCustomError(
        "datetime_type", "Input should be an ISO 8601 date-time string (YYYY-MM-DDTHH:MM...)"
    )


# an int that also takes 5.0; with constraints: Annotated[int, Field(...), BeforeValidator(...)]
Integer = Annotated[int, BeforeValidator(_integral)]
# the one non-strict type: pydantic's strict mode wants a Python datetime, JSON has strings
Timestamp = Annotated[datetime, Field(strict=False), BeforeValidator(_date_time_text)]

# A text matching NON_BLANK has a character that str.strip() keeps (the class lists every
# character str.isspace() is true for; JSON Schema's \s is not the same set).
NON_BLANK = r"[^\t\n\v\f\r\x1c-\x1f \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


NonBlankText = Annotated[
    str, AfterValidator(_not_blank), Field(json_schema_extra={"pattern": NON_BLANK})
]

Id = Annotated[str, Field(pattern=ITEM_ID_PATTERN, min_length=1, max_length=256)]
EventId = Annotated[
    str, Field(pattern=EVENT_ID_PATTERN, examples=["0190f1c2-7b3a-4c1e-9a2b-5d6e7f8091a2"])
]
UserIdPath = Annotated[
    str, Path(pattern=ITEM_ID_PATTERN, min_length=1, max_length=256, description=ID_RULE)
]
ItemIdPath = Annotated[
    str, Path(pattern=ITEM_ID_PATTERN, min_length=1, max_length=256, description=ID_RULE)
]
N = Annotated[
    int,
    Field(ge=1, le=MAX_N, description=f"number of results, 1-{MAX_N}"),
    BeforeValidator(_integral),
]

# -- property filters ----------------------------------------------------------------------
# The JSON schema of the filter language of engine/filters.py (which checks filters: 400
# invalid_filter). It spells out one level of nesting: a schema that refers to itself
# costs schema-driven generators (schemathesis) seconds per operation, and deeper filters
# are rare. The engine takes them, up to MAX_FILTER_DEPTH levels.

_SCALAR: JsonDict = {"type": ["string", "number", "boolean", "null"]}
_BOUND: JsonDict = {
    "anyOf": [
        {"type": "number", "minimum": -sys.float_info.max, "maximum": sys.float_info.max},
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
    ]
}
_SCALARS: JsonDict = {"type": "array", "items": _SCALAR, "maxItems": MAX_IN_VALUES}
_OPERATORS: JsonDict = {
    "type": "object",
    "description": "operators on one field, all of which must hold; a range compares "
    "numbers, or dates when given an ISO 8601 date",
    "properties": {
        "$eq": _SCALAR,
        "$ne": _SCALAR,
        "$in": _SCALARS,
        "$nin": _SCALARS,
        "$exists": {"type": "boolean"},
        "$gt": _BOUND,
        "$gte": _BOUND,
        "$lt": _BOUND,
        "$lte": _BOUND,
    },
    "additionalProperties": False,
    "minProperties": 1,
}
# a field name is anything but empty or starting with "$"
_CONDITIONS: JsonDict = {"^[^$]": {"anyOf": [_SCALAR, _OPERATORS]}}
_NESTED_FILTER: JsonDict = {
    "type": "object",
    "description": "a non-empty filter of field conditions",
    "patternProperties": _CONDITIONS,
    "additionalProperties": False,
    "minProperties": 1,
}
_NESTED_FILTERS: JsonDict = {"type": "array", "items": _NESTED_FILTER, "minItems": 1}


def _filter_schema(schema: JsonDict) -> None:
    schema["description"] += (
        " The schema spells out one level of nesting; the server takes filters nested up "
        f"to {MAX_FILTER_DEPTH} levels deep."
    )
    schema["properties"] = {"$and": _NESTED_FILTERS, "$or": _NESTED_FILTERS, "$not": _NESTED_FILTER}
    schema["patternProperties"] = _CONDITIONS
    schema["additionalProperties"] = False


class PropertyFilter(BaseModel):
    """A property filter: ``{field: value}`` (equality) or ``{field: {"$op": operand}}``,
    several keys AND-ed, ``$and``/``$or`` of filters, ``$not`` a filter. A field is a
    property name or ``id``, ``tags``, ``published_at``. ``{}`` is no filter; inside
    ``$and``/``$or``/``$not`` a filter is non-empty."""

    # documents the grammar only: requests are checked by engine/filters.py
    model_config = ConfigDict(json_schema_extra=_filter_schema)


def _as_filter(value: Any) -> dict[str, Any] | None:
    """A filter object as the engine takes it: ``{}`` (like null) is no filter."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise PydanticCustomError("dict_type", "Input should be an object or null")
    return value or None


Filters = Annotated[
    dict[str, Any] | None,
    PlainValidator(_as_filter, json_schema_input_type=PropertyFilter | None),
    Field(description='property filter, e.g. {"topic": "jazz", "minutes": {"$lte": 5}}'),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _at_least_one_of(*names: str) -> JsonDict:
    """JSON schema: at least one of ``names`` is present and not null."""
    branches = [{"required": [n], "properties": {n: {"not": {"type": "null"}}}} for n in names]
    return {"minProperties": 1, "anyOf": branches}


# -- items ---------------------------------------------------------------------------------


class ItemIn(_Request):
    """A catalog item. ``title``, ``body`` and ``tags`` are embedded; ``properties`` are not.
    The title or the body must not be blank."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": [f], "properties": {f: {"type": "string", "pattern": NON_BLANK}}}
                for f in ("title", "body")
            ]
        }
    )

    id: Id
    title: str = Field("", max_length=MAX_TITLE_CHARS)
    body: str = Field("", max_length=MAX_BODY_CHARS)
    tags: list[Annotated[str, Field(min_length=1, max_length=MAX_TAG_CHARS)]] = Field(
        default_factory=list, max_length=MAX_TAGS
    )
    properties: Properties = Field(default_factory=dict, description=PROPERTIES_RULE)
    published_at: Annotated[Timestamp, AfterValidator(to_utc)] | None = Field(
        None, description=TIME_RANGE_RULE, json_schema_extra={"pattern": TIME_RANGE_PATTERN}
    )

    @model_validator(mode="after")
    def _has_text(self) -> ItemIn:
        if not self.title.strip() and not self.body.strip():
            raise ValueError("an item needs a non-blank title or body")
        return self


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
    properties: Properties = Field(description=PROPERTIES_RULE)
    replace: bool = Field(False, description="replace all properties instead of merging")


class CatalogInfo(BaseModel):
    items: int
    catalog_seq: int
    model_fingerprint: str
    dimension: int
    rating_scale: RatingScale  # the values a rating may take, stored with the data
    index: dict[str, Any]
    lmdb: dict[str, Any]


# -- search and recommendations ------------------------------------------------------------


class SearchRequest(_Request):
    query: NonBlankText = Field(min_length=1, max_length=MAX_SEARCH_CHARS)
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


def _item_event(kinds: list[str], value: JsonDict | None) -> JsonDict:
    return {
        "properties": {
            "kind": {"enum": kinds},
            "item_id": {"type": "string"},
            "query": {"type": "null"},
            "value": value or {"type": "null"},
        },
        "required": ["kind", "item_id"] + (["value"] if value else []),
    }


class EventIn(_Request):
    """One piece of feedback: about an item, or (``kind`` = search) a query. A search
    event has a non-blank ``query`` and no ``item_id``; every other kind an ``item_id``
    and no ``query``; a rating a ``value`` on the store's rating scale (1-5 unless the
    store was created with another: the rating branch of ``anyOf`` states it), a dwell
    ``value`` seconds, other kinds no ``value``."""

    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {
                    "properties": {
                        "kind": {"const": "search"},
                        "item_id": {"type": "null"},
                        "query": {"type": "string", "pattern": NON_BLANK},
                        "value": {"type": "null"},
                    },
                    "required": ["kind", "query"],
                },
                _item_event(["view", "click", "like", "dislike", "skip"], None),
                # the default scale: the app states its store's (service/rating_scale.py)
                _item_event(["rating"], {"type": "number", "minimum": 1, "maximum": 5}),
                _item_event(
                    ["dwell"], {"type": "number", "minimum": 0, "maximum": MAX_DWELL_SECONDS}
                ),
            ]
        }
    )

    kind: Literal["view", "click", "like", "dislike", "rating", "dwell", "skip", "search"]
    item_id: Id | None = None
    query: str | None = Field(None, max_length=MAX_EVENT_QUERY_CHARS)
    value: float | None = Field(
        None, description="rating on the store's scale (kind rating) or seconds (kind dwell)"
    )
    weight: float = Field(1.0, gt=0.0, le=10.0)
    timestamp: Annotated[Timestamp, AfterValidator(to_utc)] | None = Field(
        None,
        description=f"default: now; {TIME_RANGE_RULE}",
        json_schema_extra={"pattern": TIME_RANGE_PATTERN},
    )
    id: EventId | None = Field(
        None,
        description="your id of this event, a random UUID: a retry with the same id and "
        "content is a no-op, the same id with other content is refused (409 "
        "event_id_conflict); absent, ownrank assigns one (returned in event_ids)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> EventIn:
        """The engine's rules per kind (``Event._consistent``), stated here so that a
        break is a 422 like any schema violation."""
        rules = {
            "kind": self.kind,
            "item_id": self.item_id,
            "query": self.query,
            "value": self.value,
        }
        try:
            Event.model_validate(rules)
        except ValidationError as exc:
            message = str(exc.errors()[0].get("msg", "inconsistent event"))
            raise ValueError(message.removeprefix("Value error, ")) from None
        return self


class HistoryRecommendRequest(RecommendRequest):
    events: list[EventIn] = Field(description="the history to recommend from; nothing is stored")


class Explanation(BaseModel):
    """Why an item was recommended: the largest part of its score, what retrieved it,
    every named part of its score, and the largest part's own details."""

    reason: str = Field(description="the name of the largest score part")
    retrieved_by: str = Field(
        description="catalog/personal/interest/neighbours/popular/collaborative/recent"
    )
    parts: dict[str, float] = Field(
        description="each scorer's weighted part of the score (personal, neighbours, "
        "popularity, recency, ...; later scorers add parts)"
    )
    because_of: str | None = Field(
        None, description="the rated item (neighbours) or interest member (personal) closest"
    )
    interest: int | None = Field(None, description="the user's closest interest (personal)")


class Recommendation(BaseModel):
    item_id: str
    score: float
    item: ItemOut
    explanation: Explanation


class RecommendResponse(BaseModel):
    results: list[Recommendation]


# -- users ---------------------------------------------------------------------------------


class InteractRequest(_Request):
    events: list[EventIn]
    generation: Annotated[int, Field(ge=0, le=2**53 - 1), BeforeValidator(_integral)] | None = (
        Field(
            None,
            description="the user's generation your copy is of (from a response or an "
            "export); a write from a generation that was erased is refused with 409 "
            "stale_generation",
        )
    )


class InteractResponse(BaseModel):
    accepted: int = Field(description="events stored (new ones; retries not counted)")
    unknown_items: list[str] = Field(description="items not in the catalog; not stored")
    version: int
    generation: int = Field(
        description="the user's generation (it changes only when an erased user is "
        "explicitly re-created)"
    )
    duplicates: int = Field(0, description="retries of stored events: nothing changed")
    event_ids: list[str | None] = Field(
        default_factory=list,
        description="per event sent, in order: its id (yours, or the one ownrank "
        "assigned); null for an event on an unknown item",
    )


class UserEvents(_Request):
    user_id: Id
    events: list[EventIn]


class BulkInteractRequest(_Request):
    batches: list[UserEvents] = Field(description="one entry per user (a user id at most once)")


class BulkInteractResponse(BaseModel):
    results: dict[str, InteractResponse]
    erased: list[str] = Field(description="users not written: erased, a tombstone stands")
    conflicts: dict[str, str] = Field(
        default_factory=dict,
        description="users not written because an event id conflicts with their stored "
        "events (event_id_conflict) or is older than what their record remembers "
        "(reset_required): user id -> code and message",
    )


class ForgetRequest(_Request):
    """Events matching every given criterion are forgotten (at least one is needed)."""

    model_config = ConfigDict(json_schema_extra=_at_least_one_of("item_ids", "before", "after"))

    item_ids: list[Id] | None = None
    before: Annotated[Timestamp, AfterValidator(to_utc)] | None = Field(
        None, description=TIME_RANGE_RULE, json_schema_extra={"pattern": TIME_RANGE_PATTERN}
    )
    after: Annotated[Timestamp, AfterValidator(to_utc)] | None = Field(
        None, description=TIME_RANGE_RULE, json_schema_extra={"pattern": TIME_RANGE_PATTERN}
    )

    @model_validator(mode="after")
    def _has_a_criterion(self) -> ForgetRequest:
        if self.item_ids is None and self.before is None and self.after is None:
            raise ValueError("forget needs item_ids, before or after")
        return self


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

    model_config = ConfigDict(extra="allow", strict=True)

    format: Integer
    user_id: str
    exists: bool


class RecreateRequest(_Request):
    shared_statistics: bool | None = Field(
        None, description="consent to shared statistics; default: the server's default"
    )


# -- operations ----------------------------------------------------------------------------


class TokenRequest(_Request):
    user_id: Id
    ttl_seconds: (
        Annotated[
            int,
            # the maximum is the server's (token_max_ttl_seconds), checked by the route
            Field(ge=60, json_schema_extra={"maximum": DEFAULT_MAX_TTL_SECONDS}),
            BeforeValidator(_integral),
        ]
        | None
    ) = Field(
        None,
        description="default: the server's token TTL; at most the server's maximum "
        f"(setting token_max_ttl_seconds, by default {DEFAULT_MAX_TTL_SECONDS})",
    )


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
