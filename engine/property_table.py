"""An in-memory, per-process table of the filterable fields of every live item.

Filters are evaluated column-wise over this table (``filters.evaluate``), which
turns a filter into the exact set of matching rows before the vector search, so
a filtered query returns ``n`` results whenever ``n`` items match. The table is
built lazily on the first filtered query and then kept current from the same
catalog change log that keeps the vector index current.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

import numpy as np
import numpy.typing as npt

from ..storage.catalog_store import StoredItem
from .filters import MISSING, Column, Expr, evaluate

Rows = npt.NDArray[np.int64]


def filter_fields(stored: StoredItem) -> dict[str, Any]:
    """The fields a filter can address: properties plus ``id``, ``tags``, ``published_at``."""
    item = stored.item
    fields = dict(item.properties)
    fields["id"] = item.id
    fields["tags"] = list(item.tags)
    if item.published_at is not None:
        fields["published_at"] = item.published_at.isoformat()
    return fields


_MATCHES_KEPT = 64


class PropertyTable:
    def __init__(self) -> None:
        self._fields: dict[int, dict[str, Any]] = {}
        self._row_of: dict[str, int] = {}  # item id -> its live row
        self._id_at = np.full(1024, None, dtype=object)  # row -> item id (None: not live)
        self._rows: Rows | None = None
        self._columns: dict[str, Column] = {}
        self._matches: dict[str, Rows] = {}  # filter -> admitted rows, until the next change

    def __len__(self) -> int:
        return len(self._fields)

    def __contains__(self, row: object) -> bool:
        return row in self._fields

    def item_ids_of(self, rows: Sequence[int] | Rows) -> npt.NDArray[np.object_]:
        """The item id of each row (None: not a live row), as one array lookup (hot path)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.full(rows.shape, None, dtype=object)
        inside = (rows >= 0) & (rows < self._id_at.size)
        out[inside] = self._id_at[rows[inside]]
        return out

    def row_of(self, item_id: str) -> int | None:
        """The live row of an item (None: not in the table)."""
        return self._row_of.get(item_id)

    def row_array(self, item_ids: Sequence[str]) -> np.ndarray:
        """The live row of each item (-1: not in the table), as one int64 array built
        without a Python loop (a recommend asks for every item of the user's log).

        >>> table = PropertyTable(); table.set(7, {"id": "a"})
        >>> table.row_array(["a", "b"]).tolist()
        [7, -1]
        """
        return np.fromiter(map(self._row_of.get, item_ids, repeat(-1)), np.int64, len(item_ids))

    def set(self, row: int, fields: dict[str, Any]) -> None:
        """Add or replace a row; ``fields["id"]`` (always there in the engine's
        tables, see ``filter_fields``) makes the row findable by ``row_of``."""
        old = self._fields.get(row)
        if old is not None:
            self._forget_id(old, row)
        self._fields[row] = fields
        if "id" in fields:
            self._row_of[str(fields["id"])] = row
            if row >= self._id_at.size:
                grown = np.full(max(2 * self._id_at.size, row + 1), None, dtype=object)
                grown[: self._id_at.size] = self._id_at
                self._id_at = grown
            self._id_at[row] = str(fields["id"])
        self._invalidate()

    def remove(self, row: int) -> None:
        old = self._fields.pop(row, None)
        if old is not None:
            self._forget_id(old, row)
            self._invalidate()

    def _forget_id(self, fields: dict[str, Any], row: int) -> None:
        # a re-embedded item's new row may have been set before its old row goes
        if row < self._id_at.size:
            self._id_at[row] = None
        if "id" in fields and self._row_of.get(str(fields["id"])) == row:
            del self._row_of[str(fields["id"])]

    def _invalidate(self) -> None:
        self._rows = None
        self._columns.clear()
        self._matches = {}

    def rows(self) -> Rows:
        """Every live row, sorted."""
        if self._rows is None:
            self._rows = np.fromiter(sorted(self._fields), dtype=np.int64, count=len(self._fields))
        return self._rows

    def column(self, name: str) -> Column:
        col = self._columns.get(name)
        if col is None:
            rows = self.rows()
            col = Column([self._fields[int(r)].get(name, MISSING) for r in rows])
            self._columns[name] = col
        return col

    def matching_rows(self, expr: Expr) -> Rows:
        """The rows a filter admits, sorted; remembered until the table changes, so the
        several searches of one recommendation evaluate the filter once."""
        key = repr(expr)  # the parsed tree: frozen dataclasses of plain values
        found = self._matches.get(key)
        if found is None:
            rows = self.rows()
            found = rows[evaluate(expr, self.column, len(rows))]
            if len(self._matches) >= _MATCHES_KEPT:
                self._matches = {}
            self._matches[key] = found
        return found
