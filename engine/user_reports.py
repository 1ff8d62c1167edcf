"""What the write path and erasure return to callers (the SDK's report types)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class InteractReport:
    accepted: int
    unknown_items: list[str] = field(default_factory=list)
    version: int = 0
    generation: int = 0  # the user's generation: send it back to have stale copies refused
    duplicates: int = 0  # events that were retries of stored ones (same id and content)
    # per given event, its id (the client's, or the one the engine assigned); None
    # for an event left out (its item is not in the catalog)
    event_ids: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class BulkInteractReport:
    reports: dict[str, InteractReport]  # per user id
    erased: list[str]  # users not written: a tombstone stands
    # users not written because an event id conflicts with their record (or needs a
    # reset): user id -> "code: message"
    conflicts: dict[str, str] = field(default_factory=dict)


@dataclass
class ForgetReport:
    events_removed: int
    shared_units_subtracted: int
    version: int


@dataclass(frozen=True)
class ErasureReceipt:
    """What erasure did, in terms the user can check (no raw id inside)."""

    user_key: str
    erased_at: str
    existed: bool
    events_removed: int
    shared_units_subtracted: int
    data_key_destroyed: bool  # no data key of the erased user remains (false if none existed)
    model_fingerprint: str
    model_fingerprint_unchanged: bool
    catalog_seq: int
    lmdb_txn_id: int
    keystore_txn_id: int
    key_id: str = ""
    signature_algorithm: str = ""
    signature: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
