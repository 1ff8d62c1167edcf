"""Every content-neighbour list of a store in process memory, for fast ranking reads.

A ranking call reads the lists of the user's rated items (about a hundred);
from LMDB that is one lookup per list and a copy of each. Held as two padded
arrays (owner row x k) the same read is one gather, and the result is padded
blocks that a ranking call sums over without any masking. The lists are catalog data
(no user data goes into them), so holding them costs only memory:
``ListsInMemory`` is a snapshot of every list as of one version of the lists
(``NeighbourLists.version``, changed by every write of a list), and is used only
while that version is current. Its entries come out in the order
``NeighbourLists.get_many`` reads them from LMDB, so both paths give the same
entries, bit for bit (only the padding's width may differ).
"""

from __future__ import annotations

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

    def get_many(self, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """As ``NeighbourLists.get_many``: the lists of ``owners`` (rows; -1 or a row
        without a list: none) as padded blocks, ``rows[i, j]`` and ``sims[i, j]`` the
        j-th entry of owner i's list, row -1 and similarity 0 past its end (one gather).

        >>> lists = ListsInMemory(b"v", np.array([[1, 2], [0, -1]]),
        ...                       np.array([[90, 80], [90, 0]], np.int32), np.array([2, 1]))
        >>> [a.tolist() for a in lists.get_many(np.array([1, -1, 0]))]
        [[[0, -1], [-1, -1], [1, 2]], [[90, 0], [0, 0], [90, 80]]]
        >>> [a.shape for a in lists.get_many(np.array([7, 0]))]  # 7: no list
        [(2, 2), (2, 2)]
        """
        asked = np.asarray(owners, np.int64)
        inside = (asked >= 0) & (asked < len(self.lengths))
        if inside.all():  # (the ranking hot path)
            return self.rows[asked], self.sims[asked]
        rows = np.full((len(asked), self.rows.shape[1]), -1, np.int64)
        sims = np.zeros((len(asked), self.rows.shape[1]), np.int32)
        rows[inside], sims[inside] = self.rows[asked[inside]], self.sims[asked[inside]]
        return rows, sims


def padded(raws: list[bytes], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Stored lists (packed ``ENTRY`` bytes, b"" for none) as padded blocks of at least
    ``width`` columns (see ``ListsInMemory.get_many``).

    >>> raws = [np.array([(5, 70)], ENTRY).tobytes(), b""]
    >>> [a.tolist() for a in padded(raws, 2)]
    [[[5, -1], [-1, -1]], [[70, 0], [0, 0]]]
    """
    counts = np.array([len(raw) // ENTRY.itemsize for raw in raws], np.int64)
    entries = np.frombuffer(b"".join(raws), ENTRY)
    width = max(width, int(counts.max(initial=0)))
    rows = np.full((len(raws), width), -1, np.int64)
    sims = np.zeros((len(raws), width), np.int32)
    filled = np.arange(width) < counts[:, None]
    rows[filled], sims[filled] = entries["row"], entries["sim"]
    return rows, sims
