"""Destroying a user's data key without leaving a record unreadable.

A data key is destroyed in two cases: a write that created one for a record it
never wrote (its commit was refused: the user was erased, a stale generation, a
version conflict), and an erasure (crypto-shredding: copies of the erased record,
in backups too, stay unreadable). In both, another writer may have found the key
meanwhile (its own ``Keystore.get_or_create``) and sealed a record with it,
typically the first record of the user re-created in the meantime; destroying the
key left that record unreadable for good (every later write of the user failed
until the store was reopened, and the record was lost; both races reproduced in
``tests/test_key_retirement.py``). So a key is destroyed only while it is still the
one meant (a newer one stays), and a live record sealed with it is sealed again
under the user's current key (a fresh one if none), by whichever side sees it
first: the destroyer reads the record after the destroy (``retire_keys``), the
writer checks its key after its commit (``keep_readable``; a re-seal is such a
commit too); a commit either precedes the destroyer's read or follows the
destroy, so one of them sees it. Meanwhile the record is unreadable for a moment:
writers wait for it (``unreadable_wait``).
Only a generation newer than an erasure can hold such a record: the erasure
deleted its own in the same step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import StoreFormatError
from .record_cipher import RecordUnreadable, is_sealed, seal, unseal
from .record_store import RecordStore

_ROUNDS = 50


def retire_keys(
    records: RecordStore, keys: Mapping[bytes, bytes], clock: Callable[[], float]
) -> list[bytes]:
    """Destroy each data key of ``keys`` (user key -> data key) that is still the user's,
    re-sealing any live record sealed with one; returns the user keys whose key
    this destroyed."""
    retired: list[bytes] = []
    pending = dict(keys)
    for _round in range(_ROUNDS):
        if not pending:
            return retired
        left: dict[bytes, bytes] = {}
        for user_key in records.keystore.destroy_exact(pending):
            retired.append(user_key)
            left.update(_reseal(records, user_key, pending[user_key], clock))
        pending = left
    raise StoreFormatError("destroying data keys kept racing with writers")  # pragma: no cover


def keep_readable(
    records: RecordStore, sealed: Mapping[bytes, bytes], clock: Callable[[], float]
) -> None:
    """After a commit of records sealed with these data keys (user key -> data key):
    any whose key was destroyed meanwhile is sealed again under the current key."""
    if not sealed:
        return
    standing = records.keystore.get_many(sealed)
    gone = {k: dk for k, dk in sealed.items() if standing[k] != dk}
    left: dict[bytes, bytes] = {}
    for user_key, data_key in gone.items():
        left.update(_reseal(records, user_key, data_key, clock))
    if left:
        retire_keys(records, left, clock)


def unreadable_wait(attempt: int) -> float:
    """Seconds a writer waits before reading an unreadable record again (its key being
    retired, or an erasure under way): 2 ms, growing to 50 ms, about 2 s over a
    write's 50 attempts (a re-seal waits for two commits, which under load of other
    processes' commits took over 100 ms).

    >>> [round(unreadable_wait(k), 4) for k in (0, 1, 20)]
    [0.002, 0.0025, 0.05]
    """
    return float(min(0.002 * 1.25**attempt, 0.05))


def _reseal(
    records: RecordStore, user_key: bytes, gone: bytes, clock: Callable[[], float]
) -> dict[bytes, bytes]:
    """Seal the user's record again under the current data key if it is sealed with
    ``gone`` (just destroyed). Returns the key to retire next if this made a fresh
    one that the record did not take (the record changed meanwhile)."""
    for _attempt in range(_ROUNDS):
        with records.env.read() as txn:
            raw = records.raw(txn, user_key)
        if raw is None or not is_sealed(raw):
            return {}
        try:
            plain = unseal(gone, user_key, raw)
        except RecordUnreadable:
            return {}  # sealed with another key: not this key's record
        current, made = records.keystore.get_or_create(user_key, int(clock()))
        with records.env.write() as txn:
            wrote = records.raw(txn, user_key) == raw
            if wrote:
                records.put(txn, user_key, seal(current, user_key, plain))
        if wrote:
            # a commit like any other: its key may have gone meanwhile (``keep_readable``)
            if records.keystore.get(user_key) == current:
                return {}
            gone = current
        elif made:  # the record changed: the fresh key may be nobody's
            return {user_key: current}
    raise StoreFormatError("re-sealing a record kept racing with writers")  # pragma: no cover
