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


@dataclass(frozen=True)
class BulkInteractReport:
    reports: dict[str, InteractReport]  # per user id
    erased: list[str]  # users not written: a tombstone stands


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
