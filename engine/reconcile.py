"""Bringing the data environment and the keystore back into agreement on open.

The two environments commit separately, and either may be restored from a
backup, so on open (``EngineConfig.reconcile_on_open``) the engine:

0. takes into the erasure fence the erasures of a store from before the fence
   (standing tombstones; journal entries of users without a record);
1. re-applies the erasure fence, which no restore rolls back: for a user whose
   latest fence entry is an erasure, the record is deleted, the tombstone put back
   and any data key created at or before the erasure destroyed; for a re-created
   user, a record of an older generation is deleted, the tombstone lifted and a
   data key of the erased generation destroyed (an older data or keystore backup was
   restored, or a crash hit between the fence entry and the rest of an erasure);
2. purges orphan records, sealed records whose data key is gone or does not
   authenticate (a data backup restored beside a newer keystore, or a crash),
   and recounts the shared statistics from the remaining ledgers, since an
   unreadable ledger cannot be subtracted;
3. purges data keys without a record once older than
   ``keystore_orphan_grace_seconds`` (a write that created the key and then
   failed; the grace leaves writes in flight in other processes alone);
4. seals records written before sealing existed (when sealing is on);
5. drops tombstones and journal entries past their retention, and fence entries
   past the fence's retention (none by default).

Every step is idempotent, so several workers opening at once is harmless.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..storage.erasure_fence import FenceEntry, FenceKind
from .record_cipher import RecordUnreadable, is_sealed, seal, unseal
from .user_record import RecordSummary

if TYPE_CHECKING:
    from ..storage.keystore import KeyEntry
    from .users import Users


@dataclass(frozen=True)
class ReconcileReport:
    erasures_reapplied: int  # data keys of erased generations destroyed again
    orphan_records_purged: int
    orphan_keys_purged: int
    records_sealed: int
    log_entries_expired: int
    fenced_records_purged: int = 0  # records of erased generations deleted again
    fence_entries_migrated: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _migrate_to_fence(users: Users) -> int:
    """Erasures a store recorded before it had a fence: a standing tombstone, or a
    journal entry of a user with no record (the tombstone expired). Keys the fence
    knows already are left alone (it may know of a later re-creation)."""
    known = users.fence.states()
    records = users.records
    with users.env.read() as txn:
        found: dict[bytes, int] = {
            bytes(key): users.erasures.time_of(raw)
            for key, raw in txn.cursor(db=users.erasures.tombstones)
            if bytes(key) not in known
        }
        for key, at in users.erasures.journal_entries(txn):
            if key not in known and key not in found and records.raw(txn, key) is None:
                found[key] = at
    users.fence.add(FenceEntry(FenceKind.erased, key, at, 0) for key, at in sorted(found.items()))
    return len(found)


def _apply_fence(
    users: Users, keys: dict[bytes, KeyEntry], now: float
) -> tuple[int, int, list[bytes]]:
    """Re-apply every fence entry to both environments; returns (records deleted,
    keys destroyed, the keys destroyed)."""
    keystore, env, records = users.keystore, users.env, users.records
    states = users.fence.states()
    if not states:
        return 0, 0, []
    doomed: list[tuple[bytes, bytes]] = []  # (key, the raw record seen)
    kill_keys: list[bytes] = []
    mark: list[tuple[bytes, int]] = []  # tombstones to put back (while they would stand)
    lift: list[bytes] = []  # tombstones of re-created users
    with env.read() as txn:
        for key, state in states.items():
            tombstone = txn.get(key, db=users.erasures.tombstones) is not None
            if state.erased and not tombstone and now - state.at < users.erasures.tombstone_seconds:
                mark.append((key, state.at))
            elif not state.erased and tombstone:
                lift.append(key)
            raw = records.raw(txn, key)
            current = None  # the generation of a readable record
            if raw is not None:
                try:
                    plain = unseal(keystore.get(key), key, raw) if is_sealed(raw) else raw
                    current = RecordSummary.from_bytes(plain).generation
                except RecordUnreadable:
                    pass  # an orphan: purged below with the others
            stale = raw is not None and (
                state.erased or (current is not None and current < state.generation)
            )
            if stale:
                doomed.append((key, raw))  # type: ignore[arg-type]
            # a key no later than the last erasure is the erased generation's, unless
            # it seals the current generation's record (re-created in the same second)
            entry = keys.get(key)
            if (
                entry is not None
                and entry.created <= state.last_erased_at
                and (state.erased or stale or current != state.generation)
            ):
                kill_keys.append(key)
    deleted = 0
    if doomed or mark or lift:
        with env.write() as txn:
            for key, raw in doomed:
                if records.raw(txn, key) == raw:
                    records.delete(txn, key)
                    deleted += 1
            for key, at in mark:
                users.erasures.mark(txn, key, at)
            for key in lift:
                users.erasures.lift(txn, key)
            if deleted:
                users.recount_shared(txn)
    destroyed = keystore.destroy_many(kill_keys) if kill_keys else 0
    return deleted, destroyed, kill_keys


def reconcile(users: Users, now: float) -> ReconcileReport:
    keystore, env, records = users.keystore, users.env, users.records
    migrated = _migrate_to_fence(users)
    keys = dict(keystore.entries())
    fenced, reapplied, revived = _apply_fence(users, keys, now)
    for key in revived:
        keys.pop(key, None)

    orphans: list[tuple[bytes, bytes]] = []
    plain: list[bytes] = []
    with env.read() as txn:
        record_keys: set[bytes] = set()
        for key, raw in records.scan(txn):
            record_keys.add(key)
            if not is_sealed(raw):
                plain.append(key)
                continue
            try:
                unseal(keystore.get(key), key, raw)
            except RecordUnreadable:
                orphans.append((key, raw))
    purged = 0
    if orphans:
        with env.write() as txn:
            for key, raw in orphans:
                if records.raw(txn, key) == raw:
                    records.delete(txn, key)
                    purged += 1
            users.recount_shared(txn)

    grace = users.config.keystore_orphan_grace_seconds
    stale = [
        key
        for key, entry in keys.items()
        if key not in record_keys and key not in revived and now - entry.created >= grace
    ]
    keys_purged = keystore.destroy_many(stale) if stale else 0

    sealed = 0
    if plain and users.config.encrypt_user_records:
        for key in plain:
            data_key, _made = keystore.get_or_create(key, int(now))
            with env.write() as txn:
                found = records.raw(txn, key)
                if found is not None and not is_sealed(found):
                    records.put(txn, key, seal(data_key, key, found))
                    sealed += 1

    expired = 0
    with env.read() as txn:
        logged = any(users.erasures.counts(txn))
    if logged:
        with env.write() as txn:
            expired = users.erasures.expire(txn, now)
    expired += users.fence_expire(now)
    return ReconcileReport(reapplied, purged, keys_purged, sealed, expired, fenced, migrated)
