"""Bringing the data environment and the keystore back into agreement on open.

The two environments commit separately, and either may be restored from a
backup, so on open (``EngineConfig.reconcile_on_open``) the engine:

1. re-applies journaled erasures to the keystore: a data key created at or
   before a journaled erase time is destroyed (an older keystore backup was
   restored, or a crash hit between the two commits of an erase);
2. purges orphan records, sealed records whose data key is gone or does not
   authenticate (a data backup restored beside a newer keystore, or a crash),
   and recounts the shared statistics from the remaining ledgers, since an
   unreadable ledger cannot be subtracted;
3. purges data keys without a record once older than
   ``keystore_orphan_grace_seconds`` (a write that created the key and then
   failed; the grace leaves writes in flight in other processes alone);
4. seals records written before sealing existed (when sealing is on);
5. drops tombstones and journal entries past their retention.

Every step is idempotent, so several workers opening at once is harmless.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from .record_cipher import RecordUnreadable, is_sealed, seal, unseal

if TYPE_CHECKING:
    from .users import Users


@dataclass(frozen=True)
class ReconcileReport:
    erasures_reapplied: int
    orphan_records_purged: int
    orphan_keys_purged: int
    records_sealed: int
    log_entries_expired: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def reconcile(users: Users, now: float) -> ReconcileReport:
    keystore, env, db = users.keystore, users.env, users.db
    with env.read() as txn:
        journal = dict(users.erasures.journal_entries(txn))
    keys = dict(keystore.entries())
    # keys the journal says an erasure destroyed (one created after it is a re-created user's)
    revived = [k for k, at in journal.items() if k in keys and keys[k].created <= at]
    reapplied = keystore.destroy_many(revived) if revived else 0

    orphans: list[tuple[bytes, bytes]] = []
    plain: list[bytes] = []
    with env.read() as txn:
        record_keys: set[bytes] = set()
        for raw_key, raw_value in txn.cursor(db=db):
            key, raw = bytes(raw_key), bytes(raw_value)
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
                found = txn.get(key, db=db)
                if found is not None and bytes(found) == raw:
                    txn.delete(key, db=db)
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
                found = txn.get(key, db=db)
                if found is not None and not is_sealed(bytes(found)):
                    txn.put(key, seal(data_key, key, bytes(found)), db=db)
                    sealed += 1

    expired = 0
    with env.read() as txn:
        logged = any(users.erasures.counts(txn))
    if logged:
        with env.write() as txn:
            expired = users.erasures.expire(txn, now)
    return ReconcileReport(reapplied, purged, keys_purged, sealed, expired)
