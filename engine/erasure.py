"""Erasure and explicit re-creation: the erasure fence first, then the data, then the key.

An erasure appends to the fence (durably), deletes the record, subtracts the user's
shared contributions and leaves a tombstone in one data transaction, then destroys
the user's data key; a crash after any step heals on the next open (``reconcile``).
Re-creation starts the user's next generation in the fence, so copies of an erased
generation stay refused (``storage/erasure_fence.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import StoreFormatError
from ..storage.erasure_fence import ErasureFence
from .catalog import Catalog
from .config import EngineConfig
from .erasure_log import ErasureLog
from .key_retirement import retire_keys
from .record_cipher import RecordUnreadable
from .record_store import RecordStore
from .shared_stats import SharedStatistics
from .times import iso_seconds
from .user_record import RecordSummary, UserRecord
from .user_reports import ErasureReceipt
from .write_path import WritePath


class Erasure:
    """Erase and re-create users; ``on_erased`` callbacks drop what this process keeps
    derived from the shared statistics as they were before an erasure."""

    def __init__(
        self,
        catalog: Catalog,
        shared: SharedStatistics,
        config: EngineConfig,
        clock: Callable[[], float],
        records: RecordStore,
        erasures: ErasureLog,
        writes: WritePath,
        model_fingerprint: str,
    ) -> None:
        self.catalog = catalog
        self.env = catalog.env
        self.shared = shared
        self.config = config
        self.clock = clock
        self.records = records
        self.fence: ErasureFence = records.fence
        self.keystore = records.keystore
        self.erasures = erasures
        self.writes = writes
        self.model_fingerprint = model_fingerprint
        self.on_erased: list[Callable[[], None]] = []

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
        on, no process reads or writes the user (``RecordStore.fenced``).
        """
        key = self.records.key(user_id)
        now = int(self.clock())
        old_raw, old, orphan = self._read(key)
        self._fence_erasure(key, now, old_raw is None, old)
        for attempt in range(50):
            if attempt:  # a concurrent writer moved the record: read it again
                old_raw, old, orphan = self._read(key)
            with self.env.write() as txn:
                if self.records.raw(txn, key) != old_raw:
                    continue
                units = self.shared.apply(txn, old.ledger if old else {}, {})
                if old_raw is not None:
                    self.records.delete(txn, key)
                if orphan:  # its ledger is unreadable: recount from the others'
                    units += self.writes.recount_shared(txn)
                self.erasures.mark(txn, key, now)
                seq = self.catalog.store.catalog_seq(txn)
            # what this process keeps of the shared statistic before this erasure goes
            # (other processes replace theirs on their next call: the statistic changed)
            for forget in self.on_erased:
                forget()
            # then the data key, the one standing now (a re-creation since may have
            # sealed its record with it: that record is sealed again under a fresh
            # key); a refused concurrent writer may have destroyed it first: what the
            # receipt states is that no data key of the erased user remains
            standing = self.keystore.get(key)
            retired = retire_keys(self.records, {key: standing}, self.clock) if standing else []
            destroyed = bool(retired) or (
                (old is not None or orphan) and self.keystore.wrapped(key) is None
            )
            break
        else:  # pragma: no cover - 50 lost races in a row
            raise StoreFormatError("erasure kept racing with concurrent writers")
        return ErasureReceipt(
            user_key=key.hex(),
            erased_at=iso_seconds(now),
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

    def _read(self, key: bytes) -> tuple[bytes | None, RecordSummary | None, bool]:
        """(the stored bytes, what erasure needs of the record, whether it is an orphan:
        sealed with a data key that is gone)."""
        with self.env.read() as txn:
            raw = self.records.raw(txn, key)
        if raw is None:
            return None, None, False
        try:
            return raw, RecordSummary.from_bytes(self.records.plaintext(key, raw)[0]), False
        except RecordUnreadable:
            return raw, None, True

    def _fence_erasure(self, key: bytes, now: int, absent: bool, old: RecordSummary | None) -> None:
        """Append the erasure to the fence, naming the generation it ends (the stored
        record's, else the fence's current one); nothing if the fence already has it
        and nothing came back."""
        state = self.fence.state(key)
        if state is not None and state.erased and absent:
            return
        generation = state.generation if state is not None else 0
        if old is not None:
            generation = max(generation, old.generation)
        self.fence.erased(key, now, generation)

    def recreate(self, user_id: str, consent_shared: bool | None = None) -> int:
        """Explicitly bring back an erased user (new consent): starts the user's next
        generation in the fence (first, durably), lifts the tombstone and starts an
        empty record of that generation. Anything stamped with an older generation
        (an export, a device copy, a restored record) is refused from then on.
        Returns the record version."""
        key = self.records.key(user_id)
        state = self.fence.state(key)
        if state is not None and state.erased:
            self.fence.recreated(key, int(self.clock()), state.generation + 1)
        with self.env.write() as txn:
            self.erasures.lift(txn, key)
        consent = self.config.default_consent if consent_shared is None else consent_shared

        def start(record: UserRecord | None) -> UserRecord:
            record = record or self.writes.new_record()
            record.consent_shared = bool(consent)
            return record

        _old, new, _units = self.writes.write(user_id, start)
        assert new is not None
        return new.version

    def fence_expire(self, now: float) -> int:
        """Drop fence entries past ``erasure_fence_retention_days`` (kept by default)."""
        days = self.config.erasure_fence_retention_days
        return self.fence.expire(int(now), None if days is None else days * 86_400)
