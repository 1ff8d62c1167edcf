"""How new events join a user's record: a retry is a no-op, a reused id is refused.

An incoming event with a client id is compared with the record's events of that id
(``StoredEvent.same_content``): the same content is a duplicate and nothing is
added; other content raises ``EventIdConflictError`` and the whole call stores
nothing. An id that already left the log (``RetiredIds``) is a duplicate too (only
its digest is kept, so its content is not compared). An unknown id dated at or
before the retired ids' horizon raises ``ResetRequiredError``. Events without a
client id take the record's next sequence number (``event_ids.assigned_id``).
Everything here is a pure function of the record and the events, so the write
path can run it again when it has to recompute a write.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import EventIdConflictError, ResetRequiredError
from .event_ids import assigned_id, format_event_id
from .times import iso_seconds
from .user_record import StoredEvent, UserRecord
from .user_reports import InteractReport


@dataclass(frozen=True)
class Incoming:
    """A validated event to store: its ``eid`` is the client's id (bytes) or -1, and
    ``timed`` says whether the client gave its time (else the engine's clock did,
    and a retry's time is not compared)."""

    event: StoredEvent
    timed: bool


@dataclass(frozen=True)
class Merged:
    """What merging did: each incoming event's id (client bytes or the sequence
    number of the engine's), and how many were new and how many were retries."""

    eids: list[bytes | int]
    added: int
    duplicates: int


@dataclass(frozen=True)
class IncomingBatch:
    """A call's validated events: those to store, the unknown items left out, and
    each given event's place among those to store (None: left out); it reports
    what merging them did (``InteractReport``)."""

    events: list[Incoming]
    unknown: list[str]
    places: list[int | None]

    def report(
        self, user_id: str, record: UserRecord | None, merged: Merged | None
    ) -> InteractReport:
        version, generation = (record.version, record.generation) if record else (0, 0)
        ids: list[str | None] = [
            None
            if place is None or merged is None
            else id_text(user_id, generation, merged.eids[place])
            for place in self.places
        ]
        if merged is None:
            return InteractReport(0, self.unknown, version, generation, 0, ids)
        return InteractReport(
            merged.added, self.unknown, version, generation, merged.duplicates, ids
        )


def event_id(user_id: str, generation: int, event: StoredEvent) -> bytes:
    """The 16 bytes of a stored event's id."""
    if isinstance(event.eid, bytes):
        return event.eid
    return assigned_id(user_id, generation, event.eid)


def merge_events(record: UserRecord, user_id: str, incoming: Sequence[Incoming]) -> Merged:
    """Append the new ones of ``incoming`` to ``record`` (changed in place).

    >>> from ownrank.engine.events import KindCode
    >>> record = UserRecord(consent_shared=True, created_at=0)
    >>> like = StoredEvent(KindCode.like, "a1", None, 1.0, 100, bytes(range(1, 17)))
    >>> merge_events(record, "ann", [Incoming(like, True)]).added
    1
    >>> merge_events(record, "ann", [Incoming(like, True)]).duplicates
    1
    """
    known: dict[bytes, StoredEvent] | None = None
    eids: list[bytes | int] = []
    added = duplicates = 0
    for pos, item in enumerate(incoming):
        event = item.event
        if not isinstance(event.eid, bytes):
            eids.append(record.next_seq)
            record.events.append(event._replace(eid=record.next_seq))
            record.next_seq += 1
            added += 1
            continue
        if known is None:  # built once, and only for calls that name ids
            known = {event_id(user_id, record.generation, e): e for e in record.events}
        eids.append(event.eid)
        found = known.get(event.eid)
        if found is not None:
            if not found.same_content(event, compare_time=item.timed):
                raise EventIdConflictError(format_event_id(event.eid), pos)
            duplicates += 1
        elif event.eid in record.retired:
            duplicates += 1  # it left the log (caps, forget): it stays out
        elif record.retired.horizon and event.ts <= record.retired.horizon:
            raise ResetRequiredError(
                format_event_id(event.eid), iso_seconds(record.retired.horizon)
            )
        else:
            known[event.eid] = event
            record.events.append(event)
            added += 1
    return Merged(eids, added, duplicates)


def id_text(user_id: str, generation: int, eid: bytes | int) -> str:
    """An event id as the client sees it (a UUID string)."""
    return format_event_id(eid if isinstance(eid, bytes) else assigned_id(user_id, generation, eid))


def retire(record: UserRecord, user_id: str, events: Sequence[StoredEvent], cap: int) -> None:
    """Remember the ids of ``events``, which are leaving the record's log."""
    record.retired.add([(event_id(user_id, record.generation, e), e.ts) for e in events], cap)
