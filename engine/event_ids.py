"""Event ids: what makes a retried event a no-op.

Every stored event has a 128-bit id. A client may choose it (random, sent as a
UUID string); otherwise the engine assigns one when it stores the event. The
record keeps a client's id as its 16 bytes, but an assigned id as a small per-user
sequence number only: the id is derived from the user id, the user's generation
and that number (``assigned_id``), so events ingested without ids cost one or two
bytes each, not sixteen.

When an event leaves the retained log (the caps drop it, or ``forget`` removes it)
its id is *retired*: the record keeps an 8-byte digest of the id and the event's
time (``RetiredIds``), nothing about the item, so a retry of it stays a no-op.
At most ``EngineConfig.retired_event_ids`` retired ids are kept, the newest by
event time; when older ones go, the record's *horizon* moves to the newest time
that went. An event that names an id the record does not know and whose time is
at or before the horizon might be a retry the record can no longer recognise: it
is refused (``ResetRequiredError``), never stored twice.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass, field

import numpy as np

from ..errors import InvalidInputError

ID_BYTES = 16
_HEX = "[0-9a-fA-F]"
EVENT_ID_PATTERN = f"^{_HEX}{{8}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{4}}-?{_HEX}{{12}}$"
EVENT_ID_RE = re.compile(EVENT_ID_PATTERN.strip("^$"))
_RETIRED = np.dtype([("ts", "<u4"), ("digest", "<u8")])


def parse_event_id(text: object) -> bytes:
    """The 16 bytes of an event id written as a UUID (8-4-4-4-12 hex digits, or 32 hex
    digits without the hyphens).

    >>> parse_event_id("6f9619ff-8b86-d011-b42d-00c04fc964ff").hex()
    '6f9619ff8b86d011b42d00c04fc964ff'
    """
    if not isinstance(text, str) or not EVENT_ID_RE.fullmatch(text):
        raise InvalidInputError(f"event id {text!r} is not a UUID (128 bits, in hex)")
    return uuid.UUID(text).bytes


def format_event_id(raw: bytes) -> str:
    """An event id as its canonical UUID string.

    >>> format_event_id(bytes(range(16)))
    '00010203-0405-0607-0809-0a0b0c0d0e0f'
    """
    return str(uuid.UUID(bytes=raw))


def assigned_id(user_id: str, generation: int, seq: int) -> bytes:
    """The id the engine assigned to the user's event number ``seq`` (a UUID of
    version 8, so it never equals a random version-4 id a client chose).

    >>> format_event_id(assigned_id("ann", 0, 1))[14]
    '8'
    """
    digest = bytearray(
        hashlib.blake2b(
            f"{generation}\0{seq}\0{user_id}".encode(),
            digest_size=ID_BYTES,
            person=b"ownrank-event",
        ).digest()
    )
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return bytes(digest)


def id_digest(raw: bytes) -> int:
    """The 64-bit digest a retired id is remembered by."""
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


@dataclass(eq=False)
class RetiredIds:
    """The ids of events that left the log: (event time, id digest) pairs, oldest
    first, and the horizon (0: nothing was let go yet).

    >>> retired = RetiredIds()
    >>> retired.add([(b"a" * 16, 100), (b"b" * 16, 200)], cap=1)
    >>> b"b" * 16 in retired, b"a" * 16 in retired, retired.horizon
    (True, False, 100)
    """

    entries: np.ndarray = field(default_factory=lambda: np.zeros(0, _RETIRED))
    horizon: int = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, RetiredIds)
            and self.horizon == other.horizon
            and self.to_bytes() == other.to_bytes()
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __contains__(self, raw: object) -> bool:
        return isinstance(raw, bytes) and bool(np.any(self.entries["digest"] == id_digest(raw)))

    def add(self, retired: list[tuple[bytes, int]], cap: int) -> None:
        """Remember ids (with their events' times); keep the newest ``cap``."""
        if retired:
            more = np.array([(ts, id_digest(raw)) for raw, ts in retired], dtype=_RETIRED)
            self.entries = np.sort(np.concatenate([self.entries, more]), order=["ts", "digest"])
        self.trim(cap)

    def trim(self, cap: int) -> None:
        """Keep the newest ``cap`` ids; the horizon moves past those let go."""
        extra = len(self.entries) - max(0, cap)
        if extra > 0:
            self.horizon = max(self.horizon, int(self.entries["ts"][extra - 1]))
            self.entries = self.entries[extra:].copy()

    def copy(self) -> RetiredIds:
        return RetiredIds(self.entries.copy(), self.horizon)

    def to_bytes(self) -> bytes:
        return self.entries.tobytes()

    @classmethod
    def from_pairs(cls, pairs: list[tuple[int, int]], horizon: int) -> RetiredIds:
        """From (event time, id digest) pairs, as an export lists them."""
        if any(not 0 <= ts < 2**32 for ts, _digest in pairs) or not 0 <= horizon < 2**32:
            raise ValueError("a retired event id's time is out of range")
        entries = np.sort(np.array(pairs, dtype=_RETIRED), order=["ts", "digest"])
        return cls(entries, horizon)

    @classmethod
    def from_bytes(cls, raw: bytes, horizon: int) -> RetiredIds:
        if len(raw) % _RETIRED.itemsize:
            raise ValueError("malformed retired event ids")
        return cls(np.frombuffer(raw, dtype=_RETIRED).copy(), int(horizon))
