"""A user's record as readable JSON (the export), and an export read back.

Format 1: ``{"format": 1, "user_id", "exists", "version", "generation", "created_at",
"consent", "events", "model", "ledger", "earlier_items"}``; times are ISO-8601 UTC.
``generation`` (absent in older exports: 0) says which incarnation of the user the
copy is of: after an erasure and an explicit re-creation, older copies are refused.

``earlier_items`` lists what the record's seen filter holds (``seen_filter.py``),
oldest first: ``{"fingerprint": "%06x", "last_day": "YYYY-MM-DD"}`` (the item's
24-bit fingerprint, the UTC day of its newest dropped event). Exports written
before record format 2 have ``{"item_hash": "%08x", "last_timestamp": ISO-8601}``
entries: they still import (the hash's top 24 bits, the timestamp's day).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidInputError
from .event_ids import RetiredIds, assigned_id, format_event_id, parse_event_id
from .event_merge import id_text
from .events import MAX_QUERY_CHARS, Event, KindCode
from .record_store import check_user_id
from .seen_filter import DAY_SECONDS, FINGERPRINT_BITS, MAX_DAY, SeenFilter
from .times import iso_seconds, parse_time, unix_seconds
from .user_record import StoredEvent, UserRecord

EXPORT_FORMAT = 1
_EPOCH = date(1970, 1, 1)


def export_record(user_id: str, record: UserRecord) -> dict[str, Any]:
    events = [export_event(user_id, record.generation, e) for e in record.events]
    model = None
    if record.model is not None:
        m = record.model
        model = {
            "weights": [float(x) for x in m.weights],
            "offset": m.offset,
            "scale": m.scale,
            "interests": [
                {
                    "weight": w,
                    "items": [record.events[i].ref for i in idx if i < len(record.events)],
                }
                for w, idx in m.interests
            ],
        }
    return {
        "format": EXPORT_FORMAT,
        "user_id": user_id,
        "exists": True,
        "version": record.version,
        "generation": record.generation,
        "created_at": iso_seconds(record.created_at),
        "consent": {"shared_statistics": record.consent_shared},
        "events": events,
        "model": model,
        "ledger": record.ledger,
        "earlier_items": [
            {"fingerprint": f"{fp:06x}", "last_day": (_EPOCH + timedelta(days=day)).isoformat()}
            for fp, day in record.earlier.entries()
        ],
        "next_event_seq": record.next_seq,
        "retired_event_ids": [
            {"digest": f"{int(digest):016x}", "timestamp": iso_seconds(int(ts))}
            for ts, digest in record.retired.entries.tolist()
        ],
        "event_id_horizon": iso_seconds(record.retired.horizon) if record.retired.horizon else None,
        "devices": [
            {
                "device_id": format_event_id(d.device_id),
                "label": d.label,
                "registered_at": iso_seconds(d.registered),
                "refreshed_at": iso_seconds(d.refreshed),
                "refreshes": d.counter,
            }
            for d in record.devices
        ],
        # derived from the model and the catalog, kept for ranking (head_answer.py)
        "head_answer": None
        if record.head is None
        else {"catalog_version": record.head.seq, "rows": record.head.rows.tolist()},
    }


def export_event(user_id: str, generation: int, e: StoredEvent) -> dict[str, Any]:
    """One retained event as an export lists it (and a sync answer, ``user_sync.py``)."""
    out: dict[str, Any] = {"id": id_text(user_id, generation, e.eid)}
    if not isinstance(e.eid, bytes):
        out["seq"] = e.eid  # the engine assigned the id: its sequence number
    out["kind"] = e.kind.name
    if e.is_search:
        out["query"] = e.ref
    else:
        out["item_id"] = e.ref
    if e.value is not None:
        out["value"] = e.value
    out["weight"] = e.weight
    out["timestamp"] = iso_seconds(e.ts)
    return out


def missing_user(user_id: str) -> dict[str, Any]:
    """The export of a user who does not exist."""
    return {"format": EXPORT_FORMAT, "user_id": user_id, "exists": False}


@dataclass(frozen=True)
class ParsedExport:
    """What an import writes (the model is refit from the events)."""

    user_id: str
    exists: bool
    events: list[StoredEvent]
    consent: bool
    created: int
    version: int
    generation: int
    earlier: SeenFilter
    next_seq: int = 0
    retired: RetiredIds = field(default_factory=RetiredIds)

    def record(self) -> UserRecord:
        """The record to write (devices are not part of it: ``import_user`` keeps the
        user's current ones, so an import never revives a revoked device)."""
        return UserRecord(
            self.consent,
            self.created,
            0,
            list(self.events),
            earlier=self.earlier.copy(),
            generation=self.generation,
            next_seq=self.next_seq,
            retired=self.retired.copy(),
        )


def parse_export(data: Mapping[str, Any]) -> ParsedExport:
    """An export read back; ``InvalidInputError`` naming what is malformed."""
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise InvalidInputError("not an ownrank user export (format 1)")
    user_id = check_user_id(data.get("user_id"))
    if not data.get("exists", True):
        return ParsedExport(user_id, False, [], False, 0, 0, 0, SeenFilter())
    try:
        exported = [_event_from_export(e) for e in data["events"]]
        consent = bool(data["consent"]["shared_statistics"])
        created = unix_seconds(parse_time(data["created_at"]))
        version = int(data["version"])
        generation = data.get("generation", 0)
        if isinstance(generation, bool) or not isinstance(generation, int):
            raise ValueError("generation is an integer")
        if not 0 <= generation < 2**63:
            raise ValueError("generation out of range")
        earlier = _earlier_from_export(data.get("earlier_items", []))
        events, next_seq = _number_events(user_id, generation, exported, data)
        retired = _retired_from_export(data)
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise InvalidInputError(f"malformed user export: {exc}") from None
    return ParsedExport(
        user_id, True, events, consent, created, version, generation, earlier, next_seq, retired
    )


def _number_events(
    user_id: str,
    generation: int,
    events: list[tuple[StoredEvent, int | None]],
    data: Mapping[str, Any],
) -> tuple[list[StoredEvent], int]:
    """Events of an export with their ids: an exported ``seq`` whose id checks out is
    kept as a sequence number (the record stays compact and the ids stay the same);
    other ids are kept as they are; events without an id (older exports) get the
    next numbers."""
    next_seq = data.get("next_event_seq", 0)
    if isinstance(next_seq, bool) or not isinstance(next_seq, int) or not 0 <= next_seq < 2**62:
        raise ValueError("next_event_seq is a non-negative integer")
    checked: list[StoredEvent] = []
    for e, seq in events:
        if seq is not None and e.eid == assigned_id(user_id, generation, seq):
            e = e._replace(eid=seq)
            next_seq = max(next_seq, seq + 1)
        checked.append(e)
    out: list[StoredEvent] = []
    seen: set[bytes] = set()
    for e in checked:
        if e.eid == -1:
            e = e._replace(eid=next_seq)
            next_seq += 1
        raw = e.eid if isinstance(e.eid, bytes) else assigned_id(user_id, generation, e.eid)
        if raw in seen:
            raise ValueError(f"event id {format_event_id(raw)} appears twice")
        seen.add(raw)
        out.append(e)
    return out, next_seq


def _retired_from_export(data: Mapping[str, Any]) -> RetiredIds:
    raw = data.get("retired_event_ids", [])
    if not isinstance(raw, list):
        raise ValueError("retired_event_ids is a list")
    entries: list[tuple[int, int]] = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise ValueError("a retired event id is an object")
        digest = int(str(entry["digest"]), 16)
        if not 0 <= digest < 2**64:
            raise ValueError("retired event id digest out of range")
        entries.append((unix_seconds(parse_time(entry["timestamp"])), digest))
    horizon = data.get("event_id_horizon")
    retired = RetiredIds.from_pairs(
        entries, 0 if horizon is None else unix_seconds(parse_time(horizon))
    )
    return retired


def _earlier_from_export(raw: Any) -> SeenFilter:
    if not isinstance(raw, list):
        raise ValueError("earlier_items is a list")
    entries: list[tuple[int, int]] = []
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise ValueError("an earlier item is an object")
        if "fingerprint" in entry:
            fp = int(str(entry["fingerprint"]), 16)
            day = (date.fromisoformat(str(entry["last_day"])) - _EPOCH).days
            if not 0 <= fp < 2**FINGERPRINT_BITS:
                raise ValueError("earlier item out of range")
            if not 0 <= day <= MAX_DAY:
                raise ValueError("earlier item's day out of range")
        else:  # written before record format 2: a 32-bit hash and a time
            h = int(str(entry["item_hash"]), 16)
            day = unix_seconds(parse_time(entry["last_timestamp"])) // DAY_SECONDS
            if not 0 <= h < 2**32:
                raise ValueError("earlier item out of range")
            fp = h >> (32 - FINGERPRINT_BITS)
        entries.append((fp, day))
    return SeenFilter.build(entries)


def _event_from_export(raw: Mapping[str, Any]) -> tuple[StoredEvent, int | None]:
    """An exported event, and the sequence number it says the engine's id has."""
    if not isinstance(raw, Mapping):
        raise ValueError("an event is an object")
    event = Event.model_validate(
        {
            k: raw[k]
            for k in ("kind", "item_id", "query", "value", "weight", "timestamp", "id")
            if k in raw
        }
    )
    if event.timestamp is None:
        raise ValueError("exported events carry a timestamp")
    ref = event.item_id if event.item_id is not None else (event.query or "")
    if len(ref) > MAX_QUERY_CHARS and event.item_id is None:
        raise ValueError("query too long")
    eid: bytes | int = -1  # no id (an export from before event ids): numbered on import
    seq = raw.get("seq")
    if event.id is not None:
        eid = parse_event_id(event.id)
    if seq is not None and (
        isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**62
    ):
        raise ValueError("an event's seq is a non-negative integer")
    stored = StoredEvent(
        KindCode[event.kind], ref, event.value, event.weight, unix_seconds(event.timestamp), eid
    )
    return stored, seq
