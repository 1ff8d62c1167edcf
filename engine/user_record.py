"""A user's record: everything ownrank holds about one user, under one key.

Record format version 4 (msgpack map; documented for device sync)::

    {"v": 4,                       format version
     "n": int,                     record version: +1 on every write
     "c": bool,                    consent to contribute to shared statistics
     "t": int,                     created (Unix seconds)
     "e": {...}                    retained events, oldest first, as columns
                                   (``engine/event_columns.py``); each event has a
                                   kind (KindCode), a ref (item id, or the query
                                   text of a search), a value (rating/dwell or
                                   nil), a weight, ts (Unix seconds) and an id:
                                   the client's 16-byte event id, or the sequence
                                   number the engine's id is derived from
                                   (``engine/event_ids.py``)
     "q": int                      the next sequence number (ids are never reused)
     "x": bytes                    optional: retired event ids, (uint32 event time,
                                   uint64 id digest) little-endian, oldest first
     "h": int                      optional: the horizon of retired ids (Unix seconds)
     "d": [[id, registered, refreshed, counter, label], ...]
                                   optional: the user's devices (16-byte device id,
                                   Unix seconds registered and last refreshed, the
                                   refresh counter, a label), by id
     "m": {"w": bytes, "o": float, "s": float, "i": [[weight, [event index, ...]], ...]}
                                   the personal model (float16 head weights, the
                                   head's catalog mean and scale, interests as groups
                                   of positive events); absent before the first event
     "l": {"pop": [item id, ...]}  ledger: what this user added to shared statistics
     "s": bytes                    optional: items seen before the retained log, a
                                   seen filter of (24-bit item fingerprint, day of
                                   its newest dropped event) entries, Elias-Fano
                                   coded (``engine/seen_filter.py``)
     "g": int                      optional: the user's generation (absent = 0); an
                                   explicit re-creation after an erasure starts the
                                   next one (``storage/erasure_fence.py``)
     "r": {"s": int, "d": bytes, "r": bytes}
                                   optional: the head's retrieval answer, kept for
                                   ranking calls (``engine/head_answer.py``): the
                                   catalog version it was found at, the digest of
                                   the search, the rows (uint32, little-endian)}

Format 3 stored the events as rows, ``[[kind, ref, value, weight, ts, id], ...]``
(a recommend decoded them event by event). Format 2 had no event ids (events of
five fields, no ``"q"``, ``"x"``, ``"h"``, ``"d"``): read as format 4, its events
get sequence numbers 0, 1, ... in log order. Format 1 differed from 2 in the
earlier items: ``"p"``, little-endian uint32 pairs (32-bit item hash, Unix seconds
of its newest dropped event), 8 bytes each (the hash's top 24 bits are the
fingerprint, the seconds give the day).
Records are written in format 4; stores are rewritten on open
(``ledger_upgrade.py``).

Caps (``EngineConfig``): at most ``max_events`` events and ``max_record_bytes``
bytes; older events are dropped first (and their shared contributions with them).
The items of dropped events are still remembered as *earlier items* (``"s"``,
at most ``max_earlier_items``, about 3 bytes each), so "exclude what the user has
seen" keeps working for heavy users; a fingerprint collision (odds ~ n / 2^24 per
item: 0.024% at 4,096 earlier items) can only hide an item, never show a seen one.
Readers ignore keys they do not know, so records without ``"s"`` stay valid.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgpack
import numpy as np

from ..errors import StoreFormatError
from .event_columns import EventColumns
from .event_ids import RetiredIds
from .events import KindCode
from .head_answer import HeadAnswer
from .seen_filter import DAY_SECONDS, FINGERPRINT_BITS, SeenFilter, day_of, fingerprint

RECORD_FORMAT = 4
READABLE_FORMATS = (1, 2, 3, 4)  # formats 1 to 3 are converted on reading
_KINDS = tuple(KindCode)  # by code: a tuple index is faster than KindCode(code)
assert all(kind == code for code, kind in enumerate(_KINDS))


class StoredEvent(NamedTuple):
    """One event as the record stores it. A named tuple: immutable, and built ~3x
    faster than a frozen dataclass (a recommend decodes every event of the log)."""

    kind: KindCode
    ref: str  # item id, or the query text of a search event
    value: float | None
    weight: float
    ts: int
    # the client's 16-byte id, or the sequence number of the engine's (event_ids.py);
    # -1 only on events not stored yet
    eid: bytes | int = -1

    def pack(self) -> list[Any]:
        value: Any = self.value
        if value is not None and float(value).is_integer():
            value = int(value)
        weight: Any = int(self.weight) if float(self.weight).is_integer() else self.weight
        return [int(self.kind), self.ref, value, weight, self.ts, self.eid]

    @classmethod
    def unpack(cls, raw: list[Any], seq: int = -1) -> StoredEvent:
        """One packed event; ``seq`` numbers an event of format 2, which had no id."""
        if len(raw) == 6:  # as format 3 writes it: no starred unpack on the hot path
            kind, ref, value, weight, ts, eid = raw
        else:
            kind, ref, value, weight, ts, *rest = raw
            eid = rest[0] if rest else seq
        # built without the named tuple's keyword handling, converting only what
        # needs it (format 3 stored the right types)
        return tuple.__new__(
            cls,
            (
                _KINDS[kind] if type(kind) is int and 0 <= kind < len(_KINDS) else KindCode(kind),
                ref if type(ref) is str else str(ref),
                None if value is None else float(value),
                float(weight),
                ts if type(ts) is int else int(ts),
                eid if type(eid) is bytes or type(eid) is int else int(eid),
            ),
        )

    @classmethod
    def unpack_all(cls, raw: list[Any]) -> list[StoredEvent]:
        """Every packed event of a log of format 3 or older (rows), in one pass when
        all are as format 3 wrote them; else event by event, converting what needs
        it. Format 4 stores columns (``event_columns.py``)."""
        kinds, new = _KINDS, tuple.__new__
        try:
            if all(
                type(k) is int and 0 <= k < len(kinds) and type(r) is str and type(t) is int
                and (type(i) is bytes or type(i) is int)
                for k, r, _v, _w, t, i in raw
            ):  # fmt: skip
                return [
                    new(cls, (kinds[k], r, None if v is None else float(v), float(w), t, i))
                    for k, r, v, w, t, i in raw
                ]
        except (TypeError, ValueError):  # not six fields each, or a value not a number
            pass
        return [cls.unpack(e, seq) for seq, e in enumerate(raw)]

    def same_content(self, other: StoredEvent, *, compare_time: bool = True) -> bool:
        """Whether two events say the same (a retry): kind, item or query, value,
        weight, and the time unless the retry left it to the engine's clock."""
        return (
            self.kind == other.kind
            and self.ref == other.ref
            and self.value == other.value
            and self.weight == other.weight
            and (not compare_time or self.ts == other.ts)
        )

    @property
    def is_search(self) -> bool:
        return self.kind == KindCode.search


@dataclass
class PersonalModel:
    """The fitted part of a record (a deterministic function of the events)."""

    weights: np.ndarray  # float32 (d,), stored as float16
    offset: float  # mean of weights . e over the catalog
    scale: float  # standard deviation of weights . e over the catalog
    interests: list[tuple[float, list[int]]]  # (weight, indices of member events)

    def score(self, vectors: np.ndarray) -> np.ndarray:
        """The head's score of each row of ``vectors``, standardized over the catalog
        (recommend and personalized search both rank by it)."""
        return np.asarray((vectors @ self.weights - self.offset) / self.scale)

    def pack(self) -> dict[str, Any]:
        return {
            "w": self.weights.astype("<f2").tobytes(),
            "o": self.offset,
            "s": self.scale,
            "i": [[round(w, 6), members] for w, members in self.interests],
        }

    @classmethod
    def unpack(cls, raw: dict[str, Any]) -> PersonalModel:
        weights = np.frombuffer(raw["w"], dtype="<f2").astype(np.float32)
        interests = [(float(w), list(map(int, members))) for w, members in raw["i"]]
        return cls(weights, float(raw["o"]), float(raw["s"]), interests)


@dataclass(frozen=True)
class DeviceEntry:
    """One registered device of the user (``engine/devices.py``): its id, when it was
    registered and last refreshed its tokens, how many refreshes it made (a refresh
    token names the count it was minted at, so a replayed one is detected), a label."""

    device_id: bytes
    registered: int
    refreshed: int
    counter: int = 0
    label: str = ""

    def pack(self) -> list[Any]:
        return [self.device_id, self.registered, self.refreshed, self.counter, self.label]

    @classmethod
    def unpack(cls, raw: list[Any]) -> DeviceEntry:
        device_id, registered, refreshed, counter, label = raw
        if not isinstance(device_id, bytes):
            raise StoreFormatError("malformed device entry in a user record")
        return cls(device_id, int(registered), int(refreshed), int(counter), str(label))


def item_hash(item_id: str) -> int:
    """The 32-bit hash format-1 records remembered earlier items by (its top 24 bits
    are the fingerprint of ``seen_filter``)."""
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=4).digest(), "little")


@dataclass(eq=False)
class UserRecord:
    consent_shared: bool
    created_at: int
    version: int = 0
    # the retained events, oldest first: as read (columns), or as objects once a
    # caller asked for ``events`` (a recommend reads only the columns)
    log: list[StoredEvent] | EventColumns = field(default_factory=list)
    model: PersonalModel | None = None
    ledger: dict[str, list[str]] = field(default_factory=dict)
    # items whose events the caps dropped: (fingerprint, day of the newest dropped event)
    earlier: SeenFilter = field(default_factory=SeenFilter)
    # 0 until the user is erased and explicitly re-created (see the erasure fence)
    generation: int = 0
    next_seq: int = 0  # the sequence number the next event without a client id gets
    retired: RetiredIds = field(default_factory=RetiredIds)  # ids of events that left
    devices: list[DeviceEntry] = field(default_factory=list)  # by device id
    head: HeadAnswer | None = None  # the head's retrieval answer, kept by writes

    @property
    def events(self) -> list[StoredEvent]:
        """The retained events, oldest first: the record's own list, which callers may
        change in place (built from the columns read on first use)."""
        log = self.log
        if isinstance(log, EventColumns):
            log = self.log = log.rows(StoredEvent)
        return log

    @events.setter
    def events(self, events: list[StoredEvent]) -> None:
        self.log = events

    @property
    def columns(self) -> EventColumns:
        """The retained events as columns (``event_columns.py``): as read, or built
        from the events."""
        log = self.log
        return log if isinstance(log, EventColumns) else EventColumns.from_events(log)

    def __eq__(self, other: object) -> bool:
        """Records are equal when every field is, the events compared as events."""
        if not isinstance(other, UserRecord):
            return NotImplemented
        mine, theirs = dict(vars(self)), dict(vars(other))
        del mine["log"], theirs["log"]
        return mine == theirs and _as_events(self.log) == _as_events(other.log)

    __hash__ = None  # type: ignore[assignment]  # (mutable, as the dataclass was)

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "v": RECORD_FORMAT,
            "n": self.version,
            "c": self.consent_shared,
            "t": self.created_at,
            "e": self.columns.pack(),
            "l": {k: v for k, v in self.ledger.items() if v},
        }
        if self.model is not None:
            body["m"] = self.model.pack()
        if self.earlier:
            body["s"] = self.earlier.to_bytes()
        if self.generation:
            body["g"] = self.generation
        body["q"] = self.next_seq
        if len(self.retired):
            body["x"] = self.retired.to_bytes()
        if self.retired.horizon:
            body["h"] = self.retired.horizon
        if self.devices:
            body["d"] = [d.pack() for d in self.devices]
        if self.head is not None:
            body["r"] = self.head.pack()
        return bytes(msgpack.packb(body, use_bin_type=True))

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserRecord:
        body = _unpack_body(raw)
        log: list[StoredEvent] | EventColumns
        if body["v"] >= 4:
            log = EventColumns.unpack(body["e"])
        else:
            log = StoredEvent.unpack_all(body["e"])
        try:
            retired = RetiredIds.from_bytes(body.get("x", b""), body.get("h", 0))
        except (ValueError, TypeError):
            raise StoreFormatError("malformed retired event ids in a user record") from None
        return cls(
            consent_shared=bool(body["c"]),
            created_at=int(body["t"]),
            version=int(body["n"]),
            log=log,
            model=PersonalModel.unpack(body["m"]) if "m" in body else None,
            ledger={k: list(v) for k, v in body["l"].items()},
            earlier=_unpack_earlier(body),
            generation=int(body.get("g", 0)),
            # format 2 numbered its events on reading: the next number follows them
            next_seq=int(body.get("q", len(log))),
            retired=retired,
            devices=[DeviceEntry.unpack(d) for d in body.get("d", [])],
            head=HeadAnswer.unpack(body["r"]) if "r" in body else None,
        )

    def device(self, device_id: bytes) -> DeviceEntry | None:
        return next((d for d in self.devices if d.device_id == device_id), None)

    def item_ids(self) -> set[str]:
        """Items with events in the retained log."""
        log = self.log
        if isinstance(log, EventColumns):
            return log.item_ids()
        search = KindCode.search
        return {e.ref for e in log if e.kind is not search}

    def event_refs(self, events: list[int]) -> list[str]:
        """The item or query of each of the events at these positions in the log
        (positions past its end are left out), without building the events."""
        log = self.log
        if isinstance(log, EventColumns):
            return log.refs_at(events)
        return [log[i].ref for i in events if 0 <= i < len(log)]

    def seen(self, logged: set[str] | None = None) -> SeenItems:
        """Every item the user has had an event on: the log's and the earlier ones
        (``logged``: the log's items, when the caller has them already)."""
        return SeenItems(self.item_ids() if logged is None else logged, self.earlier.fingerprints())

    def remember_dropped(self, dropped: list[StoredEvent], cap: int) -> None:
        """Keep the items of events the caps just dropped as earlier items; at most
        ``cap`` (the oldest days go first)."""
        items = [e for e in dropped if not e.is_search]
        self.earlier.add([fingerprint(e.ref) for e in items], [day_of(e.ts) for e in items])
        # still in the log: the log covers them
        self.earlier.remove([fingerprint(item_id) for item_id in self.item_ids()])
        self.trim_earlier(cap)

    def trim_earlier(self, cap: int) -> None:
        """Keep the newest ``cap`` earlier items."""
        self.earlier.trim(cap)


@dataclass(frozen=True, eq=False)
class SeenItems:
    """Membership test for "already seen": the log's item ids, then the sorted
    fingerprints of the earlier items (``seen_filter.fingerprint``)."""

    logged: set[str]
    earlier: np.ndarray  # uint32, sorted

    @classmethod
    def nothing(cls) -> SeenItems:
        return cls(set(), np.zeros(0, np.uint32))

    def __contains__(self, item_id: object) -> bool:
        if item_id in self.logged:
            return True
        if not len(self.earlier) or not isinstance(item_id, str):
            return False
        fp = fingerprint(item_id)
        at = int(np.searchsorted(self.earlier, fp))
        return at < len(self.earlier) and int(self.earlier[at]) == fp

    def __len__(self) -> int:
        return len(self.logged) + len(self.earlier)


def _unpack_earlier(body: dict[str, Any]) -> SeenFilter:
    if body["v"] >= 2:
        raw = body.get("s", b"")
        if not isinstance(raw, bytes):
            raise StoreFormatError("malformed earlier items in a user record")
        return SeenFilter.from_bytes(raw)
    return earlier_from_v1(body.get("p"))


def earlier_from_v1(raw: bytes | None) -> SeenFilter:
    """Format 1's ``"p"`` (uint32 pairs: item hash, Unix seconds) as a seen filter:
    the same items (by the hash's top 24 bits), their times as days."""
    if not raw:
        return SeenFilter()
    if not isinstance(raw, bytes) or len(raw) % 8:
        raise StoreFormatError("malformed earlier items in a user record")
    pairs = np.frombuffer(raw, dtype="<u4").reshape(-1, 2).astype(np.int64)
    out = SeenFilter()
    out.add(pairs[:, 0] >> (32 - FINGERPRINT_BITS), pairs[:, 1] // DAY_SECONDS)
    return out


@dataclass(frozen=True)
class RecordSummary:
    """What erasure needs of a record (its ledger and how many events it held),
    read without building its events and model: erase stays fast."""

    events: int
    ledger: dict[str, list[str]]
    generation: int = 0

    @classmethod
    def from_bytes(cls, raw: bytes) -> RecordSummary:
        body = _unpack_body(raw)
        return cls(
            event_count(body), {k: list(v) for k, v in body["l"].items()}, int(body.get("g", 0))
        )


def _as_events(log: list[StoredEvent] | EventColumns) -> list[StoredEvent]:
    """A log's events, without storing them in the record (comparing changes nothing)."""
    return log.rows(StoredEvent) if isinstance(log, EventColumns) else log


def event_count(body: dict[str, Any]) -> int:
    """How many events a decoded record body holds, without decoding them."""
    events = body["e"]
    return len(events["d"]) if body["v"] >= 4 else len(events)


def _unpack_body(raw: bytes) -> dict[str, Any]:
    body = msgpack.unpackb(raw, raw=False)
    if not isinstance(body, dict) or body.get("v") not in READABLE_FORMATS:
        version = body.get("v") if isinstance(body, dict) else None
        raise StoreFormatError(f"user record format {version!r} is not supported")
    return body
