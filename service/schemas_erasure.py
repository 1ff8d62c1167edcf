"""Response bodies of erasure: the signed receipt, the public keys that verify it,
and the audit of an erased user."""

from __future__ import annotations

from pydantic import BaseModel, Field


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


class PublicKeys(BaseModel):
    keys: dict[str, str] = Field(description="key id -> base64 raw Ed25519 public key")


class AuditFinding(BaseModel):
    term: str
    path: str
    offset: int
    catalog_text: bool = Field(description="also catalog text: says nothing about the user")


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
    chance_matches: dict[str, float] = Field(
        description="per term: matches expected by chance in that many random bytes "
        "(sealed records and keys look random; a short term is found in them now and then)"
    )
