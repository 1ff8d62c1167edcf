"""Tombstones and the erasure journal: what an erasure leaves behind, and why.

Both hold only the user's keyed id (16 bytes, never the raw id) and the erase
time, and both are written in the same data transaction that deletes the record.

- A **tombstone** stops resurrection: every user write checks it inside its own
  write transaction, so a write that started before an erase and commits after
  it fails (``UserErasedError``) instead of recreating the user, and so does a
  device re-uploading a stale copy. It lasts ``tombstone_retention_days``;
  re-creating the user earlier is explicit (``Engine.recreate_user``).
- The **erasure journal** lets erasure survive a keystore restore: on open, any
  data key that a journaled erasure should have destroyed (created at or before
  the erase time) is destroyed again. It lasts ``erasure_journal_retention_days``,
  which must exceed the retention of keystore backups (``backup.py``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

from ..storage.lmdb_env import LmdbEnvironment

_TIME = struct.Struct(">Q")
DAY = 86_400


class ErasureLog:
    def __init__(
        self, env: LmdbEnvironment, tombstone_retention_days: float, journal_retention_days: float
    ) -> None:
        self.tombstones = env.db("tombstones")
        self.journal = env.db("erasure_journal")
        self.tombstone_seconds = tombstone_retention_days * DAY
        self.journal_seconds = journal_retention_days * DAY

    def mark(self, txn: Any, user_key: bytes, now: int) -> None:
        """Record an erasure (inside the erasing transaction)."""
        stamp = _TIME.pack(now)
        txn.put(user_key, stamp, db=self.tombstones)
        txn.put(user_key, stamp, db=self.journal)

    def tombstone(self, txn: Any, user_key: bytes, now: float) -> int | None:
        """The erase time if an unexpired tombstone stands for this user."""
        raw = txn.get(user_key, db=self.tombstones)
        if raw is None:
            return None
        erased_at = int(_TIME.unpack(raw)[0])
        return erased_at if now - erased_at < self.tombstone_seconds else None

    def lift(self, txn: Any, user_key: bytes) -> bool:
        """Remove the tombstone (the user is explicitly re-created); the journal stays."""
        return bool(txn.delete(user_key, db=self.tombstones))

    @staticmethod
    def time_of(raw: bytes) -> int:
        """The erase time a tombstone or journal value holds."""
        return int(_TIME.unpack(bytes(raw))[0])

    def journal_entries(self, txn: Any) -> Iterator[tuple[bytes, int]]:
        for key, raw in txn.cursor(db=self.journal):
            yield bytes(key), int(_TIME.unpack(raw)[0])

    def expire(self, txn: Any, now: float) -> int:
        """Drop tombstones and journal entries past their retention; return how many."""
        dropped = 0
        for db, keep in (
            (self.tombstones, self.tombstone_seconds),
            (self.journal, self.journal_seconds),
        ):
            old = [bytes(k) for k, v in txn.cursor(db=db) if now - _TIME.unpack(v)[0] >= keep]
            for key in old:
                txn.delete(key, db=db)
            dropped += len(old)
        return dropped

    def counts(self, txn: Any) -> tuple[int, int]:
        return int(txn.stat(self.tombstones)["entries"]), int(txn.stat(self.journal)["entries"])
