"""The popularity counts of catalog rows, held in memory for one LMDB snapshot.

A retrieved pool (a catalog too big to rank whole) reads the exact count of each of
its ~280 items: one LMDB lookup each, ~1.5 us apiece in a ranking call, whose other
reads have pushed the counts' pages out of the CPU's caches. Consecutive calls share
most of their items (the popular ones, the neighbours of popular ones), so the counts
read once serve the following calls, as a gather by row.

Exact by construction: what is held is valid for exactly one snapshot (LMDB's
transaction id, which every committed write moves on, an erasure's too); a call on a
newer snapshot starts a new, empty table; a call on an older one reads LMDB and
leaves the table alone. A row's item never changes (re-embedding an item gives it a
new row), so a count held for a row is the count of that row's item. The table is
process memory only, derived from the opt-in shared statistic and dropped with it
(``forget``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

ReadCounts = Callable[[Any, Sequence[str]], np.ndarray]


class CountsByRow:
    """Counts by row for the newest snapshot a call has asked about.

    >>> from types import SimpleNamespace
    >>> def snapshot(n):  # (an LMDB transaction: only its snapshot id is read)
    ...     return SimpleNamespace(id=lambda: n)
    >>> reads = []
    >>> def read(txn, ids):
    ...     reads.append(list(ids))
    ...     return np.array([int(i) for i in ids], np.int64)
    >>> table = CountsByRow(read)
    >>> table.counts(snapshot(5), np.array([3, 9]), ["30", "90"]).tolist()
    [30, 90]
    >>> table.counts(snapshot(5), np.array([9, 4]), ["90", "40"]).tolist(), reads
    ([90, 40], [['30', '90'], ['40']])
    >>> _ = table.counts(snapshot(6), np.array([9]), ["91"]); reads[-1]  # a newer snapshot
    ['91']
    >>> _ = table.counts(snapshot(5), np.array([3]), ["30"]); reads[-1]  # an older one: LMDB
    ['30']
    """

    def __init__(self, read: ReadCounts) -> None:
        self._read = read
        self._lock = threading.Lock()  # SDK users may rank from several threads
        self._snapshot = -1
        self._counts = np.zeros(0, np.int64)
        self._known = np.zeros(0, bool)

    def forget(self) -> None:
        """Drop every count held (before an erasure; its snapshot would drop them too)."""
        with self._lock:
            self._snapshot = -1
            self._known[:] = False

    def counts(self, txn: Any, rows: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        """The count of each item (``ids[i]`` at catalog row ``rows[i]``) as of ``txn``."""
        snapshot = int(txn.id())
        with self._lock:
            if snapshot > self._snapshot:  # a newer snapshot: nothing held is current
                self._snapshot = snapshot
                self._known[:] = False
            held: tuple[np.ndarray, np.ndarray] | None = None
            if snapshot == self._snapshot:  # (else an older snapshot than the table's)
                top = int(rows.max(initial=-1)) + 1
                if top > len(self._known):
                    self._grow(top)
                held = self._known[rows], self._counts[rows]
        if held is None:  # read as of that snapshot, and keep nothing
            return self._read(txn, ids)
        known, out = held
        missing = np.flatnonzero(~known)
        if len(missing):
            out[missing] = self._read(txn, [ids[i] for i in missing.tolist()])
            with self._lock:
                if self._snapshot == snapshot:  # (not replaced meanwhile by a newer one)
                    self._counts[rows[missing]] = out[missing]
                    self._known[rows[missing]] = True
        return out

    def _grow(self, size: int) -> None:
        size = max(size, 2 * len(self._known))
        counts, known = np.zeros(size, np.int64), np.zeros(size, bool)
        counts[: len(self._counts)], known[: len(self._known)] = self._counts, self._known
        self._counts, self._known = counts, known
