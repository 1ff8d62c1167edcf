"""A user's record: everything ownrank holds about one user, under one key.

Record format version 1 (msgpack map; documented for device sync)::

    {"v": 1,                       format version
     "n": int,                     record version: +1 on every write
     "c": bool,                    consent to contribute to shared statistics
     "t": int,                     created (Unix seconds)
     "e": [[kind, ref, value, weight, ts], ...]
                                   retained events, oldest first: kind = KindCode,
                                   ref = item id (or the query text of a search),
                                   value = rating/dwell or nil, weight, ts = Unix seconds
     "m": {"w": bytes, "o": float, "s": float, "i": [[weight, [event index, ...]], ...]}
                                   the personal model (float16 head weights, the
                                   head's catalog mean and scale, interests as groups
                                   of positive events); absent before the first event
     "l": {"pop": [item id, ...]}  ledger: what this user added to shared statistics}

Caps (``EngineConfig``): at most ``max_events`` events and ``max_record_bytes``
bytes; older events are dropped first (and their shared contributions with them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from ..errors import StoreFormatError
from .events import KindCode

RECORD_FORMAT = 1


@dataclass(frozen=True)
class StoredEvent:
    kind: KindCode
    ref: str  # item id, or the query text of a search event
    value: float | None
    weight: float
    ts: int

    def pack(self) -> list[Any]:
        value: Any = self.value
        if value is not None and float(value).is_integer():
            value = int(value)
        weight: Any = int(self.weight) if float(self.weight).is_integer() else self.weight
        return [int(self.kind), self.ref, value, weight, self.ts]

    @classmethod
    def unpack(cls, raw: list[Any]) -> StoredEvent:
        kind, ref, value, weight, ts = raw
        return cls(
            KindCode(kind),
            str(ref),
            None if value is None else float(value),
            float(weight),
            int(ts),
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
        interests = [(float(w), [int(i) for i in members]) for w, members in raw["i"]]
        return cls(weights, float(raw["o"]), float(raw["s"]), interests)


@dataclass
class UserRecord:
    consent_shared: bool
    created_at: int
    version: int = 0
    events: list[StoredEvent] = field(default_factory=list)
    model: PersonalModel | None = None
    ledger: dict[str, list[str]] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {
            "v": RECORD_FORMAT,
            "n": self.version,
            "c": self.consent_shared,
            "t": self.created_at,
            "e": [e.pack() for e in self.events],
            "l": {k: v for k, v in self.ledger.items() if v},
        }
        if self.model is not None:
            body["m"] = self.model.pack()
        return bytes(msgpack.packb(body, use_bin_type=True))

    @classmethod
    def from_bytes(cls, raw: bytes) -> UserRecord:
        body = msgpack.unpackb(raw, raw=False)
        if body.get("v") != RECORD_FORMAT:
            raise StoreFormatError(f"user record format {body.get('v')!r} is not supported")
        return cls(
            consent_shared=bool(body["c"]),
            created_at=int(body["t"]),
            version=int(body["n"]),
            events=[StoredEvent.unpack(e) for e in body["e"]],
            model=PersonalModel.unpack(body["m"]) if "m" in body else None,
            ledger={k: list(v) for k, v in body["l"].items()},
        )

    def item_ids(self) -> set[str]:
        """Items this user has any event on (what "already seen" means)."""
        return {e.ref for e in self.events if not e.is_search}
