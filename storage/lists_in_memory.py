"""Every content-neighbour list of a store in process memory, for fast ranking reads.

A ranking call reads the lists of the user's rated items (about a hundred);
from LMDB that is one lookup per list and a copy of each. Held as two padded
arrays (owner row x k) the same read is one gather. The lists are catalog data
(no user data goes into them), so holding them costs only memory:
``ListsInMemory`` is a snapshot of every list as of one version of the lists
(``NeighbourLists.version``, changed by every write of a list), and is used only
while that version is current. Its entries come out in the order
``NeighbourLists.get_many`` reads them from LMDB, so both paths give the same
arrays, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

ENTRY = np.dtype([("row", "<i8"), ("sim", "<i4")])  # a stored entry: 12 bytes, no padding


@dataclass(frozen=True)
class ListsInMemory:
    """The lists of one version: ``rows[owner, j]`` and ``sims[owner, j]`` for
    ``j < lengths[owner]`` (owners without a list have length 0)."""

    version: bytes | None
    rows: np.ndarray  # int64 (owners, k), -1 past a list's end
    sims: np.ndarray  # int32 (owners, k)
    lengths: np.ndarray  # int64 (owners,)

    @classmethod
    def read(cls, txn: Any, db: Any, version: bytes | None, k: int) -> ListsInMemory:
        """Every list in ``db`` as of ``txn`` (keys: 8-byte big-endian owner rows)."""
        keys: list[bytes] = []
        raws: list[bytes] = []
        for key, raw in txn.cursor(db=db):
            keys.append(bytes(key))
            raws.append(bytes(raw))
        owners = np.frombuffer(b"".join(keys), ">u8").astype(np.int64)
        counts = np.array([len(raw) // ENTRY.itemsize for raw in raws], np.int64)
        entries = np.frombuffer(b"".join(raws), ENTRY)
        top = int(owners.max()) + 1 if len(owners) else 0
        width = max(k, int(counts.max()) if len(counts) else 0)
        rows = np.full((top, width), -1, np.int64)
        sims = np.zeros((top, width), np.int32)
        lengths = np.zeros(top, np.int64)
        lengths[owners] = counts
        column = np.arange(len(entries)) - np.repeat(np.cumsum(counts) - counts, counts)
        owner_of = np.repeat(owners, counts)
        rows[owner_of, column] = entries["row"]
        sims[owner_of, column] = entries["sim"]
        return cls(version, rows, sims, lengths)

    @property
    def entries(self) -> int:
        return int(self.lengths.sum())

    def get_many(
        self, owners: Sequence[int | None] | np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """As ``NeighbourLists.get_many``: (rows, similarities, the position in
        ``owners`` of the list each entry came from).

        >>> lists = ListsInMemory(b"v", np.array([[1, 2], [0, -1]]),
        ...                       np.array([[90, 80], [90, 0]], np.int32), np.array([2, 1]))
        >>> [a.tolist() for a in lists.get_many([1, None, 0, 7])]
        [[0, 1, 2], [90, 90, 80], [0, 2, 2]]
        >>> [a.tolist() for a in lists.get_many(np.array([1, -1, 0]))]
        [[0, 1, 2], [90, 90, 80], [0, 2, 2]]
        """
        if isinstance(owners, np.ndarray):  # rows, -1 for none (the ranking hot path)
            asked = np.asarray(owners, np.int64)
        else:
            asked = np.array([-1 if o is None else o for o in owners], np.int64)
        at = np.flatnonzero((asked >= 0) & (asked < len(self.lengths)))
        picked = asked[at]
        counts = self.lengths[picked]
        rows, sims = self.rows[picked], self.sims[picked]
        if int(counts.min(initial=self.rows.shape[1])) == self.rows.shape[1]:  # all full
            return rows.ravel(), sims.ravel().astype(np.int64), np.repeat(at, counts)
        mask = np.arange(self.rows.shape[1]) < counts[:, None]
        return rows[mask], sims[mask].astype(np.int64), np.repeat(at, counts)
