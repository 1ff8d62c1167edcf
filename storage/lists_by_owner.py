"""The content-neighbour lists ranking calls have read, kept by owner in process memory.

A catalog with too many lists to hold whole (``lists_in_memory.py``; 5M entries at
100k items) is read from LMDB a list at a time: ~100 lookups a ranking call, ~2.5 us
each once other reads have pushed their pages out of the CPU's caches. Consecutive
calls share many of those lists (popular items are rated by many users), so the
lists read once serve later calls, as one gather.

Exact by construction: what is held is valid for one version of the lists
(``NeighbourLists.version``, rewritten with every write of a list). A call that
sees another version starts an empty table if its snapshot is newer than the one
the table was started at, and otherwise reads LMDB and keeps nothing. Entries are
kept as LMDB gives them (``padded``), so both paths give the same entries, bit for
bit (only the padding's width may differ). Catalog data only: no user data goes
into the lists. At most ``max_entries`` entries (12 bytes each) are held; past
that, lists are read from LMDB until the version changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

Blocks = tuple[np.ndarray, np.ndarray]  # rows (int64, -1 padding), sims (int32, 0 padding)
ReadLists = Callable[[np.ndarray], Blocks]
_NONE = np.zeros(0, np.int64)  # a deleted list's entries


class ListsByOwner:
    """Lists by owner row, for the version of the lists the newest caller read.

    >>> from types import SimpleNamespace
    >>> def snapshot(n):  # (an LMDB transaction: only its snapshot id is read)
    ...     return SimpleNamespace(id=lambda: n)
    >>> lists = {3: ([5, 6], [90, 80]), 4: ([3], [70])}
    >>> def read(owners):
    ...     read.calls.append(owners.tolist())
    ...     found = [lists.get(o, ([], [])) for o in owners.tolist()]
    ...     rows = np.full((len(owners), 2), -1, np.int64)
    ...     sims = np.zeros((len(owners), 2), np.int32)
    ...     for i, (r, s) in enumerate(found):
    ...         rows[i, : len(r)], sims[i, : len(s)] = r, s
    ...     return rows, sims
    >>> read.calls = []
    >>> held = ListsByOwner(max_entries=100)
    >>> rows, sims = held.get_many(snapshot(1), b"v1", 2, np.array([3, -1]), read)
    >>> rows.tolist(), sims.tolist()
    ([[5, 6], [-1, -1]], [[90, 80], [0, 0]])
    >>> rows, _ = held.get_many(snapshot(1), b"v1", 2, np.array([4, 3]), read)
    >>> rows.tolist(), read.calls  # list 3 was held
    ([[3, -1], [5, 6]], [[3], [4]])
    >>> _ = held.get_many(snapshot(2), b"v2", 2, np.array([3]), read); read.calls[-1]
    [3]
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._lock = threading.Lock()  # SDK users may rank from several threads
        self._start(None, -1, 0)

    def _start(self, version: bytes | None, snapshot: int, width: int) -> None:
        self._version, self._snapshot, self._width = version, snapshot, width
        self._slot_of = np.full(0, -1, np.int64)  # owner row -> slot, -1: not held
        self._rows = np.zeros((0, width), np.int64)
        self._sims = np.zeros((0, width), np.int32)
        self._used = 0  # slots taken

    @property
    def entries(self) -> int:
        """How many entries (padding included) are held."""
        return self._used * self._width

    def get_many(
        self, txn: Any, version: bytes | None, width: int, owners: np.ndarray, read: ReadLists
    ) -> Blocks:
        """The lists of ``owners`` as of ``txn`` (whose lists are at ``version``, ``width``
        entries long), as padded blocks (``ListsInMemory.get_many``); those not held
        are read with ``read`` (from LMDB, in ``txn``) and kept."""
        asked = np.asarray(owners, np.int64)
        snapshot = int(txn.id())
        with self._lock:
            if version != self._version and snapshot > self._snapshot:
                self._start(version, snapshot, width)  # the lists changed: none held
            if version != self._version:  # an older snapshot than the table's
                return read(asked)
            held_width = self._width
            if len(asked) and asked.min() >= 0 and asked.max() < len(self._slot_of):
                slots = self._slot_of[asked]
                if slots.min() >= 0:  # every one held (the usual case): one gather each
                    return self._rows[slots], self._sims[slots]
            else:
                slots = np.full(len(asked), -1, np.int64)
                inside = (asked >= 0) & (asked < len(self._slot_of))
                slots[inside] = self._slot_of[asked[inside]]
            found = slots >= 0
            rows = np.full((len(asked), held_width), -1, np.int64)
            sims = np.zeros((len(asked), held_width), np.int32)
            rows[found], sims[found] = self._rows[slots[found]], self._sims[slots[found]]
        missing = np.flatnonzero(~found & (asked >= 0))
        if not len(missing):
            return rows, sims
        new_rows, new_sims = read(asked[missing])
        if new_rows.shape[1] != held_width:  # (lists longer than the version's k)
            return read(asked)
        rows[missing], sims[missing] = new_rows, new_sims
        with self._lock:
            if self._version == version and self._width == held_width:  # (not replaced)
                self._keep(asked[missing], new_rows, new_sims)
        return rows, sims

    def hold_all(self, txn: Any, version: bytes | None, width: int, lists: Blocks) -> None:
        """Hold every list: ``lists`` as ``ListsInMemory`` holds them (row i: owner i's
        list, padded to ``width``), read in ``txn`` at ``version`` (a warm-up on open)."""
        rows, sims = lists
        if rows.shape[1] != width or rows.size > self.max_entries:
            return
        with self._lock:
            if int(txn.id()) >= self._snapshot:
                self._start(version, int(txn.id()), width)
                self._rows, self._sims, self._used = rows, sims, len(rows)
                self._slot_of = np.arange(len(rows), dtype=np.int64)

    def advance(
        self,
        before: bytes | None,
        after: bytes | None,
        snapshot: int,
        width: int,
        written: dict[int, Blocks | None],
        cleared: bool = False,
    ) -> None:
        """A write in this process took the lists from version ``before`` to ``after``
        (committed as ``snapshot``; lists ``width`` entries long), changing only the
        lists of ``written``'s owners (None: deleted; ``cleared``: every other list
        too): they are held with their new entries (while there is room), and the
        rest stay valid. A table holding lists of another version is left alone (the
        next newer call starts it again)."""
        with self._lock:
            if cleared:
                self._start(before, snapshot, width)
            elif self._used and (self._version != before or self._width != width):
                return
            if not self._used:  # (an empty table is valid for any version)
                self._start(before, snapshot, width)
            added: list[int] = []
            for owner, written_list in written.items():
                rows, sims = written_list if written_list is not None else (_NONE, _NONE)
                if len(rows) > width:  # (longer than the version's k: start again)
                    self._start(None, snapshot, width)
                    return
                slot = int(self._slot_of[owner]) if owner < len(self._slot_of) else -1
                if slot < 0:
                    added.append(owner)
                    continue
                self._rows[slot], self._sims[slot] = -1, 0
                self._rows[slot, : len(rows)], self._sims[slot, : len(sims)] = rows, sims
            if added:
                new_rows = np.full((len(added), width), -1, np.int64)
                new_sims = np.zeros((len(added), width), np.int32)
                for i, owner in enumerate(added):
                    found = written[owner]
                    if found is not None:
                        new_rows[i, : len(found[0])], new_sims[i, : len(found[1])] = found
                self._keep(np.asarray(added, np.int64), new_rows, new_sims)
            self._version, self._snapshot = after, snapshot

    def _keep(self, owners: np.ndarray, rows: np.ndarray, sims: np.ndarray) -> None:
        """Hold these owners' lists while there is room (an owner asked twice in one
        call is held once)."""
        owners, first = np.unique(owners, return_index=True)
        room = max(0, self.max_entries // max(self._width, 1) - self._used)
        owners, first = owners[:room], first[:room]
        if not len(owners):
            return
        top = int(owners.max()) + 1
        if top > len(self._slot_of):
            grown = np.full(max(top, 2 * len(self._slot_of)), -1, np.int64)
            grown[: len(self._slot_of)] = self._slot_of
            self._slot_of = grown
        end = self._used + len(owners)
        if end > len(self._rows):
            size = max(end, 2 * len(self._rows), 64)
            self._rows, self._sims = _grown(self._rows, size), _grown(self._sims, size)
        self._rows[self._used : end], self._sims[self._used : end] = rows[first], sims[first]
        self._slot_of[owners] = np.arange(self._used, end)
        self._used = end


def _grown(block: np.ndarray, size: int) -> np.ndarray:
    """``block`` with room for ``size`` slots; the new ones are left unwritten (never
    read before ``_keep`` fills them), so the room takes no memory until used."""
    out = np.empty((size, block.shape[1]), block.dtype)
    out[: len(block)] = block
    return out
