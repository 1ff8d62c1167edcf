"""Users: feedback in, recommendations and personalized search out, and forgetting.

Each user is one record under one key in the ``users`` database; the key is an
HMAC of the user id with a per-store secret, so raw ids never sit on disk.
Every write of a user (interact, forget, consent, import, erase) is one LMDB
transaction that also moves the shared statistics from the user's old ledger
to the new one, so erasure subtracts exactly what the user added.

Writes are optimistic: the new record is computed outside the transaction
(model fit, query embeddings), then committed only if the stored record is
still the one it was computed from; otherwise it is recomputed.

Records are sealed with the user's own data key (``record_cipher``; keys in the
``Keystore``). Every write checks the user's tombstone inside its transaction,
so nothing recreates an erased user behind the erasure's back (``erasure_log``),
and the erasure fence (``storage/erasure_fence.py``), which no restore rolls back
and which does not expire: an erased user stays erased until explicitly re-created,
and a re-created user's older generations (exports, restored records) are refused.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..errors import (
    BatchTooLargeError,
    InvalidInputError,
    StaleGenerationError,
    StoreFormatError,
    UserErasedError,
)
from ..storage.catalog_store import CatalogStore
from ..storage.erasure_fence import ErasureFence
from ..storage.keystore import Keystore
from .blas import single_threaded
from .catalog import Catalog, Hit, check_n
from .config import EngineConfig
from .erasure_log import ErasureLog
from .events import MAX_QUERY_CHARS, Event, KindCode
from .items import is_valid_item_id
from .personal_model import CatalogPrior, fit, observations
from .record_cipher import OVERHEAD, RecordUnreadable, is_sealed, seal, unseal
from .shared_stats import F_SCALE, Q_SCALE, SharedStatistics
from .times import parse_time, to_utc, unix_seconds
from .user_record import (
    PersonalModel,
    RecordSummary,
    SeenItems,
    StoredEvent,
    UserRecord,
    item_hash,
)

SECRET_META_KEY = "user_key_secret"
# cold start without popularity shows recent items, spread over topics
COLD_START_DIVERSITY = 0.3


@dataclass(frozen=True)
class Interest:
    """A centre of interest at ranking time: its direction and its member items."""

    vector: np.ndarray
    members: list[str]
    matrix: np.ndarray  # member vectors, one row each


@dataclass(frozen=True)
class CandidatePool:
    """Items being ranked: their rows, ids, vectors and catalog-centred unit vectors."""

    rows: np.ndarray
    ids: list[str]
    vectors: np.ndarray
    units: np.ndarray

    @cached_property
    def hashes(self) -> list[int]:
        """The item hashes earlier items are matched by (once per pool: pools are cached)."""
        return [item_hash(i) for i in self.ids]

    def unseen(self, seen: SeenItems) -> np.ndarray:
        """Positions of the items not in ``seen``."""
        if not seen.earlier:
            return np.array([k for k, i in enumerate(self.ids) if i not in seen.logged], np.int64)
        return np.array(
            [
                k
                for k, (i, h) in enumerate(zip(self.ids, self.hashes, strict=True))
                if i not in seen.logged and h not in seen.earlier
            ],
            np.int64,
        )


@dataclass(frozen=True)
class Neighbours:
    """The neighbour score of each candidate and the rated item that contributed most."""

    scores: np.ndarray
    because: list[str]

    @staticmethod
    def none(count: int) -> Neighbours:
        return Neighbours(np.zeros(count), [])


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    item: Any  # Item
    explanation: dict[str, Any]


@dataclass
class InteractReport:
    accepted: int
    unknown_items: list[str] = field(default_factory=list)
    version: int = 0


@dataclass(frozen=True)
class BulkInteractReport:
    reports: dict[str, InteractReport]  # per user id
    erased: list[str]  # users not written: a tombstone stands


@dataclass
class _Plan:
    """A user write computed outside the transaction, to commit if nothing moved."""

    user_id: str
    key: bytes
    old_raw: bytes | None
    old: UserRecord | None
    new: UserRecord
    data_key: bytes | None
    positives: list[str]


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


def check_user_id(user_id: object) -> str:
    if not is_valid_item_id(user_id):
        raise InvalidInputError(
            f"invalid user id {user_id!r}: 1-256 characters from A-Z a-z 0-9 . _ : @ ~ -"
        )
    return str(user_id)


def _ts(event: Event, now: float) -> int:
    return int(event.timestamp.timestamp()) if event.timestamp else int(now)


def _iso(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


class Users:
    def __init__(
        self,
        catalog: Catalog,
        shared: SharedStatistics,
        config: EngineConfig,
        clock: Callable[[], float],
        model_fingerprint: str,
        keystore: Keystore,
        fence: ErasureFence,
    ) -> None:
        self.catalog = catalog
        self.store: CatalogStore = catalog.store
        self.env = catalog.env
        self.db = self.env.db("users")
        self.shared = shared
        self.config = config
        self.clock = clock
        self.model_fingerprint = model_fingerprint
        self.keystore = keystore
        self.fence = fence
        self.erasures = ErasureLog(
            self.env, config.tombstone_retention_days, config.erasure_journal_retention_days
        )
        self._secret = self._load_secret()
        self._pop_solver: tuple[CatalogPrior, np.ndarray] | None = None
        # the last direction, keyed by the exact statistic it came from (replaced, not
        # kept, when the statistic changes: an erasure's change is seen on the next call)
        self._pop_direction: tuple[CatalogPrior, bytes, np.ndarray] | None = None
        self._prior: tuple[int, CatalogPrior] | None = None
        self._pools: dict[tuple[int, bytes], CandidatePool] = {}
        self._pools_lock = threading.Lock()

    # -- keys ---------------------------------------------------------------------------

    def _load_secret(self) -> bytes:
        with self.env.write() as txn:
            raw = txn.get(SECRET_META_KEY.encode(), db=self.store.meta)
            if raw is None:
                raw = secrets.token_bytes(32)  # a CSPRNG: the key must not be guessable
                txn.put(SECRET_META_KEY.encode(), raw, db=self.store.meta)
            return bytes(raw)

    def key(self, user_id: str) -> bytes:
        """The user's key: HMAC-SHA256(store secret, user id), first 16 bytes."""
        check_user_id(user_id)
        return hmac.new(self._secret, user_id.encode(), hashlib.sha256).digest()[:16]

    def _decode(self, key: bytes, raw: bytes | None) -> tuple[UserRecord | None, bytes | None]:
        """(record, its data key) from stored bytes; raises ``RecordUnreadable`` for a
        sealed record whose key is gone."""
        if raw is None:
            return None, None
        plain, data_key = self._plaintext(key, raw)
        return UserRecord.from_bytes(plain), data_key

    def _plaintext(self, key: bytes, raw: bytes) -> tuple[bytes, bytes | None]:
        """(the record's msgpack bytes, its data key or None if stored unsealed)."""
        if not is_sealed(raw):  # written before records were sealed
            return raw, None
        data_key = self.keystore.get(key)
        return unseal(data_key, key, raw), data_key

    def _encode(self, key: bytes, record: UserRecord, data_key: bytes | None) -> bytes:
        plain = record.to_bytes()
        return plain if data_key is None else seal(data_key, key, plain)

    def _get(self, txn: Any, key: bytes) -> UserRecord | None:
        raw = txn.get(key, db=self.db)
        try:
            record = self._decode(key, None if raw is None else bytes(raw))[0]
        except RecordUnreadable:
            return None  # its key was destroyed: the user does not exist
        return None if record is not None and self._fenced(key, record.generation) else record

    def _fenced(self, key: bytes, generation: int) -> bool:
        """Whether the fence rules out a record of this generation: the user was erased
        since, or re-created with a newer generation. (The next open purges such a
        record; until then it is never read nor written on.)"""
        state = self.fence.state(key)
        if state is None:
            return False
        return generation <= state.generation if state.erased else generation < state.generation

    def record(self, user_id: str) -> UserRecord | None:
        with self.env.read() as txn:
            return self._get(txn, self.key(user_id))

    def _data_key(self, key: bytes, known: bytes | None) -> tuple[bytes | None, bool]:
        """The data key a write seals with (created if needed): (key, created now)."""
        if not self.config.encrypt_user_records:
            return None, False
        if known is not None:
            return known, False
        return self.keystore.get_or_create(key, int(self.clock()))

    # -- catalog facts --------------------------------------------------------------------

    def prior(self) -> CatalogPrior:
        """The fit's catalog-side matrices, cached per catalog version."""
        with self.env.read() as txn:
            seq = self.store.catalog_seq(txn)
            if self._prior is None or self._prior[0] != seq:
                moments = self.store.get_moments(txn, self.catalog.keeper.dimension)
                self._prior = (seq, CatalogPrior(moments, self.config.learner))
        return self._prior[1]

    def _prior_seq(self) -> int:
        """The catalog version of the cached prior (after refreshing it)."""
        self.prior()
        assert self._prior is not None
        return self._prior[0]

    def _item_vectors(self, txn: Any, item_ids: Iterable[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        dim = self.catalog.keeper.dimension
        for item_id in item_ids:
            vector = self.store.vector_of(txn, item_id, dim)
            if vector is not None:
                out[item_id] = vector
        return out

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
                events.append(raw if isinstance(raw, Event) else Event.model_validate(raw))
            except ValidationError as exc:
                why = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc']) or 'event'}: "
                    f"{str(e['msg']).removeprefix('Value error, ')}"
                    for e in exc.errors()
                )
                problems.append(f"#{pos}: {why}")
        if problems:
            raise InvalidInputError(
                f"{len(problems)} invalid event(s), nothing stored: " + " | ".join(problems[:5]),
                problems=problems,
            )
        return events

    def _to_stored(
        self, events: Sequence[Event | Mapping[str, Any]]
    ) -> tuple[list[StoredEvent], list[str]]:
        """Validate events; return those to store and the unknown item ids left out."""
        parsed = self._events_from(events)
        now = self.clock()
        item_ids = {e.item_id for e in parsed if e.item_id is not None}
        with self.env.read() as txn:
            known = {i for i in item_ids if self.store.has_item(txn, i)}
        stored = [
            StoredEvent(
                KindCode[e.kind],
                e.item_id if e.item_id is not None else (e.query or "").strip(),
                e.value,
                e.weight,
                _ts(e, now),
            )
            for e in parsed
            if e.item_id is None or e.item_id in known
        ]
        return stored, sorted(item_ids - known)

    def _compact(self, record: UserRecord) -> None:
        """Apply the caps: newest ``max_events`` events, at most ``max_record_bytes``.

        The items of dropped events stay excluded as seen (``record.earlier``). The
        byte check bounds what the write will add: a ledger naming every item of the
        events, and a model of the largest size (head + interests)."""
        cfg = self.config
        record.events.sort(key=lambda e: e.ts)
        dropped: list[StoredEvent] = []
        if len(record.events) > cfg.max_events:
            dropped = record.events[: len(record.events) - cfg.max_events]
            del record.events[: len(dropped)]
        if dropped:
            record.remember_dropped(dropped, cfg.max_earlier_items)
        record.trim_earlier(cfg.max_earlier_items)
        while self._size_bound(record) > cfg.max_record_bytes:
            if record.events:
                dropped = record.events[: max(1, len(record.events) // 16)]
                del record.events[: len(dropped)]
                record.remember_dropped(dropped, cfg.max_earlier_items)
            elif record.earlier:
                record.trim_earlier(len(record.earlier) // 2)
            else:
                break

    def _size_bound(self, record: UserRecord) -> int:
        items = sorted(record.item_ids())
        probe = UserRecord(
            record.consent_shared,
            record.created_at,
            record.version + 1,
            record.events,
            None,
            {"pop": items},
            record.earlier,
        )
        model_bound = 2 * self.catalog.keeper.dimension + 64 + 4 * len(record.events)
        return len(probe.to_bytes()) + model_bound + OVERHEAD

    def _refit(self, record: UserRecord) -> tuple[dict[str, np.ndarray], list[str]]:
        """Fit the model from the record's events; return the item vectors used and
        the items with net-positive feedback.

        Events on items no longer in the catalog leave the record here: a deleted
        item leaves the user's model, its events and its shared contribution."""
        refs = {e.ref for e in record.events if not e.is_search}
        queries = sorted({e.ref for e in record.events if e.is_search})
        with self.env.read() as txn:
            vectors = self._item_vectors(txn, refs)
        if len(vectors) < len(refs):
            record.events = [e for e in record.events if e.is_search or e.ref in vectors]
        query_vectors: dict[str, np.ndarray] = {}
        if queries:
            encoded = self.catalog.encoder.encode(queries)
            query_vectors = dict(zip(queries, encoded, strict=True))
        record.model, positives = fit(
            record.events, vectors, query_vectors, self.prior(), self.config.learner
        )
        return vectors, positives

    def _write(
        self,
        user_id: str,
        change: Callable[[UserRecord | None], UserRecord | None],
        *,
        create: bool = True,
    ) -> tuple[UserRecord | None, UserRecord | None, int]:
        """Apply ``change`` to the user's record atomically; return (old, new, shared units).

        The write commits only if the stored record is still byte for byte the one the
        change was computed from (so nothing is decoded twice), and only if no
        tombstone stands for the user (``UserErasedError``)."""
        key = self.key(user_id)
        created_key = False
        try:
            for _attempt in range(50):
                with self.env.read() as txn:
                    found = txn.get(key, db=self.db)
                    old_raw = None if found is None else bytes(found)
                try:
                    old, data_key = self._decode(key, old_raw)
                except RecordUnreadable:
                    # an erasure is destroying this user right now (or a crash left an
                    # orphan that the next open purges): wait for it to settle
                    threading.Event().wait(0.002)
                    continue
                if old is not None and self._fenced(key, old.generation):
                    raise UserErasedError(user_id)
                if old is None and not create:
                    return None, None, 0
                new = change(_copy(old))
                if new is None:
                    raise ValueError("a write must produce a record (erase has its own path)")
                data_key, made = self._data_key(key, data_key)
                created_key |= made
                self._compact(new)
                _vectors, positives = self._refit(new)
                plan = _Plan(user_id, key, old_raw, old, new, data_key, positives)
                with self.env.write() as txn:
                    units = self._commit(txn, plan)
                if units is None:
                    continue  # another writer got there first: recompute
                created_key = False  # the key now has its record
                return old, new, units
        finally:
            if created_key:  # the record this key was made for was never written
                self.keystore.destroy(key)
        raise StoreFormatError(
            f"the record of user {key.hex()} stays unreadable: its data key is gone "
            "(reopen the store to purge it)"
        )

    def _commit(self, txn: Any, plan: _Plan) -> int | None:
        """Store a planned record inside ``txn``; return the shared units moved, or None
        if the stored record changed since the plan was made. Raises
        ``UserErasedError`` (before writing anything) if a tombstone stands."""
        found = txn.get(plan.key, db=self.db)
        if (None if found is None else bytes(found)) != plan.old_raw:
            return None
        if self.erasures.tombstone(txn, plan.key, self.clock()) is not None:
            raise UserErasedError(plan.user_id)
        old, new = plan.old, plan.new
        fenced = self.fence.state(plan.key)  # after the tombstone: an erasure writes it first
        if fenced is not None:
            if fenced.erased:
                raise UserErasedError(plan.user_id)
            if new.generation < fenced.generation:
                if old is not None:  # a stale record (the next open purges it)
                    raise UserErasedError(plan.user_id)
                new.generation = fenced.generation  # a new record of the current generation
        new.ledger = self.shared.ledger_for(new.consent_shared, plan.positives)
        units = self.shared.apply(txn, old.ledger if old else {}, new.ledger)
        new.version = (old.version if old else 0) + 1
        txn.put(plan.key, self._encode(plan.key, new, plan.data_key), db=self.db)
        return units

    def _new_record(self) -> UserRecord:
        return UserRecord(consent_shared=self.config.default_consent, created_at=int(self.clock()))

    # -- feedback -------------------------------------------------------------------------

    def interact(self, user_id: str, events: Sequence[Event | Mapping[str, Any]]) -> InteractReport:
        """Record feedback; events on unknown items are reported back, not stored."""
        check_user_id(user_id)
        stored, unknown = self._to_stored(events)
        if not stored:
            record = self.record(user_id)
            return InteractReport(0, unknown, record.version if record else 0)

        def add(record: UserRecord | None) -> UserRecord:
            record = record or self._new_record()
            record.events.extend(stored)
            return record

        _old, new, _units = self._write(user_id, add)
        assert new is not None
        return InteractReport(len(stored), unknown, new.version)

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
        parsed = {check_user_id(uid): self._to_stored(events) for uid, events in batches.items()}
        reports: dict[str, InteractReport] = {}
        erased: list[str] = []
        pending = {uid for uid, (stored, _unknown) in parsed.items() if stored}
        keys = {uid: self.key(uid) for uid in pending}
        created: set[bytes] = set()
        try:
            for _attempt in range(50):
                if not pending:
                    break
                plans = self._plan_bulk(pending, keys, parsed, created)
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
                            created.discard(plan.key)
                            stored, unknown = parsed[plan.user_id]
                            reports[plan.user_id] = InteractReport(
                                len(stored), unknown, plan.new.version
                            )
        finally:
            if created:  # keys made for records that were never written
                self.keystore.destroy_many(sorted(created))
        if pending:  # pragma: no cover - 50 lost races in a row
            raise StoreFormatError("bulk write kept racing with concurrent writers")
        for uid, (stored, unknown) in parsed.items():
            if not stored:
                record = self.record(uid)
                reports[uid] = InteractReport(0, unknown, record.version if record else 0)
        return BulkInteractReport(reports, sorted(erased))

    def _plan_bulk(
        self,
        users: set[str],
        keys: Mapping[str, bytes],
        parsed: Mapping[str, tuple[list[StoredEvent], list[str]]],
        created: set[bytes],
    ) -> list[_Plan]:
        """Read, decode and refit every pending user; new users' keys in one commit."""
        with self.env.read() as txn:
            raws = {uid: txn.get(keys[uid], db=self.db) for uid in sorted(users)}
        olds: dict[str, tuple[bytes | None, UserRecord | None, bytes | None]] = {}
        for uid, found in raws.items():
            raw = None if found is None else bytes(found)
            try:
                old, data_key = self._decode(keys[uid], raw)
            except RecordUnreadable:
                continue  # being erased right now: the next round sees the outcome
            olds[uid] = (raw, old, data_key)
        missing = [keys[u] for u, (_r, _o, dk) in olds.items() if dk is None]
        made: dict[bytes, bytes] = {}
        if missing and self.config.encrypt_user_records:
            for key, (data_key, was_made) in self.keystore.get_or_create_many(
                missing, int(self.clock())
            ).items():
                made[key] = data_key
                if was_made:
                    created.add(key)
        plans = []
        for uid, (raw, old, data_key) in olds.items():
            new = _copy(old) or self._new_record()
            new.events.extend(parsed[uid][0])
            self._compact(new)
            _vectors, positives = self._refit(new)
            plans.append(
                _Plan(uid, keys[uid], raw, old, new, data_key or made.get(keys[uid]), positives)
            )
        return plans

    def set_consent(self, user_id: str, shared: bool) -> int:
        """Give or withdraw consent to shared statistics; withdrawing subtracts at once."""

        def change(record: UserRecord | None) -> UserRecord:
            record = record or self._new_record()
            record.consent_shared = bool(shared)
            return record

        _old, new, _units = self._write(user_id, change)
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

        hashes = None if ids is None else {item_hash(i) for i in ids}

        def earlier_matches(h: int, ts: int) -> bool:
            if hashes is not None and h not in hashes:
                return False
            if hi is not None and not ts < hi:
                return False
            return not (lo is not None and not ts > lo)

        def drop(record: UserRecord | None) -> UserRecord | None:
            nonlocal removed
            assert record is not None
            kept = [e for e in record.events if not matches(e)]
            removed = len(record.events) - len(kept)
            record.events = kept
            record.earlier = {
                h: ts for h, ts in record.earlier.items() if not earlier_matches(h, ts)
            }
            return record

        _old, new, units = self._write(user_id, drop, create=False)
        return ForgetReport(removed, units, new.version if new else 0)

    def erase(self, user_id: str) -> ErasureReceipt:
        """Erase the user: record the erasure in the fence (durably, first); then in one
        data transaction delete the record, subtract the shared contributions and
        leave a tombstone; then destroy the data key.

        Crash safety: the fence entry is written before anything is deleted, and every
        open re-applies the fence (``reconcile``): if only the fence entry was
        written, the next open deletes the record and the key; if the data
        transaction committed too, it destroys the key; if only the key was destroyed,
        the record is unreadable (the user no longer exists) and the next open purges
        it and recounts the shared statistics from the ledgers. From the fence entry
        on, no process reads or writes the user (``_fenced``).
        """
        key = self.key(user_id)
        now = int(self.clock())
        self._fence_erasure(key, now)
        for _attempt in range(50):
            with self.env.read() as txn:
                found = txn.get(key, db=self.db)
                old_raw = None if found is None else bytes(found)
            try:
                old = (
                    None
                    if old_raw is None
                    else RecordSummary.from_bytes(self._plaintext(key, old_raw)[0])
                )
                orphan = False
            except RecordUnreadable:
                old, orphan = None, True
            with self.env.write() as txn:
                found = txn.get(key, db=self.db)
                if (None if found is None else bytes(found)) != old_raw:
                    continue
                units = self.shared.apply(txn, old.ledger if old else {}, {})
                if old_raw is not None:
                    txn.delete(key, db=self.db)
                if orphan:  # its ledger is unreadable: recount from the others'
                    units += self.recount_shared(txn)
                self.erasures.mark(txn, key, now)
                seq = self.store.catalog_seq(txn)
            # what this process keeps of the shared statistic before this erasure goes
            # (other processes replace theirs on their next call: the statistic changed)
            self._pop_direction = None
            self.catalog.keeper.forget_shared()
            # then the data key; a refused concurrent writer may have destroyed it
            # first: what the receipt states is that no data key of the user remains
            destroyed = self.keystore.destroy(key) or (
                (old is not None or orphan) and self.keystore.wrapped(key) is None
            )
            break
        else:  # pragma: no cover - 50 lost races in a row
            raise StoreFormatError("erasure kept racing with concurrent writers")
        return ErasureReceipt(
            user_key=key.hex(),
            erased_at=_iso(now),
            existed=old is not None or orphan,
            events_removed=old.events if old else 0,
            shared_units_subtracted=units,
            data_key_destroyed=destroyed,
            model_fingerprint=self.model_fingerprint,
            model_fingerprint_unchanged=self.catalog.encoder.fingerprint == self.model_fingerprint,
            catalog_seq=seq,
            lmdb_txn_id=int(self.env.last_txn_id()),
            keystore_txn_id=int(self.keystore.last_txn_id()),
        )

    def _fence_erasure(self, key: bytes, now: int) -> None:
        """Append the erasure to the fence, naming the generation it ends (the stored
        record's, else the fence's current one); nothing if the fence already has it."""
        state = self.fence.state(key)
        if state is not None and state.erased:
            with self.env.read() as txn:
                if txn.get(key, db=self.db) is None:
                    return  # erased before and nothing came back: already fenced
        generation = state.generation if state is not None else 0
        with self.env.read() as txn:
            found = txn.get(key, db=self.db)
            raw = None if found is None else bytes(found)
        if raw is not None:
            try:
                summary = RecordSummary.from_bytes(self._plaintext(key, raw)[0])
                generation = max(generation, summary.generation)
            except RecordUnreadable:
                pass  # its key is gone already: the generation above stands
        self.fence.erased(key, now, generation)

    def fence_expire(self, now: float) -> int:
        """Drop fence entries past ``erasure_fence_retention_days`` (kept by default)."""
        days = self.config.erasure_fence_retention_days
        return self.fence.expire(int(now), None if days is None else days * 86_400)

    def recount_shared(self, txn: Any) -> int:
        """Rebuild the shared statistics from the ledgers of the readable records
        (after orphans were purged); return the units that changed."""
        ledgers = []
        for key, raw in txn.cursor(db=self.db):
            try:
                record = self._decode(bytes(key), bytes(raw))[0]
            except RecordUnreadable:
                continue
            if record is not None:
                ledgers.append(record.ledger)
        return self.shared.rebuild(txn, ledgers)

    def recreate(self, user_id: str, consent_shared: bool | None = None) -> int:
        """Explicitly bring back an erased user (new consent): starts the user's next
        generation in the fence (first, durably), lifts the tombstone and starts an
        empty record of that generation. Anything stamped with an older generation
        (an export, a device copy, a restored record) is refused from then on.
        Returns the record version."""
        key = self.key(user_id)
        state = self.fence.state(key)
        if state is not None and state.erased:
            self.fence.recreated(key, int(self.clock()), state.generation + 1)
        with self.env.write() as txn:
            self.erasures.lift(txn, key)
        consent = self.config.default_consent if consent_shared is None else consent_shared

        def start(record: UserRecord | None) -> UserRecord:
            record = record or self._new_record()
            record.consent_shared = bool(consent)
            return record

        _old, new, _units = self._write(user_id, start)
        assert new is not None
        return new.version

    # -- export / import -----------------------------------------------------------------

    def export(self, user_id: str) -> dict[str, Any]:
        """The user's complete record as readable JSON-ready data."""
        record = self.record(user_id)
        if record is None:
            return {"format": 1, "user_id": user_id, "exists": False}
        return export_record(user_id, record)

    def import_user(self, data: Mapping[str, Any]) -> int:
        """Restore a user from ``export`` output (replaces any current record)."""
        if not isinstance(data, Mapping) or data.get("format") != 1:
            raise InvalidInputError("not an ownrank user export (format 1)")
        user_id = check_user_id(data.get("user_id"))
        if not data.get("exists", True):
            self.erase(user_id)
            return 0
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
        if len(events) > self.config.max_events:
            raise BatchTooLargeError(f"more than {self.config.max_events} events")
        if len(earlier) > self.config.max_earlier_items:
            raise BatchTooLargeError(f"more than {self.config.max_earlier_items} earlier items")

        state = self.fence.state(self.key(user_id))
        if state is not None and state.erased:
            raise UserErasedError(user_id)
        if state is not None and generation < state.generation:
            # an export of a generation that was erased before the user was re-created
            raise StaleGenerationError(user_id, generation, state.generation)

        def replace(_record: UserRecord | None) -> UserRecord:
            return UserRecord(consent, created, 0, events, earlier=earlier, generation=generation)

        _old, new, _units = self._write(user_id, replace)
        assert new is not None
        # keep the exported version number so a round trip is identical
        key = self.key(user_id)
        with self.env.write() as txn:
            current = self._get(txn, key)
            if current is not None and current.version == new.version:
                current.version = version
                txn.put(key, self._encode(key, current, self.keystore.get(key)), db=self.db)
        return version

    # -- ranking --------------------------------------------------------------------------

    def _popularity_direction(self, txn: Any) -> np.ndarray | None:
        """Ridge regression of log(1 + count) on content over the catalog (unrated
        items count 0): predicts the popularity of items nobody has seen yet.

        Its Gram matrix is the catalog's (no user data); only the right-hand
        side, ``popvec``, is a shared statistic. Returns slope and intercept.
        """
        if not self.shared.enabled:
            return None
        popvec = self.shared.popvec(txn)
        if not popvec.any():
            return None
        prior = self.prior()
        memo, stamp = self._pop_direction, popvec.tobytes()
        if memo is not None and memo[0] is prior and memo[1] == stamp:
            return memo[2]  # the same statistic as the last call: never a stale one
        if self._pop_solver is None or self._pop_solver[0] is not prior:
            moments = prior.moments
            dim = self.shared.qdim
            gram = np.empty((dim, dim))
            gram[:-1, :-1] = moments.gram
            gram[:-1, -1] = gram[-1, :-1] = moments.total
            gram[-1, -1] = moments.count
            with single_threaded():
                inverse = np.linalg.inv(gram + self.config.ranking.popularity_l2 * np.eye(dim))
            self._pop_solver = (prior, inverse)
        direction = np.asarray(
            self._pop_solver[1] @ (popvec.astype(np.float64) / (F_SCALE * Q_SCALE))
        )
        self._pop_direction = (prior, stamp, direction)
        return direction

    def _popularity(self, txn: Any, item_ids: Sequence[str], vectors: np.ndarray) -> np.ndarray:
        """Popularity on a [0, 1] scale: log(1 + count) / log(1 + contributing users).

        Items nobody has rated yet get their count predicted from content. The
        result is shrunk by users / (users + popularity_min_users): counts from a
        handful of users are noise, not a prior.
        """
        n_users = self.shared.users(txn) if self.shared.enabled else 0
        if n_users == 0 or not item_ids:
            return np.zeros(len(item_ids))
        counts = self.shared.counts(txn, item_ids).astype(np.float64)
        values = np.log1p(counts)
        unseen = counts == 0
        if unseen.any():
            direction = self._popularity_direction(txn)
            if direction is not None:
                predicted = vectors[unseen] @ direction[:-1] + direction[-1]
                values[unseen] = np.maximum(predicted, 0.0)
        shrink = n_users / (n_users + self.config.ranking.popularity_min_users)
        return np.asarray(np.clip(values / math.log1p(n_users), 0.0, 1.0) * shrink)

    def _recency(self, items: Sequence[Any]) -> np.ndarray:
        cfg = self.config.ranking
        if cfg.recency_weight == 0.0:
            return np.zeros(len(items))
        now = self.clock()
        out = np.zeros(len(items))
        for k, item in enumerate(items):
            if item is not None and item.published_at is not None:
                age_days = max(0.0, now - item.published_at.timestamp()) / 86_400.0
                out[k] = 0.5 ** (age_days / cfg.recency_half_life_days)
        return out

    def warm_up(self) -> None:
        """Compute what every ranking call shares (the catalog prior, the popularity
        direction, the candidate pools' caches) with a cold-start ranking that reads
        nothing of any user and writes nothing."""
        self.catalog.keeper.warm_up()
        self.prior()
        with self.env.read() as txn:
            self._popularity_direction(txn)
        if self.catalog.keeper.index.ntotal:
            self._rank(None, {}, 10, None, True, 0.0)

    def recommend(
        self,
        user_id: str,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Items for this user: candidates around the head, interests and popular items,
        re-ranked by the personal model and priors. Unknown users get the cold-start list."""
        check_n(n)
        record = self.record(user_id)
        vectors = self._user_vectors(record)
        if record is not None and len(vectors) < len(record.item_ids()):
            # catalog items the user had events on are gone: replay (the rewrite drops
            # those events, so this happens once)
            _old, record, _u = self._write(user_id, lambda r: r, create=False)
            vectors = self._user_vectors(record)
        return self._rank(record, vectors, n, filters, exclude_seen, diversity)

    def recommend_from_history(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Stateless: the same model built in memory from ``events``; nothing is stored."""
        check_n(n)
        record = self._new_record()
        record.events, _unknown = self._to_stored(events)
        self._compact(record)
        vectors, _positives = self._refit(record)
        return self._rank(record, vectors, n, filters, exclude_seen, diversity)

    def _user_vectors(self, record: UserRecord | None) -> dict[str, np.ndarray]:
        """The vectors of the catalog items in the user's events (deleted ones: absent),
        from the in-memory index once it caught up with LMDB."""
        if record is None:
            return {}
        found = self.catalog.keeper.item_vectors(record.item_ids())
        if found is not None:
            return found
        with self.env.read() as txn:
            return self._item_vectors(txn, record.item_ids())

    def _rank(
        self,
        record: UserRecord | None,
        user_vectors: Mapping[str, np.ndarray],
        n: int,
        filters: Mapping[str, Any] | None,
        exclude_seen: bool,
        diversity: float,
    ) -> list[Recommendation]:
        if not 0.0 <= diversity <= 1.0:
            raise InvalidInputError("diversity must be between 0 and 1")
        expr = self.catalog.parse_filters(filters)
        cfg = self.config.ranking
        model = record.model if record else None
        seen = record.seen() if (record and exclude_seen) else SeenItems.nothing()
        interests = self._interest_vectors(record, model, user_vectors) if record and model else []
        pool = self._small_pool(expr)
        if pool is not None:  # few enough to score every one
            why = ["catalog"] * len(pool.ids)
        else:
            rows = self._retrieve(model, interests, expr, seen, n)
            pool = self._pool_of(list(rows))
            why = [rows[int(r)] for r in pool.rows]
        eligible = pool.unseen(seen)
        if eligible.size == 0:
            return []
        # features over the whole pool (matrix products), then the eligible entries
        ids = [pool.ids[int(i)] for i in eligible]
        vectors = pool.vectors[eligible]
        with self.env.read() as txn:
            popularity = self._popularity(txn, ids, vectors)
            has_popularity = bool(popularity.any())
            cold_and_bare = model is None and not has_popularity
            dated = cfg.recency_weight > 0.0 or cold_and_bare
            items = [self._item_or_none(txn, i) for i in ids] if dated else []
            taste = np.zeros(len(ids))
            neighbours = Neighbours.none(len(ids))
            if model is not None and record is not None:
                taste = (vectors @ model.weights - model.offset) / model.scale
                if cfg.neighbour_weight > 0.0:
                    neighbours = self._neighbours(record, user_vectors, pool.units, eligible)
            recency = self._recency(items) if dated else np.zeros(len(ids))
            parts = {
                "personal": cfg.personal_weight * taste,
                "neighbours": cfg.neighbour_weight * neighbours.scores,
                "popularity": cfg.popularity_weight * popularity,
                "recency": cfg.recency_weight * recency,
            }
            if cold_and_bare:  # cold start with no priors: recent first, and diverse
                parts["recency"] = recency if recency.any() else self._recency_rank(items)
                diversity = max(diversity, COLD_START_DIVERSITY)
            scores = sum(parts.values(), start=np.zeros(len(ids)))
            order, chosen = self._select_live(txn, ids, scores, vectors, n, diversity, items)
            return [
                Recommendation(
                    ids[k],
                    float(scores[k]),
                    chosen[k],
                    self._explain(
                        k, vectors[k], parts, why[int(eligible[k])], interests, neighbours
                    ),
                )
                for k in order
            ]

    def _select_live(
        self,
        txn: Any,
        ids: Sequence[str],
        scores: np.ndarray,
        vectors: np.ndarray,
        n: int,
        diversity: float,
        items: Sequence[Any | None],
    ) -> tuple[list[int], dict[int, Any]]:
        """The top ``n`` among candidates whose item still exists in ``txn``'s snapshot,
        with those items.

        Candidates come from the in-memory index, which may lag a catalog delete
        committed by another thread or process: such an item simply drops out (and the
        next one takes its place), so no result names an item deleted before the
        snapshot was taken."""
        known: dict[int, Any | None] = dict(enumerate(items)) if items else {}
        gone = np.array([k for k, item in known.items() if item is None], np.int64)
        while True:
            if gone.size:
                live = np.setdiff1d(np.arange(len(ids)), gone)
                order = [int(live[j]) for j in _select(scores[live], vectors[live], n, diversity)]
            else:
                order = _select(scores, vectors, n, diversity)
            for k in order:
                if k not in known:
                    stored = self.store.get_item(txn, ids[k])
                    known[k] = None if stored is None else stored.item
            missing = [k for k in order if known[k] is None]
            if not missing:
                return order, {k: known[k] for k in order}
            gone = np.union1d(gone, np.asarray(missing, np.int64))

    def _small_pool(self, expr: Any) -> CandidatePool | None:
        """Every item the filter admits, when few enough to rank exhaustively.

        Cached per (catalog mean, set of rows): a row's item and vector never
        change (re-embedding an item gives it a new row), so a cached pool is
        exact for as long as the same rows are admitted.
        """
        keeper = self.catalog.keeper
        rows = keeper.small_pool(expr, self.config.ranking.full_rank_limit)
        if rows is None:
            return None
        key = (self._prior_seq(), rows.tobytes())
        cached = self._pools.get(key)
        if cached is None:
            cached = self._pool_of([int(r) for r in rows])
            with self._pools_lock:  # SDK users may rank from several threads
                if len(self._pools) >= 8:
                    self._pools.pop(next(iter(self._pools)))
                self._pools[key] = cached
        return cached

    def _pool_of(self, rows: Sequence[int]) -> CandidatePool:
        """Ids, vectors and centred unit vectors of these rows (rows deleted since: dropped).

        Ids and vectors come from the in-memory index where it holds the row (as of
        its last catch-up), else from LMDB."""
        dim = self.catalog.keeper.dimension
        known, known_ids, indexed = self.catalog.keeper.indexed_items(rows)
        mean = self.prior().mean32
        if known.all():  # the usual case: every row is in the index
            units = _centred_units(indexed, mean)
            return CandidatePool(np.asarray(rows, np.int64), known_ids, indexed, units)
        next_known = iter(known_ids)
        kept: list[int] = []
        ids: list[str] = []
        from_lmdb: dict[int, np.ndarray] = {}  # position in the pool -> vector
        with self.env.read() as txn:
            for pos, row in enumerate(rows):
                if known[pos]:
                    item_id: str | None = next(next_known)
                else:
                    hit = self.store.get_vector(txn, row, dim)
                    item_id = None if hit is None else hit[0]
                    if hit is not None:
                        from_lmdb[len(kept)] = hit[1]
                if item_id is not None:
                    kept.append(pos)
                    ids.append(item_id)
        matrix = np.empty((len(kept), dim), np.float32)
        matrix[known[kept]] = indexed
        for k, vector in from_lmdb.items():
            matrix[k] = vector
        units = _centred_units(matrix, mean)
        return CandidatePool(np.asarray(rows, np.int64)[kept], ids, matrix, units)

    def _retrieve(
        self,
        model: PersonalModel | None,
        interests: list[Interest],
        expr: Any,
        seen: SeenItems,
        n: int,
    ) -> dict[int, str]:
        """Candidate rows (and what retrieved each) from a catalog too big to score whole:
        around the head, each interest and the popular direction, plus the top popular."""
        cfg = self.config.ranking
        keeper = self.catalog.keeper
        want = max(cfg.candidates, 3 * n)
        rows: dict[int, str] = {}
        queries: list[tuple[np.ndarray, str, int]] = []
        if model is not None:
            w = model.weights
            queries.append((w / (np.linalg.norm(w) + 1e-12), "personal", want))
            for interest in interests[: cfg.interest_queries]:
                queries.append((interest.vector, "interest", want // 2))

        def with_seen(k: int) -> int:
            # seen items are dropped after retrieval: over-fetch a little for them rather
            # than exclude every seen row inside the index (a wider, slower search)
            return k + min(len(seen), k // 2)

        if queries:
            sizes = [with_seen(k) for _vec, _why, k in queries]
            found = keeper.search_many(np.stack([vec for vec, _why, _k in queries]), sizes, expr)
            for (_vec, why, _k), hits in zip(queries, found, strict=True):
                for row, _score in hits:
                    rows.setdefault(row, why)
        with self.env.read() as txn:
            direction = self._popularity_direction(txn)
            top = self.shared.top(txn, want, keep=lambda i: i not in seen)
        if direction is not None:  # items predicted popular (the top list below has the rest)
            slope = direction[:-1]  # without the intercept
            popular = slope / (np.linalg.norm(slope) + 1e-12)
            # the same query for every user: its answer is kept while nothing changed
            for row, _score in keeper.search_shared(popular, with_seen(want // 2), expr):
                rows.setdefault(row, "popular")
        allowed = keeper.allowed_rows(expr)  # sorted
        for found_row in keeper.live_rows(top):
            if found_row is not None and (allowed is None or _contains(allowed, found_row)):
                rows.setdefault(found_row, "popular")
        if not queries and direction is None and not rows:  # no model, no popularity: recent
            with self.env.read() as txn:
                seen_rows = {r for i in seen.logged if (r := self.store.row_of(txn, i)) is not None}
            for row in keeper.most_recent(want, expr, seen_rows):
                rows.setdefault(row, "recent")
        return rows

    def _neighbours(
        self,
        record: UserRecord,
        vectors: Mapping[str, np.ndarray],
        pool_units: np.ndarray,
        eligible: np.ndarray,
    ) -> Neighbours:
        """How close each candidate is to the items the user rated, standardized.

        Vectors are centred on the catalog mean (so closeness means "alike", not
        "typical"), similarities below zero count as zero and the rest are raised
        to ``neighbour_power`` so a candidate scores by its nearest rated items.
        """
        obs = [
            o
            for o in observations(record.events, self.config.learner)
            if not o.is_query and o.ref in vectors
        ]
        obs = obs[-self.config.ranking.neighbour_items :]  # the newest
        if not obs:
            return Neighbours.none(len(eligible))
        mean = self.prior().mean32
        rated = _centred_units(np.stack([vectors[o.ref] for o in obs]), mean)
        strengths = np.array([o.strength for o in obs], dtype=np.float32)
        with single_threaded():
            sims = np.maximum(rated @ pool_units.T, 0.0)[:, eligible]
            _raise_to(sims, self.config.ranking.neighbour_power)
            weighted = strengths[:, None] * sims
            raw = weighted.sum(axis=0) / float(np.abs(strengths).sum())
        spread = float(raw.std())
        scores = (raw - raw.mean()) / spread if spread > 1e-12 else np.zeros(len(raw))
        because = [obs[int(j)].ref for j in np.argmax(weighted, axis=0)]
        return Neighbours(scores.astype(np.float64), because)

    def _item_or_none(self, txn: Any, item_id: str) -> Any | None:
        """The item as of ``txn``, or None if it was deleted since the index saw it."""
        stored = self.store.get_item(txn, item_id)
        return None if stored is None else stored.item

    def _recency_rank(self, items: Sequence[Any]) -> np.ndarray:
        """Newest first (items without a date last), as a score in [0, 1]."""
        stamps = np.array(
            [it.published_at.timestamp() if it and it.published_at else -np.inf for it in items]
        )
        order = np.argsort(-stamps, kind="stable")
        out = np.zeros(len(items))
        out[order] = np.linspace(1.0, 0.0, num=len(items))
        return out

    def _interest_vectors(
        self, record: UserRecord, model: PersonalModel, vectors: Mapping[str, np.ndarray]
    ) -> list[Interest]:
        """The user's interests, heaviest first, with their members' vectors."""
        members = [
            [record.events[i].ref for i in idx if i < len(record.events)]
            for _w, idx in sorted(model.interests, key=lambda g: -g[0])
        ]
        out = []
        for group in members:
            present = [m for m in group if m in vectors]
            if present:
                matrix = np.stack([vectors[m] for m in present])
                total = matrix.sum(axis=0)
                out.append(Interest(total / (np.linalg.norm(total) + 1e-12), present, matrix))
        return out

    @staticmethod
    def _explain(
        k: int,
        vector: np.ndarray,
        parts: Mapping[str, np.ndarray],
        retrieved_by: str,
        interests: list[Interest],
        neighbours: Neighbours,
    ) -> dict[str, Any]:
        contributions = {name: round(float(v[k]), 4) for name, v in parts.items()}
        reason = max(contributions, key=lambda name: contributions[name])
        out: dict[str, Any] = {"reason": reason, "retrieved_by": retrieved_by, **contributions}
        if reason == "neighbours" and neighbours.because:
            out["because_of"] = neighbours.because[k]
        elif reason == "personal" and interests:
            best = int(np.argmax([float(i.vector @ vector) for i in interests]))
            interest = interests[best]
            out["interest"] = best
            out["because_of"] = interest.members[int(np.argmax(interest.matrix @ vector))]
        return out

    # -- search ---------------------------------------------------------------------------

    def search(
        self,
        query: str,
        user_id: str | None = None,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """Semantic search; with a user, over-fetched candidates re-ranked by the user's model.

        Personalized scores are ``relevance_z + search_personal_weight * taste_z``:
        query relevance and the user's head, each standardized (relevance over the
        candidates, taste over the catalog), so the weight means the same for any
        query.
        """
        check_n(n)
        record = self.record(user_id) if user_id is not None else None
        if record is None or record.model is None:
            return self.catalog.search(query, n, filters)
        expr = self.catalog.parse_filters(filters)
        qvec = self.catalog.embed_query(query)
        k = max(self.config.ranking.search_candidates, 10 * n)
        ranked = self.catalog.keeper.search(qvec, k, expr)
        model = record.model
        dim = self.catalog.keeper.dimension
        with self.env.read() as txn:
            found = [
                (item_id, vec, score)
                for row, score in ranked
                if (hit := self.store.get_vector(txn, row, dim)) is not None
                for item_id, vec in [hit]
            ]
            if not found:
                return []
            vectors = np.stack([vec for _i, vec, _s in found])
            taste = (vectors @ model.weights - model.offset) / model.scale
            relevance = np.array([score for _i, _v, score in found])
            relevance = (relevance - relevance.mean()) / (relevance.std() or 1.0)
            combined = relevance + self.config.ranking.search_personal_weight * taste
            # only the results are decoded into items (a row's vector and its item are
            # deleted in one transaction, so a live row has its item: the check is cheap)
            hits: list[Hit] = []
            for i in np.lexsort((np.arange(len(found)), -combined)):
                item = self._item_or_none(txn, found[i][0])
                if item is not None:
                    hits.append(Hit(found[i][0], float(combined[i]), item))
                    if len(hits) == n:
                        break
            return hits


def _select(scores: np.ndarray, vectors: np.ndarray, n: int, diversity: float) -> list[int]:
    """Top ``n`` by score, or by maximal marginal relevance when ``diversity`` > 0."""
    order = np.lexsort((np.arange(len(scores)), -scores))
    if diversity <= 0.0:
        return [int(i) for i in order[:n]]
    spread = float(scores.std()) or 1.0
    relevance = (scores - scores.mean()) / spread
    chosen: list[int] = []
    best_sim = np.full(len(scores), -1.0)
    pool = list(order[: max(n * 10, 50)])
    while pool and len(chosen) < n:
        values = [(1 - diversity) * relevance[i] - diversity * 3.0 * best_sim[i] for i in pool]
        pick = pool.pop(int(np.argmax(values)))
        chosen.append(int(pick))
        best_sim = np.maximum(best_sim, vectors @ vectors[pick])
    return chosen


def _contains(sorted_rows: np.ndarray, row: int) -> bool:
    at = int(np.searchsorted(sorted_rows, row))
    return at < len(sorted_rows) and int(sorted_rows[at]) == row


def _raise_to(values: np.ndarray, power: float) -> None:
    """values **= power in place; whole powers by repeated products (pow() is slow)."""
    if power == int(power) and 1 <= power <= 8:
        base = values.copy()
        for _ in range(int(power) - 1):
            values *= base
    else:
        values **= power


def _centred_units(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    centred = np.asarray(vectors, dtype=np.float32) - mean
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.asarray(centred / np.maximum(norms, 1e-12))


def _copy(record: UserRecord | None) -> UserRecord | None:
    if record is None:
        return None
    return UserRecord(
        record.consent_shared,
        record.created_at,
        record.version,
        list(record.events),
        record.model,
        {k: list(v) for k, v in record.ledger.items()},
        dict(record.earlier),
        record.generation,
    )


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
        out["timestamp"] = _iso(e.ts)
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
        "format": 1,
        "user_id": user_id,
        "exists": True,
        "version": record.version,
        "generation": record.generation,
        "created_at": _iso(record.created_at),
        "consent": {"shared_statistics": record.consent_shared},
        "events": events,
        "model": model,
        "ledger": record.ledger,
        "earlier_items": [
            {"item_hash": f"{h:08x}", "last_timestamp": _iso(ts)}
            for h, ts in record.earlier.items()
        ],
    }


def _earlier_from_export(raw: Any) -> dict[int, int]:
    if not isinstance(raw, list):
        raise ValueError("earlier_items is a list")
    out: dict[int, int] = {}
    for entry in raw:
        if not isinstance(entry, Mapping):
            raise ValueError("an earlier item is an object")
        h = int(str(entry["item_hash"]), 16)
        ts = unix_seconds(parse_time(entry["last_timestamp"]))
        if not 0 <= h < 2**32:
            raise ValueError("earlier item out of range")
        out[h] = ts
    return out


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
