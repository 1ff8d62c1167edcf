"""The float32 vectors of an IVF index's rows, exactly as added, beside its float16 codes.

An IVF index of float16 codes scans half the bytes of float32 lists (the scan is
memory-bound), but its codes are rounded: the vectors a caller asks for by row (a
candidate pool, a user's rated items) and the scores of a search's answer come from
this table instead. Rows only grow and a row's vector never changes (re-embedding an
item gives it a new row), so the table only appends; a removed row is forgotten.

A table read from an index file can keep its vectors in the file (``mapped``: every
process that opens the file shares one copy in the page cache); rows added later go
to memory. Each row's slot is looked up in one array of 4 bytes a row.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

Rows = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


class RowTable:
    """Vectors by row: a fixed base (from a file, possibly mapped) and rows added since.

    >>> table = RowTable(2)
    >>> table.put(np.array([5, 2]), np.array([[1, 2], [3, 4]], np.float32))
    >>> held, vectors = table.get(np.array([2, 7, 5]))
    >>> held.tolist(), vectors.tolist()
    ([True, False, True], [[3.0, 4.0], [0.0, 0.0], [1.0, 2.0]])
    >>> table.drop(np.array([5]))
    >>> table.get(np.array([5]))[0].tolist(), len(table)
    ([False], 1)
    """

    COMPACT_AT = 1024  # dead slots of added rows tolerated before ``_compact``

    def __init__(
        self, dimension: int, rows: Rows | None = None, base: Vectors | None = None
    ) -> None:
        self.dimension = dimension
        self.mapped = isinstance(base, np.memmap)  # (base's vectors stay in the file)
        # a plain view: what callers get back is an ndarray, never a memmap
        self.base: Vectors = (
            np.zeros((0, dimension), np.float32) if base is None else np.asarray(base)
        )
        self._added = np.zeros((0, dimension), np.float32)  # rows put since: capacity grows
        self._used = 0  # slots of _added taken (a dropped row's slot is not reused...)
        self._live_added = 0  # (... until fewer than half of them hold a row: _compact)
        self.slot_of = np.full(0, -1, dtype=np.int32)  # row -> slot (base first), -1: none
        self._count = 0
        if rows is not None and len(rows):
            self._grow(int(rows.max()) + 1)
            self.slot_of[rows] = np.arange(len(rows), dtype=np.int32)
            self._count = len(rows)

    def __len__(self) -> int:
        return self._count

    def _grow(self, size: int) -> None:
        if size > self.slot_of.size:
            grown = np.full(max(size, 2 * self.slot_of.size), -1, dtype=np.int32)
            grown[: self.slot_of.size] = self.slot_of
            self.slot_of = grown

    def put(self, rows: Rows, vectors: Vectors) -> None:
        """Hold ``vectors`` under ``rows`` (distinct; a row held already takes the new
        vector)."""
        if not len(rows):
            return
        rows = np.asarray(rows, dtype=np.int64)
        self.drop(rows)
        if self._used - self._live_added > max(self.COMPACT_AT, self._live_added):
            self._compact()
        need = self._used + len(rows)
        if need > len(self._added):
            grown = np.empty((max(need, 2 * len(self._added)), self.dimension), np.float32)
            grown[: self._used] = self._added[: self._used]
            self._added = grown
        self._added[self._used : need] = vectors
        self._grow(int(rows.max()) + 1)
        first = len(self.base) + self._used
        self.slot_of[rows] = np.arange(first, first + len(rows), dtype=np.int32)
        self._used = need
        self._count += len(rows)
        self._live_added += len(rows)

    def _compact(self) -> None:
        """Move the added rows still held to the front of ``_added`` (rows replaced or
        removed again and again would otherwise grow it without end)."""
        rows = np.flatnonzero(self.slot_of >= len(self.base))
        slots = self.slot_of[rows].astype(np.int64) - len(self.base)
        self._added = self._added[slots].copy()
        self.slot_of[rows] = len(self.base) + np.arange(len(rows), dtype=np.int32)
        self._used = self._live_added = len(rows)

    def drop(self, rows: Rows) -> None:
        """Forget ``rows`` (those not held: no error)."""
        rows = np.asarray(rows, dtype=np.int64)
        rows = np.unique(rows[(rows >= 0) & (rows < self.slot_of.size)])
        held = rows[self.slot_of[rows] >= 0]
        self._live_added -= int((self.slot_of[held] >= len(self.base)).sum())
        self.slot_of[held] = -1
        self._count -= len(held)

    def get(self, rows: Rows) -> tuple[npt.NDArray[np.bool_], Vectors]:
        """(which rows are held, the vector of each; zeros where not)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and rows.min() >= 0 and rows.max() < self.slot_of.size:
            slots = self.slot_of[rows]
            if slots.min() >= 0 and slots.max() < len(self.base):  # (the usual case)
                return np.ones(len(rows), bool), np.take(self.base, slots, axis=0)
        inside = (rows >= 0) & (rows < self.slot_of.size)
        slots = np.full(len(rows), -1, dtype=np.int64)
        slots[inside] = self.slot_of[rows[inside]]
        held = slots >= 0
        out = np.zeros((len(rows), self.dimension), np.float32)
        in_base = held & (slots < len(self.base))
        out[in_base] = self.base[slots[in_base]]
        added = held & ~in_base
        out[added] = self._added[slots[added] - len(self.base)]
        return held, out

    def write(self, fh: Any, rows: Rows) -> None:
        """Write the vectors of ``rows`` (each held), in that order, to an open file."""
        for start in range(0, len(rows), 65_536):  # no copy of the whole table at once
            held, vectors = self.get(rows[start : start + 65_536])
            if not held.all():
                raise RuntimeError("a row is not in the table")
            fh.write(np.ascontiguousarray(vectors, dtype="<f4").tobytes())
