"""The write path: every change to a user's record, one LMDB transaction each.

Interact, forget, consent, import and the *catch-up* that drops deleted catalog items
from a user's model all go through ``write``: the new record is computed outside the
transaction (model fit, query embeddings), then committed only if the stored record
is still the one it was computed from (otherwise it is recomputed), and only if
neither a tombstone nor the erasure fence stands for the user. The same transaction
moves the shared statistics from the user's old ledger to the new one, so erasure
(``erasure.py``) subtracts exactly what the user added. Ranking never writes: it
calls ``catch_up`` by name before ranking a user whose items were deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..errors import (
    BatchTooLargeError,
    EventIdConflictError,
    InvalidInputError,
    ResetRequiredError,
    StaleGenerationError,
    StoreFormatError,
    UserErasedError,
    VersionConflictError,
)
from .catalog import Catalog
from .config import EngineConfig
from .erasure_log import ErasureLog
from .event_columns import EventColumns
from .event_ids import parse_event_id
from .event_merge import Incoming, IncomingBatch, Merged, merge_events, retire
from .events import DEFAULT_RATING_SCALE, Event, KindCode
from .head_answer import kept_answer, most_kept_rows
from .key_retirement import keep_readable, retire_keys, unreadable_wait
from .personal_model import fit
from .record_caps import apply_caps
from .record_cipher import RecordUnreadable
from .record_store import RecordStore, check_user_id
from .seen_filter import fingerprint
from .shared_stats import SharedStatistics
from .times import to_utc
from .user_export import export_record, missing_user
from .user_import import import_user
from .user_record import StoredEvent, UserRecord
from .user_reports import BulkInteractReport, ForgetReport, InteractReport


@dataclass
class _Plan:
    """A user write computed outside the transaction, to commit if nothing moved."""

    user_id: str
    key: bytes
    old_raw: bytes | None
    old: UserRecord | None
    new: UserRecord
    data_key: bytes | None
    positives: list[str] | None  # None: the events did not change, the ledger stays
    generation: int | None = None  # the generation the caller's copy is of, if it said
    expected_version: int | None = None  # the version the caller read, if it said
    min_version: int = 0  # the new version is at least this


def _ts(event: Event, now: float) -> int:
    return int(event.timestamp.timestamp()) if event.timestamp else int(now)


class WritePath:
    """Every write of a user record but erasure and re-creation (``erasure.py``)."""

    def __init__(
        self,
        catalog: Catalog,
        shared: SharedStatistics,
        config: EngineConfig,
        clock: Callable[[], float],
        records: RecordStore,
        erasures: ErasureLog,
        erase: Callable[[str], object],
    ) -> None:
        self.catalog = catalog
        self.env = catalog.env
        self.shared = shared
        self.config = config
        self.clock = clock
        self.records = records
        self.erasures = erasures
        self.erase_user = erase  # what importing an export of a user who no longer exists does

    # -- building records ----------------------------------------------------------------

    def _events_from(self, raw_events: Sequence[Event | Mapping[str, Any]]) -> list[Event]:
        if not isinstance(raw_events, list | tuple):
            raise InvalidInputError("events must be a list")
        if len(raw_events) > self.config.max_events_per_call:
            raise BatchTooLargeError(
                f"{len(raw_events)} events in one call; the limit is "
                f"{self.config.max_events_per_call}"
            )
        events: list[Event] = []
        problems: list[str] = []
        for pos, raw in enumerate(raw_events):
            try:
                event = raw if isinstance(raw, Event) else Event.model_validate(raw)
            except ValidationError as exc:
                why = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'event'}: "
                    f"{str(e['msg']).removeprefix('Value error, ')}"
                    for e in exc.errors()
                )
                problems.append(f"#{pos}: {why}")
                continue
            off_scale = self.off_scale(pos, event.kind == "rating", event.value)
            if off_scale:
                problems.append(off_scale)
                continue
            events.append(event)
        if problems:
            raise InvalidInputError(
                f"{len(problems)} invalid event(s), nothing stored: " + " | ".join(problems[:5]),
                problems=problems,
            )
        return events

    def off_scale(self, pos: int, is_rating: bool, value: float | None) -> str | None:
        """The problem with event ``pos`` if it is a rating off the store's scale."""
        scale = self.config.rating_scale or DEFAULT_RATING_SCALE  # the store's (engine.py)
        if not is_rating or (value is not None and scale.admits(value)):
            return None
        return f"#{pos}: value: a rating event needs a value {scale.describe()}"

    def incoming(self, events: Sequence[Event | Mapping[str, Any]]) -> IncomingBatch:
        """Validate events; return those to store, the unknown item ids left out, and
        for each given event its place among those to store (None: left out)."""
        parsed = self._events_from(events)
        now = self.clock()
        item_ids = {e.item_id for e in parsed if e.item_id is not None}
        with self.env.read() as txn:
            known = {i for i in item_ids if self.catalog.store.has_item(txn, i)}
        stored: list[Incoming] = []
        places: list[int | None] = []
        for e in parsed:
            if e.item_id is not None and e.item_id not in known:
                places.append(None)
                continue
            places.append(len(stored))
            event = StoredEvent(
                KindCode[e.kind],
                e.item_id if e.item_id is not None else (e.query or "").strip(),
                e.value,
                e.weight,
                _ts(e, now),
                parse_event_id(e.id) if e.id is not None else -1,
            )
            stored.append(Incoming(event, e.timestamp is not None))
        return IncomingBatch(stored, sorted(item_ids - known), places)

    def to_stored(
        self, events: Sequence[Event | Mapping[str, Any]]
    ) -> tuple[list[StoredEvent], list[str]]:
        """Validate events; return those to store and the unknown item ids left out."""
        found = self.incoming(events)
        return [i.event for i in found.events], found.unknown

    def compact(self, record: UserRecord, user_id: str | None = None) -> None:
        """Apply the caps (``record_caps.py``); ``user_id`` for a stored user, whose
        dropped events' ids stay known."""
        apply_caps(
            record,
            user_id,
            self.config,
            collaborative=self.shared.collaborative,
            dimension=self.catalog.keeper.dimension,
            head_rows=most_kept_rows(self.catalog.keeper, self.config),
        )

    def refit(
        self, record: UserRecord, keep_head: bool = True
    ) -> tuple[dict[str, np.ndarray], list[str]]:
        """Fit the model from the record's events (and, ``keep_head``, keep the head's
        retrieval answer with it: ``head_answer.py``); return the item vectors used and
        the items with net-positive feedback.

        Events on items no longer in the catalog leave the record here: a deleted
        item leaves the user's model, its events and its shared contribution."""
        refs = {e.ref for e in record.events if not e.is_search}
        queries = sorted({e.ref for e in record.events if e.is_search})
        vectors = self.catalog.keeper.item_vectors(refs)  # (LMDB's bits, without a read each)
        if vectors is None:
            with self.env.read() as txn:
                vectors = self.catalog.vectors_of(txn, refs)
        if len(vectors) < len(refs):
            record.events = [e for e in record.events if e.is_search or e.ref in vectors]
        query_vectors: dict[str, np.ndarray] = {}
        if queries:
            encoded = self.catalog.encoder.encode(queries)
            query_vectors = dict(zip(queries, encoded, strict=True))
        # the events are final from here: as columns, fitted and then written as they are
        record.log = columns = record.columns
        record.model, positives = fit(
            columns, vectors, query_vectors, self.catalog.prior(), self.config.learner
        )
        record.head = kept_answer(record, self.catalog.keeper, self.config) if keep_head else None
        return vectors, positives

    def write(
        self,
        user_id: str,
        change: Callable[[UserRecord | None], UserRecord | None],
        *,
        create: bool = True,
        generation: int | None = None,
        refit: bool = True,
        expected_version: int | None = None,
        min_version: int = 0,
    ) -> tuple[UserRecord | None, UserRecord | None, int]:
        """Apply ``change`` to the user's record atomically; return (old, new, shared units).

        The write commits only if the stored record is still byte for byte the one the
        change was computed from (so nothing is decoded twice), and only if no
        tombstone stands for the user (``UserErasedError``). A change that returns
        None writes nothing (old, old, 0 come back). ``refit=False`` is for changes
        that leave the events alone (devices): the model and ledger are kept as they
        are, and no shared count moves. ``expected_version``: the version the caller
        read (0: no record); another one raises ``VersionConflictError``, checked in
        the committing transaction. The new version is the old one + 1, or
        ``min_version`` if that is higher (an import keeps its exported version)."""
        key = self.records.key(user_id)
        created: dict[bytes, bytes] = {}  # user key -> the data key this write made
        try:
            for _attempt in range(50):
                with self.env.read() as txn:
                    found = self.records.raw(txn, key)
                    old_raw = None if found is None else bytes(found)
                try:
                    old, data_key = self.records.decode(key, old_raw)
                except RecordUnreadable:
                    # an erasure is destroying this user right now, or another writer
                    # is sealing the record again under a fresh key (key_retirement.py;
                    # under load that can take a while), or a crash left an orphan
                    # that the next open purges: wait for it to settle
                    threading.Event().wait(unreadable_wait(_attempt))
                    continue
                if old_raw is not None:
                    # a stored record is sealed with the key: it is no longer ours to
                    # destroy if this write is refused (the erasure destroys it)
                    created = {}
                if old is not None and self.records.fenced(key, old.generation):
                    raise UserErasedError(user_id)
                if old is None and not create:
                    return None, None, 0
                new = change(copy_record(old))
                if new is None:
                    return old, old, 0
                data_key, made = self.records.data_key(key, data_key)
                if made and data_key is not None:
                    created = {key: data_key}
                positives: list[str] | None = None
                if refit or old is None:
                    self.compact(new, user_id)
                    _vectors, positives = self.refit(new)
                plan = _Plan(
                    user_id,
                    key,
                    old_raw,
                    old,
                    new,
                    data_key,
                    positives,
                    generation,
                    expected_version,
                    min_version,
                )
                with self.env.write() as txn:
                    units = self._commit(txn, plan)
                if units is None:
                    continue  # another writer got there first: recompute
                created = {}  # the key now has its record
                if data_key is not None:
                    keep_readable(self.records, {key: data_key}, self.clock)
                return old, new, units
        finally:
            if created:  # the record this key was made for was never written
                retire_keys(self.records, created, self.clock)
        raise StoreFormatError(
            f"the record of user {key.hex()} stays unreadable: its data key is gone "
            "(reopen the store to purge it)"
        )

    def _commit(self, txn: Any, plan: _Plan) -> int | None:
        """Store a planned record inside ``txn``; return the shared units moved, or None
        if the stored record changed since the plan was made. Raises
        ``UserErasedError`` (before writing anything) if a tombstone stands."""
        found = self.records.raw(txn, plan.key)
        if (None if found is None else bytes(found)) != plan.old_raw:
            return None
        if self.erasures.tombstone(txn, plan.key, self.clock()) is not None:
            raise UserErasedError(plan.user_id)
        old, new = plan.old, plan.new
        # after the tombstone: an erasure writes the fence entry before its tombstone
        fenced = self.records.fence.state(plan.key)
        if fenced is not None:
            if fenced.erased:
                raise UserErasedError(plan.user_id)
            if new.generation < fenced.generation:
                if old is not None:  # a stale record (the next open purges it)
                    raise UserErasedError(plan.user_id)
                new.generation = fenced.generation  # a new record of the current generation
        if plan.generation is not None and plan.generation < new.generation:
            # a write from a copy of an erased generation (a device, a retried request)
            raise StaleGenerationError(plan.user_id, plan.generation, new.generation)
        current = old.version if old else 0
        if plan.expected_version is not None and plan.expected_version != current:
            raise VersionConflictError(plan.user_id, plan.expected_version, current)
        if plan.positives is None and old is not None:
            units = 0  # the events did not change: neither does the ledger
        else:
            new.ledger = self.shared.ledger_for(new.consent_shared, plan.positives or [])
            units = self.shared.apply(txn, old.ledger if old else {}, new.ledger)
        new.version = max(current + 1, plan.min_version)
        self.records.put(txn, plan.key, self.records.encode(plan.key, new, plan.data_key))
        return units

    def new_record(self) -> UserRecord:
        return UserRecord(consent_shared=self.config.default_consent, created_at=int(self.clock()))

    # -- feedback -------------------------------------------------------------------------

    def interact(
        self,
        user_id: str,
        events: Sequence[Event | Mapping[str, Any]],
        generation: int | None = None,
    ) -> InteractReport:
        """Record feedback; events on unknown items are reported back, not stored. With
        ``generation`` (the one a client's copy of the user is of: ``export``,
        ``InteractReport.generation``), a write from an erased generation is refused
        (``StaleGenerationError``), nothing written."""
        check_user_id(user_id)
        if generation is not None and (
            isinstance(generation, bool) or not isinstance(generation, int) or generation < 0
        ):
            raise InvalidInputError("generation is a non-negative integer")
        found = self.incoming(events)
        if not found.events:
            record = self.records.read(user_id)
            current = record.generation if record else 0
            if generation is not None and generation < current:
                raise StaleGenerationError(user_id, generation, current)
            return found.report(user_id, record, None)
        merged: Merged | None = None

        def add(record: UserRecord | None) -> UserRecord | None:
            nonlocal merged
            if record is not None and generation is not None and generation < record.generation:
                raise StaleGenerationError(user_id, generation, record.generation)
            fresh = record is None
            record = record or self.new_record()
            merged = merge_events(record, user_id, found.events)
            if not merged.added and not fresh:
                return None  # every event was a retry: nothing changes, bit for bit
            return record

        _old, new, _units = self.write(user_id, add, generation=generation)
        assert merged is not None
        return found.report(user_id, new, merged)

    def interact_many(
        self, batches: Mapping[str, Sequence[Event | Mapping[str, Any]]]
    ) -> BulkInteractReport:
        """Feedback of many users in one call, for bulk ingest (e.g. a clickstream).

        Every event is validated first (nothing is stored if one is malformed); then
        all users are written with one keystore commit (new users' data keys) and one
        data commit: a small write's cost is its fsync, and a group commit pays it
        once. Users with a standing tombstone are reported in ``erased``, not
        written; the others are unaffected."""
        if not isinstance(batches, Mapping):
            raise InvalidInputError("batches must map user ids to lists of events")
        if len(batches) > self.config.max_users_per_bulk:
            raise BatchTooLargeError(
                f"{len(batches)} users in one call; the limit is {self.config.max_users_per_bulk}"
            )
        parsed = {check_user_id(uid): self.incoming(events) for uid, events in batches.items()}
        reports: dict[str, InteractReport] = {}
        erased: list[str] = []
        conflicts: dict[str, str] = {}
        pending = {uid for uid, found in parsed.items() if found.events}
        keys = {uid: self.records.key(uid) for uid in pending}
        created: dict[bytes, bytes] = {}  # user key -> the data key this write made
        sealed: dict[bytes, bytes] = {}  # user key -> the data key its record was sealed with
        try:
            for _attempt in range(50):
                if not pending:
                    break
                plans, merges = self._plan_bulk(pending, keys, parsed, created, reports, conflicts)
                pending -= set(reports) | set(conflicts)
                if pending and not plans:  # only unreadable records left: let them settle
                    threading.Event().wait(unreadable_wait(_attempt))  # (as ``write`` does)
                with self.env.write() as txn:
                    for plan in plans:
                        try:
                            units = self._commit(txn, plan)
                        except UserErasedError:
                            erased.append(plan.user_id)
                            pending.discard(plan.user_id)
                            continue
                        if units is not None:
                            pending.discard(plan.user_id)
                            created.pop(plan.key, None)
                            if plan.data_key is not None:
                                sealed[plan.key] = plan.data_key
                            reports[plan.user_id] = parsed[plan.user_id].report(
                                plan.user_id, plan.new, merges[plan.user_id]
                            )
        finally:
            if created:  # keys made for records that were never written
                retire_keys(self.records, created, self.clock)
        keep_readable(self.records, sealed, self.clock)
        if pending:  # pragma: no cover - 50 lost races in a row
            raise StoreFormatError("bulk write kept racing with concurrent writers")
        for uid, found in parsed.items():
            if not found.events:
                reports[uid] = found.report(uid, self.records.read(uid), None)
        return BulkInteractReport(reports, sorted(erased), dict(sorted(conflicts.items())))

    def _plan_bulk(
        self,
        users: set[str],
        keys: Mapping[str, bytes],
        parsed: Mapping[str, IncomingBatch],
        created: dict[bytes, bytes],
        reports: dict[str, InteractReport],
        conflicts: dict[str, str],
    ) -> tuple[list[_Plan], dict[str, Merged]]:
        """Read, decode and refit every pending user; new users' keys in one commit.
        Users whose events are all retries get their report now (nothing to write);
        users whose events conflict with their record are listed in ``conflicts``."""
        with self.env.read() as txn:
            raws = {uid: self.records.raw(txn, keys[uid]) for uid in sorted(users)}
        olds: dict[str, tuple[bytes | None, UserRecord | None, bytes | None]] = {}
        for uid, found in raws.items():
            raw = None if found is None else bytes(found)
            try:
                old, data_key = self.records.decode(keys[uid], raw)
            except RecordUnreadable:
                continue  # being erased right now: the next round sees the outcome
            if raw is not None:  # a stored record uses the key: never ours to destroy
                created.pop(keys[uid], None)
            olds[uid] = (raw, old, data_key)
        missing = [keys[u] for u, (_r, _o, dk) in olds.items() if dk is None]
        made: dict[bytes, bytes] = {}
        if missing and self.config.encrypt_user_records:
            for key, (data_key, was_made) in self.records.keystore.get_or_create_many(
                missing, int(self.clock())
            ).items():
                made[key] = data_key
                if was_made:
                    created[key] = data_key
        plans = []
        merges: dict[str, Merged] = {}
        for uid, (raw, old, data_key) in olds.items():
            new = copy_record(old) or self.new_record()
            try:
                merged = merge_events(new, uid, parsed[uid].events)
            except (EventIdConflictError, ResetRequiredError) as exc:
                conflicts[uid] = f"{exc.code}: {exc.message}"
                continue
            if not merged.added and old is not None:
                reports[uid] = parsed[uid].report(uid, old, merged)  # all retries
                continue
            merges[uid] = merged
            self.compact(new, uid)
            _vectors, positives = self.refit(new, keep_head=False)  # (for throughput)
            plans.append(
                _Plan(uid, keys[uid], raw, old, new, data_key or made.get(keys[uid]), positives)
            )
        return plans, merges

    def set_consent(self, user_id: str, shared: bool) -> int:
        """Give or withdraw consent to shared statistics; withdrawing subtracts at once."""

        def change(record: UserRecord | None) -> UserRecord:
            record = record or self.new_record()
            record.consent_shared = bool(shared)
            return record

        _old, new, _units = self.write(user_id, change)
        assert new is not None
        return new.version

    def forget(
        self,
        user_id: str,
        item_ids: Iterable[str] | None = None,
        before: datetime | None = None,
        after: datetime | None = None,
    ) -> ForgetReport:
        """Drop the events matching all given criteria; the model is refit without them."""
        ids = None if item_ids is None else {str(i) for i in item_ids}
        if ids is None and before is None and after is None:
            raise InvalidInputError("forget needs item_ids, before or after")
        try:  # the range every time is held to; a naive bound is UTC
            lo = None if after is None else to_utc(after).timestamp()
            hi = None if before is None else to_utc(before).timestamp()
        except ValueError as exc:
            raise InvalidInputError(f"forget: {exc}") from None

        def matches(e: StoredEvent) -> bool:
            if ids is not None and (e.is_search or e.ref not in ids):
                return False
            if hi is not None and not e.ts < hi:
                return False
            return not (lo is not None and not e.ts > lo)

        removed = 0
        # earlier items keep a fingerprint and a day: those that might match go
        fingerprints = None if ids is None else {fingerprint(i) for i in ids}

        def drop(record: UserRecord | None) -> UserRecord | None:
            nonlocal removed
            assert record is not None
            kept = [e for e in record.events if not matches(e)]
            gone = [e for e in record.events if matches(e)]
            removed = len(gone)
            record.events = kept
            record.earlier.forget(fingerprints, after=lo, before=hi)
            # a client still holding a forgotten event cannot bring it back
            retire(record, user_id, gone, self.config.retired_event_ids)
            return record

        _old, new, units = self.write(user_id, drop, create=False)
        return ForgetReport(removed, units, new.version if new else 0)

    # -- catch-up, export, import ----------------------------------------------------------

    def catch_up(self, user_id: str) -> UserRecord | None:
        """Rewrite the user's record without the events on items no longer in the
        catalog (and their shared contributions): the one write a ranking call may
        ask for, once, when it finds such items (the rewrite drops them). None when
        the user is gone, erased since the call read the record included."""
        try:
            _old, record, _units = self.write(user_id, lambda r: r, create=False)
        except UserErasedError:  # erased meanwhile: to a read, the user no longer exists
            return None
        return record

    def export(self, user_id: str) -> dict[str, Any]:
        """The user's complete record as readable JSON-ready data."""
        record = self.records.read(user_id)
        if record is None:
            return missing_user(user_id)
        return export_record(user_id, record)

    def import_user(self, data: Mapping[str, Any], expected_version: int | None = None) -> int:
        """Restore a user from ``export`` output (``user_import.py``)."""
        return import_user(self, data, expected_version)

    def recount_shared(self, txn: Any) -> int:
        """Rebuild the shared statistics from the ledgers of the readable records
        (after orphans were purged); return the units that changed."""
        ledgers = []
        for key, raw in self.records.scan(txn):
            try:
                record = self.records.decode(key, raw)[0]
            except RecordUnreadable:
                continue
            if record is not None:
                ledgers.append(record.ledger)
        return self.shared.rebuild(txn, ledgers)


def copy_record(record: UserRecord | None) -> UserRecord | None:
    """A copy a write may change (events, ledger and earlier items are new objects)."""
    if record is None:
        return None
    return UserRecord(
        record.consent_shared,
        record.created_at,
        record.version,
        # columns as read are never changed in place (``events`` replaces them)
        record.log if isinstance(record.log, EventColumns) else list(record.log),
        record.model,
        {k: list(v) for k, v in record.ledger.items()},
        record.earlier.copy(),
        record.generation,
        record.next_seq,
        record.retired.copy(),
        list(record.devices),
        record.head,
    )
