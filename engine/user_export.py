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
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from ..errors import InvalidInputError
from .events import MAX_QUERY_CHARS, Event, KindCode
from .record_store import check_user_id
from .seen_filter import DAY_SECONDS, FINGERPRINT_BITS, MAX_DAY, SeenFilter
from .times import iso_seconds, parse_time, unix_seconds
from .user_record import StoredEvent, UserRecord

EXPORT_FORMAT = 1
_EPOCH = date(1970, 1, 1)


def export_record(user_id: str, record: UserRecord) -> dict[str, Any]:
    events = []
    for e in record.events:
        out: dict[str, Any] = {"kind": e.kind.name}
        if e.is_search:
            out["query"] = e.ref
        else:
            out["item_id"] = e.ref
        if e.value is not None:
            out["value"] = e.value
        out["weight"] = e.weight
        out["timestamp"] = iso_seconds(e.ts)
        events.append(out)
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
    }


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

    def record(self) -> UserRecord:
        return UserRecord(
            self.consent,
            self.created,
            0,
            list(self.events),
            earlier=self.earlier.copy(),
            generation=self.generation,
        )


def parse_export(data: Mapping[str, Any]) -> ParsedExport:
    """An export read back; ``InvalidInputError`` naming what is malformed."""
    if not isinstance(data, Mapping) or data.get("format") != EXPORT_FORMAT:
        raise InvalidInputError("not an ownrank user export (format 1)")
    user_id = check_user_id(data.get("user_id"))
    if not data.get("exists", True):
        return ParsedExport(user_id, False, [], False, 0, 0, 0, SeenFilter())
    try:
        events = [_event_from_export(e) for e in data["events"]]
        consent = bool(data["consent"]["shared_statistics"])
        created = unix_seconds(parse_time(data["created_at"]))
        version = int(data["version"])
        generation = data.get("generation", 0)
        if isinstance(generation, bool) or not isinstance(generation, int):
            raise ValueError("generation is an integer")
        if not 0 <= generation < 2**63:
            raise ValueError("generation out of range")
        earlier = _earlier_from_export(data.get("earlier_items", []))
    except (KeyError, TypeError, ValueError, ValidationError) as exc:
        raise InvalidInputError(f"malformed user export: {exc}") from None
    return ParsedExport(user_id, True, events, consent, created, version, generation, earlier)


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


def _event_from_export(raw: Mapping[str, Any]) -> StoredEvent:
    if not isinstance(raw, Mapping):
        raise ValueError("an event is an object")
    event = Event.model_validate(
        {
            k: raw[k]
            for k in ("kind", "item_id", "query", "value", "weight", "timestamp")
            if k in raw
        }
    )
    if event.timestamp is None:
        raise ValueError("exported events carry a timestamp")
    ref = event.item_id if event.item_id is not None else (event.query or "")
    if len(ref) > MAX_QUERY_CHARS and event.item_id is None:
        raise ValueError("query too long")
    return StoredEvent(
        KindCode[event.kind], ref, event.value, event.weight, unix_seconds(event.timestamp)
    )
