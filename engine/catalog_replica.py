"""A device's copy of the server's catalog, kept by catalog sync pages
(``catalog_sync.py`` serves them, ``catalog_wire.py`` is their format, docs/sync.md
the protocol): what a device needs to rank offline, and nothing derived from users.

The copy keys items by the server's row numbers (a removal names a row) and keeps
vectors as the view's encoding sent them (``vectors`` decodes them to float32: with
``f32``, the server's bits). In memory: dense arrays of rows, vectors (and i8's
scales), one slot per item in no particular order (a removal moves the last item
into its slot, so a delta costs what it changes), and the items by row.

On disk (``path``), one file, ``catalog.msgpack``: a msgpack map with the format,
store, view, cursor, catalog version, dimension, encoding, the rows (int64 LE), the
vectors and scales (packed as on the wire) and the items (lists in the rows' order).
It is written whole to a temporary file and renamed over the old one when a sync
finishes, so a crash leaves the last finished copy and its cursor: the next sync
starts from there. Saving is O(catalog), unlike applying a delta. Simple, not
small: a real device would rather keep this in SQLite or LMDB; the format is the
wire's, so either can be built from it.

    replica = CatalogReplica("phone/catalog")
    replica.sync(lambda params: engine.catalog.changes(**params))   # or over HTTP
    replica.ids, replica.vectors, replica.properties
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgpack
import numpy as np

from ..errors import InvalidInputError
from .catalog_wire import (
    FORMAT,
    CatalogPage,
    Encoding,
    SyncView,
    check_view,
    decode_vectors,
    unblob,
)

FILE_NAME = "catalog.msgpack"
_DTYPE = {"f32": "<f4", "f16": "<f2", "i8": "i1"}
MAX_PAGES = 1_000_000  # ``sync`` stops there: a server that never says "done"


@dataclass(frozen=True)
class ReplicaItem:
    """An item of the copy (``title``/``body`` None when the view leaves them out)."""

    row: int
    id: str
    title: str | None
    body: str | None
    tags: tuple[str, ...]
    properties: dict[str, Any]
    published_at: datetime | None

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> ReplicaItem:
        published = raw.get("published_at")
        return cls(
            int(raw["row"]),
            str(raw["id"]),
            raw.get("title"),
            raw.get("body"),
            tuple(raw.get("tags") or ()),
            dict(raw.get("properties") or {}),
            None if published is None else datetime.fromisoformat(published),
        )

    def to_list(self) -> list[Any]:
        published = None if self.published_at is None else self.published_at.isoformat()
        return [
            self.row,
            self.id,
            self.title,
            self.body,
            list(self.tags),
            self.properties,
            published,
        ]


class _Slots:
    """The copy's items in dense arrays, one slot each, in no particular order: an add
    takes the next slot, a removal moves the last slot into the hole (so a delta
    costs what it changes, never a copy of the whole catalog)."""

    def __init__(self, dimension: int, encoding: Encoding) -> None:
        self.dimension, self.encoding = dimension, encoding
        self.count = 0
        self.rows = np.zeros(0, np.int64)
        self.vectors = np.zeros((0, dimension), _DTYPE[encoding])
        self.scales = np.zeros(0, "<f4")
        self.slot_of: dict[int, int] = {}

    def _reserve(self, total: int) -> None:
        if total <= len(self.rows):
            return
        size = max(total, 2 * len(self.rows), 1_024)
        for name in ("rows", "vectors", "scales"):
            old = getattr(self, name)
            grown = np.zeros((size, *old.shape[1:]), old.dtype)
            grown[: len(old)] = old
            setattr(self, name, grown)

    def put(self, rows: np.ndarray, vectors: np.ndarray, scales: np.ndarray | None) -> None:
        slots = np.empty(len(rows), np.int64)
        for k, row in enumerate(rows.tolist()):
            slot = self.slot_of.get(row)
            if slot is None:
                slot = self.slot_of[row] = self.count
                self.count += 1
            slots[k] = slot
        self._reserve(self.count)
        self.rows[slots] = rows
        self.vectors[slots] = vectors
        if scales is not None:
            self.scales[slots] = scales

    def remove(self, row: int) -> None:
        slot = self.slot_of.pop(row, None)
        if slot is None:
            return
        last = self.count - 1
        if slot != last:
            moved = int(self.rows[last])
            self.rows[slot], self.scales[slot] = moved, self.scales[last]
            self.vectors[slot] = self.vectors[last]
            self.slot_of[moved] = slot
        self.count = last


@dataclass
class _State:
    store: str | None = None
    view: SyncView | None = None  # the view the copy holds
    dimension: int | None = None
    cursor: str | None = None
    catalog_seq: int | None = None
    slots: _Slots | None = None
    items: dict[int, ReplicaItem] = field(default_factory=dict)


class CatalogReplica:
    """A device's catalog copy (see the module docstring). ``encoding``, ``filters``,
    ``newest``, ``titles`` and ``body``: the view it asks for (another view than the
    copy on disk holds makes the next sync a full one)."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        encoding: Encoding = "f32",
        filters: Mapping[str, Any] | None = None,
        newest: int | None = None,
        titles: bool = True,
        body: bool = False,
    ) -> None:
        self.path = None if path is None else Path(path)
        self.wanted = check_view(encoding, filters, newest, titles, body)
        self._state = _State()
        self._next: str | None = None  # mid-sync: the page token to fetch
        self._decoded: np.ndarray | None = None
        if self.path is not None and (self.path / FILE_NAME).exists():
            self._load(self.path / FILE_NAME)

    # -- syncing ---------------------------------------------------------------------

    @property
    def cursor(self) -> str | None:
        """The cursor of the last finished sync (None: none yet, the next is full)."""
        return self._state.cursor

    @property
    def catalog_seq(self) -> int | None:
        """The server's catalog version the copy is at."""
        return self._state.catalog_seq

    @property
    def in_sync(self) -> bool:
        """Whether a sync is under way (``request`` then asks for its next page)."""
        return self._next is not None

    def request(self) -> dict[str, Any]:
        """The parameters of the next request: ``{"page": token}`` inside a sync, else
        the cursor (``since``) and the view (``filters`` only when there is one: over
        HTTP it needs ``POST /sync/catalog``)."""
        if self._next is not None:
            return {"page": self._next}
        view = self.wanted
        params: dict[str, Any] = {"encoding": view.encoding, "titles": view.titles}
        params["body"] = view.body
        if self._state.cursor is not None:
            params["since"] = self._state.cursor
        if view.filters is not None:
            params["filters"] = view.filters
        if view.newest is not None:
            params["newest"] = view.newest
        return params

    def sync(self, fetch: Callable[[dict[str, Any]], CatalogPage | Mapping[str, Any]]) -> int:
        """Fetch (``fetch(self.request())``) and apply pages until the sync is done;
        returns how many pages it took."""
        for count in range(1, MAX_PAGES + 1):
            if self.apply(fetch(self.request())):
                return count
        raise RuntimeError(f"the sync did not finish in {MAX_PAGES} pages")  # pragma: no cover

    def apply(self, page: CatalogPage | Mapping[str, Any]) -> bool:
        """Apply one page (a ``CatalogPage``, or its wire form: JSON with base64 blobs,
        or msgpack with bytes); True when it ended the sync (the copy is then saved,
        with ``path``). A page that does not fit the copy (another store, view or
        dimension without a reset, a change to an item the copy lacks) raises
        ``InvalidInputError`` and drops the cursor, so the next sync is a full one."""
        raw = page.to_wire(binary=True) if isinstance(page, CatalogPage) else page
        try:
            return self._apply(raw)
        except (KeyError, TypeError, ValueError) as exc:
            self._state.cursor = None
            self._next = None
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(f"not a catalog sync page: {exc!r}") from None

    def _apply(self, raw: Mapping[str, Any]) -> bool:
        if raw.get("format") != FORMAT:
            raise InvalidInputError(f"catalog sync format {raw.get('format')!r} is not {FORMAT}")
        view = check_view(**raw["view"])
        dimension = int(raw["dimension"])
        state = self._state
        if raw["reset"]:
            slots = _Slots(dimension, view.encoding)
            self._state = state = _State(str(raw["store"]), view, dimension, slots=slots)
        elif state.cursor is None and self._next is None:
            raise InvalidInputError("a delta for a copy that has no finished sync")
        elif (raw["store"], view, dimension) != (state.store, state.view, state.dimension):
            raise InvalidInputError("this page is for another store, view or dimension")
        assert state.slots is not None
        self._decoded = None
        for row in raw["removed"]:
            state.items.pop(int(row), None)
            state.slots.remove(int(row))
        for entry in raw["changed"]:
            item = ReplicaItem.from_wire(entry)
            if item.row not in state.items:
                raise InvalidInputError(f"a change to row {item.row}, which the copy lacks")
            state.items[item.row] = item
        items = [ReplicaItem.from_wire(entry) for entry in raw["items"]]
        if items:
            blob, scales = unblob(raw["vectors"]) or b"", unblob(raw["scales"])
            decode_vectors(blob, scales, view.encoding, len(items), dimension)  # checks sizes
            state.slots.put(
                np.array([i.row for i in items], np.int64),
                np.frombuffer(blob, _DTYPE[view.encoding]).reshape(len(items), dimension),
                None if scales is None else np.frombuffer(scales, "<f4"),
            )
            for item in items:
                state.items[item.row] = item
        self._next = raw["next"]
        if self._next is not None:
            return False
        state.cursor, state.catalog_seq = raw["cursor"], int(raw["catalog_seq"])
        if state.slots.count != len(state.items):
            raise InvalidInputError("the copy holds items without vectors")
        if self.path is not None:
            self.save()
        return True

    # -- reading the copy ---------------------------------------------------------------

    def _slots(self) -> _Slots:
        state = self._state
        if state.slots is None:
            state.slots = _Slots(state.dimension or 0, (state.view or self.wanted).encoding)
        return state.slots

    def __len__(self) -> int:
        return len(self._state.items)

    def __contains__(self, item_id: object) -> bool:
        return any(item.id == item_id for item in self._state.items.values())

    @property
    def rows(self) -> np.ndarray:
        """The server's row of each item, in the copy's order (that of ``ids`` and
        ``vectors``; no particular order: removals fill holes with the last item)."""
        slots = self._slots()
        return slots.rows[: slots.count].copy()

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    @property
    def items(self) -> list[ReplicaItem]:
        items = self._state.items
        return [items[row] for row in self.rows.tolist()]

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        """Item id -> its properties."""
        return {item.id: item.properties for item in self._state.items.values()}

    @property
    def vectors(self) -> np.ndarray:
        """The items' vectors as float32, in the order of ``ids`` (read-only; a new
        array after each ``apply``): with ``f32``, the server's bits."""
        if self._decoded is None:
            slots = self._slots()
            decoded = slots.vectors[: slots.count].astype(np.float32)  # a copy
            if slots.encoding == "i8":
                decoded *= slots.scales[: slots.count, None]
            decoded.flags.writeable = False
            self._decoded = decoded
        return self._decoded

    # -- on disk ------------------------------------------------------------------------

    def save(self) -> None:
        """Write the copy to ``path``, atomically (``apply`` does when a sync ends; a
        copy saved in the middle of a sync keeps the cursor it started from, and the
        next sync from there makes it exact again)."""
        if self.path is None:
            raise InvalidInputError("this replica has no path")
        state, slots = self._state, self._slots()
        view, n = state.view, slots.count
        record = {
            "format": FORMAT,
            "store": state.store,
            "view": None if view is None else view.as_dict(),
            "cursor": state.cursor,
            "catalog_seq": state.catalog_seq,
            "dimension": state.dimension,
            "rows": np.ascontiguousarray(slots.rows[:n], "<i8").tobytes(),
            "vectors": slots.vectors[:n].tobytes(),
            "scales": slots.scales[:n].tobytes() if slots.encoding == "i8" else None,
            "items": [state.items[row].to_list() for row in slots.rows[:n].tolist()],
        }
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / FILE_NAME
        temporary = target.with_suffix(".tmp")
        with open(temporary, "wb") as out:
            out.write(msgpack.packb(record, use_bin_type=True))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)

    def _load(self, file: Path) -> None:
        record = msgpack.unpackb(file.read_bytes(), raw=False)
        if record.get("format") != FORMAT or record["view"] is None:
            return  # another format, or nothing synced: start over with a full sync
        view = check_view(**record["view"])
        dim = int(record["dimension"])
        slots = _Slots(dim, view.encoding)
        rows = np.frombuffer(record["rows"], "<i8").astype(np.int64)
        vectors = np.frombuffer(record["vectors"], _DTYPE[view.encoding]).reshape(-1, dim)
        scales = record["scales"]
        slots.put(rows, vectors, None if scales is None else np.frombuffer(scales, "<f4"))
        items = [
            ReplicaItem.from_wire(dict(zip(_FIELDS, raw, strict=True))) for raw in record["items"]
        ]
        self._state = _State(
            record["store"],
            view,
            dim,
            record["cursor"],
            record["catalog_seq"],
            slots,
            {item.row: item for item in items},
        )


_FIELDS = ("row", "id", "title", "body", "tags", "properties", "published_at")
