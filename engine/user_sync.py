"""Device sync of a user's state: one exchange pushes a device's offline events and
forgets, and brings back the server's event set and model when the device's differs.

A user's state is a deterministic fold over a set of events keyed by their ids
(``event_ids.py``): the set is a union by id, a forget puts ids out of it for good
(``RetiredIds``), and the record keeps its events in one order that depends on
the set alone (``record_caps.event_order``), so any delivery order of the same
pushes gives the same record and the same model. The caps count events, so every
copy keeps the same ones.

Every answer carries the set's **count and checksum**: the sum, mod 2^64, of each
event's 64-bit checksum (``event_checksum``), so a device verifies that it holds
exactly the server's set, and updates its own sum event by event. When the device's
count and checksum (of its set after the push) differ from the server's, the answer
carries the server's copy of the record (the export, ``user_export.py``): the server
is authoritative, and the device replaces its copy with it.

Erasure reaches every copy: a sync for an erased user is refused
(``UserErasedError``: reset and wipe), a copy of an older generation too
(``StaleGenerationError``), and nothing of the push is written. Pushed events need
their client id and time, and a time more than ``MAX_FUTURE_SECONDS`` ahead of the
server's clock is refused (``ClockAheadError``): a device's clock never orders
events it has not made yet.

A device's copy at rest is sealed under a **lease** key (``lease``): derived from the
user's data key, so erasing the user (which destroys that key) ends every lease for
good; the device keeps it for ``EngineConfig.device_lease_days`` and renews it at
each sync.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import msgpack

from ..errors import ClockAheadError, InvalidInputError, StaleGenerationError, UserErasedError
from .event_ids import parse_event_id
from .event_merge import IncomingBatch, event_id, merge_events, retire
from .events import Event
from .record_store import check_user_id
from .times import iso_seconds
from .user_export import export_record
from .user_record import StoredEvent, UserRecord
from .write_path import WritePath

MAX_FUTURE_SECONDS = 300  # pushed events may be this far ahead of the server's clock
DAY_SECONDS = 86_400
UserStatus = Literal["absent", "active", "erased"]


def event_checksum(raw_id: bytes, event: StoredEvent) -> int:
    """An event's 64-bit checksum: the first 8 bytes (little-endian) of BLAKE2b-64 of
    the msgpack array ``[id (16 bytes), kind code, item id or query, value, weight,
    Unix seconds]``, numbers integral-valued packed as integers (``StoredEvent.pack``).

    >>> from ownrank.engine.events import KindCode
    >>> like = StoredEvent(KindCode.like, "a1", None, 1.0, 1_700_000_000)
    >>> event_checksum(bytes(16), like) == event_checksum(bytes(16), like)
    True
    >>> event_checksum(bytes(16), like) != event_checksum(b"\x01" * 16, like)
    True
    """
    packed = msgpack.packb([raw_id, *event.pack()[:5]], use_bin_type=True)
    return int.from_bytes(hashlib.blake2b(packed, digest_size=8).digest(), "little")


def events_checksum(
    user_id: str, generation: int, events: Sequence[StoredEvent]
) -> tuple[int, int]:
    """(count, checksum) of an event set: the sum of the event checksums, mod 2^64."""
    total = sum(event_checksum(event_id(user_id, generation, e), e) for e in events)
    return len(events), total % 2**64


def set_checksum(user_id: str, record: UserRecord | None) -> tuple[int, int]:
    """(count, checksum) of the user's stored event set."""
    if record is None:
        return 0, 0
    return events_checksum(user_id, record.generation, record.events)


@dataclass(frozen=True)
class SyncResult:
    """What one exchange did, and the server's state after it."""

    user_id: str
    generation: int
    version: int
    count: int  # events in the server's set
    checksum: int  # their checksum sum, mod 2^64
    in_sync: bool  # the device said it holds exactly this set
    accepted: int  # pushed events stored (new)
    duplicates: int  # pushed events the server already had (or had forgotten)
    forgotten: int  # events the push's forgets took out
    event_ids: list[str | None] = field(default_factory=list)  # per pushed event
    record: dict[str, Any] | None = None  # the server's copy (export) when not in sync
    server_time: int = 0


class UserSync:
    """The server side of device sync (``Engine.sync``)."""

    def __init__(self, writes: WritePath, clock: Callable[[], float]) -> None:
        self.writes = writes
        self.records = writes.records
        self.clock = clock

    def status(self, user_id: str) -> UserStatus:
        """Whether the user exists, was erased (a tombstone stands: devices reset), or
        neither (one record read and the fence)."""
        key = self.records.key(check_user_id(user_id))
        state = self.records.fence.state(key)
        if state is not None and state.erased:
            return "erased"
        return "active" if self.records.read(user_id) is not None else "absent"

    def exchange(
        self,
        user_id: str,
        *,
        generation: int | None,
        count: int = 0,
        checksum: int = 0,
        push: Sequence[Event | Mapping[str, Any]] = (),
        forget: Iterable[str] = (),
    ) -> SyncResult:
        """Apply a device's push (events with ids and times) and forgets (event ids) in
        one write, and answer with the server's set: ``in_sync`` when the device's
        ``count`` and ``checksum`` (of its set after this push) match, else with the
        server's copy of the record. ``generation``: the one the device's copy is of
        (None: a device that never synced)."""
        check_user_id(user_id)
        if generation is not None and (
            isinstance(generation, bool) or not isinstance(generation, int) or generation < 0
        ):
            raise InvalidInputError("generation is a non-negative integer")
        now = self.clock()
        found = self._checked_push(push, now)
        forget_ids = {parse_event_id(text) for text in forget}
        key = self.records.key(user_id)
        state = self.records.fence.state(key)
        if state is not None and state.erased:
            raise UserErasedError(user_id)
        if generation is not None and state is not None and generation < state.generation:
            raise StaleGenerationError(user_id, generation, state.generation)
        outcome: dict[str, Any] = {}

        def apply(record: UserRecord | None) -> UserRecord | None:
            outcome.clear()
            if record is not None and generation is not None and generation < record.generation:
                raise StaleGenerationError(user_id, generation, record.generation)
            if record is None and not found.events:
                return None  # nothing stored, nothing to store
            fresh = record is None
            record = record or self.writes.new_record()
            merged = merge_events(record, user_id, found.events)
            gone = [
                e for e in record.events if event_id(user_id, record.generation, e) in forget_ids
            ]
            if gone:
                record.events = [e for e in record.events if e not in gone]
                retire(record, user_id, gone, self.writes.config.retired_event_ids)
            outcome.update(merged=merged, forgotten=len(gone))
            if not merged.added and not gone and not fresh:
                return None  # retries and forgets already applied: nothing changes
            return record

        old, new, _units = self.writes.write(user_id, apply, generation=generation)
        record = new if new is not None else old
        merged = outcome.get("merged")
        report = found.report(user_id, record, merged)
        server_count, server_sum = set_checksum(user_id, record)
        # a device without a copy (never synced) always gets the server's
        in_sync = generation is not None and (count, checksum) == (server_count, server_sum)
        return SyncResult(
            user_id=user_id,
            generation=record.generation if record else (state.generation if state else 0),
            version=record.version if record else 0,
            count=server_count,
            checksum=server_sum,
            in_sync=in_sync,
            accepted=report.accepted,
            duplicates=report.duplicates,
            forgotten=int(outcome.get("forgotten", 0)),
            event_ids=report.event_ids,
            record=None if in_sync or record is None else export_record(user_id, record),
            server_time=int(now),
        )

    def _checked_push(self, push: Sequence[Event | Mapping[str, Any]], now: float) -> IncomingBatch:
        """The pushed events, validated: each carries the device's id and time, none
        too far ahead of the server's clock."""
        if not isinstance(push, list | tuple):
            raise InvalidInputError("push must be a list of events")
        problems = []
        for pos, raw in enumerate(push):
            data = raw.model_dump() if isinstance(raw, Event) else raw
            if not isinstance(data, Mapping) or not data.get("id") or not data.get("timestamp"):
                problems.append(f"#{pos}: a pushed event carries its id and its timestamp")
        if problems:
            raise InvalidInputError(
                f"{len(problems)} invalid event(s), nothing stored: " + " | ".join(problems[:5]),
                problems=problems,
            )
        found = self.writes.incoming(push)
        ahead = [e.event for e in found.events if e.event.ts > now + MAX_FUTURE_SECONDS]
        if ahead:
            raise ClockAheadError(iso_seconds(max(e.ts for e in ahead)), iso_seconds(int(now)))
        return found

    def lease(self, user_id: str, device_id: str, days: float) -> tuple[bytes, int] | None:
        """The key a device seals its copy of the user with, and until when it may keep
        it: HMAC-SHA256 of the user's data key over the device id and generation, so
        it is the same at every renewal and gone with the data key (erasure). None
        when records are not sealed (no data key)."""
        key = self.records.key(check_user_id(user_id))
        data_key = self.records.keystore.get(key)
        record = self.records.read(user_id)
        if data_key is None or record is None:
            return None
        raw_device = parse_event_id(device_id)
        message = b"ownrank-device-lease\0" + raw_device + record.generation.to_bytes(8, "little")
        lease_key = hmac.new(data_key, message, hashlib.sha256).digest()
        return lease_key, int(self.clock() + days * DAY_SECONDS)
