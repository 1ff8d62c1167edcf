"""Device sync of a user's state: ``POST /users/{user_id}/sync`` (docs/sync.md).

One round trip: the device pushes the events it made offline (each with its id
and time) and the ids it forgot, says which generation its copy is of and the
count and checksum of the event set it now holds; the answer carries the server's
count and checksum, and the server's copy of the record when the two differ. A
device's access token also gets the lease key its copy is sealed with.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from .. import SyncResult
from ..engine.times import TIME_RANGE_PATTERN, TIME_RANGE_RULE, to_utc
from ..engine.user_sync import MAX_FUTURE_SECONDS
from .auth import ActingUser, Authenticated
from .deps import EngineDep, SettingsDep
from .errors import ApiError, responses
from .schemas import EventId, EventIn, Timestamp, UserExport, _integral, _Request

router = APIRouter(tags=["sync"], responses=responses(400, 401, 403, 409, 413, 422, 429, 503))

CHECKSUM_PATTERN = "^[0-9a-f]{16}$"


class PushedEvent(EventIn):
    """An event a device made: as any event, but its id and time are required (the
    device chose them when the event happened)."""

    id: EventId = Field(description="the device's id of the event, a random UUID")
    timestamp: Annotated[Timestamp, AfterValidator(to_utc)] = Field(
        description=TIME_RANGE_RULE, json_schema_extra={"pattern": TIME_RANGE_PATTERN}
    )


class SyncRequest(_Request):
    generation: Annotated[int, Field(ge=0, le=2**53 - 1), BeforeValidator(_integral)] | None = (
        Field(None, description="the generation the device's copy is of; null: never synced")
    )
    count: Annotated[int, Field(ge=0, le=2**31), BeforeValidator(_integral)] = Field(
        0, description="events in the device's set, after this push and these forgets"
    )
    checksum: str = Field(
        "0000000000000000",
        pattern=CHECKSUM_PATTERN,
        description="the sum, mod 2^64, of the device set's event checksums (docs/sync.md), "
        "16 hex digits",
    )
    push: list[PushedEvent] = Field(
        default_factory=list,
        description=f"events made offline, each with its id and timestamp (at most "
        f"{MAX_FUTURE_SECONDS} s ahead of the server's clock)",
    )
    forget: list[EventId] = Field(default_factory=list, description="ids of events forgotten")


class Lease(BaseModel):
    key: str = Field(description="base64 of the 32-byte key the device seals its copy with")
    expires_at: datetime


class SyncResponse(BaseModel):
    generation: int
    version: int
    count: int
    checksum: str = Field(description="16 hex digits")
    in_sync: bool = Field(description="the device holds exactly the server's set")
    accepted: int
    duplicates: int
    forgotten: int
    event_ids: list[str | None]
    record: UserExport | None = Field(
        None, description="the server's copy (an export) when the device's set differs"
    )
    server_time: datetime
    lease: Lease | None = None


def _when(ts: int) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@router.post("/users/{user_id}/sync")
def sync(
    user_id: ActingUser,
    body: SyncRequest,
    principal: Authenticated,
    engine: EngineDep,
    settings: SettingsDep,
) -> SyncResponse:
    """One sync round trip for a device (or any client of the user): push, forget,
    and get the server's state. An erased user is 409 ``user_erased`` (wipe the
    copy), a copy of an erased generation 409 ``stale_generation``; a malformed or
    oversized push is refused whole, nothing stored."""
    if len(body.push) > settings.max_batch_events:
        raise ApiError(
            413,
            "batch_too_large",
            f"{len(body.push)} events in one push; the limit is {settings.max_batch_events}",
        )
    push: list[dict[str, Any]] = [e.model_dump(exclude_none=True) for e in body.push]
    result: SyncResult = engine.sync.exchange(
        user_id,
        generation=body.generation,
        count=body.count,
        checksum=int(body.checksum, 16),
        push=push,
        forget=body.forget,
    )
    lease = None
    if principal.device_id is not None:
        granted = engine.sync.lease(user_id, principal.device_id, engine.config.device_lease_days)
        if granted is not None:
            lease = Lease(key=base64.b64encode(granted[0]).decode(), expires_at=_when(granted[1]))
    return SyncResponse(
        generation=result.generation,
        version=result.version,
        count=result.count,
        checksum=f"{result.checksum:016x}",
        in_sync=result.in_sync,
        accepted=result.accepted,
        duplicates=result.duplicates,
        forgotten=result.forgotten,
        event_ids=result.event_ids,
        record=None if result.record is None else UserExport.model_validate(result.record),
        server_time=_when(result.server_time),
        lease=lease,
    )


class CatalogMomentsOut(BaseModel):
    catalog_seq: int
    count: int
    total: str = Field(description="base64 of the float64 little-endian sum of the vectors")
    gram: str = Field(description="base64 of the float64 little-endian d x d sum of e e^T")


@router.get("/sync/catalog/moments")
def catalog_moments(_caller: Authenticated, engine: EngineDep) -> CatalogMomentsOut:
    """The catalog's embedding moments (catalog data): with them and the catalog's
    vectors a device fits its user's model bit for bit as the server does."""
    seq, moments = engine.catalog.moments()
    return CatalogMomentsOut(
        catalog_seq=seq,
        count=moments.count,
        total=base64.b64encode(moments.total.astype("<f8").tobytes()).decode(),
        gram=base64.b64encode(moments.gram.astype("<f8").tobytes()).decode(),
    )
