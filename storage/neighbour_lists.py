"""How the catalog's content neighbourhoods are laid out in LMDB.

Each item's nearest items by the frozen embeddings are catalog data: no user
data goes into them, so they are kept like the catalog itself. Named databases:

- ``neighbours``: owner row (8-byte big-endian) -> the owner's list, best first,
  as packed little-endian (int64 row, int32 similarity) entries of 12 bytes
  (similarities are integers: see ``engine/content_neighbours.py`` for their
  scale). Fixed-size entries let many lists be decoded in one pass;
- ``neighbour_of``: the reverse index, row -> the sorted int64 rows of the
  owners whose lists hold it. A catalog delete reads it to find the lists it
  touches; nothing else needs to scan the lists;
- ``meta`` keys ``neighbours_version`` (8 random bytes, new with every write of a
  list: a process holding the lists in memory, ``lists_in_memory.py``, knows
  whether they are current), ``neighbours_seq`` (the catalog sequence number the lists are
  current for, with the layout version; absent or another layout: to be built
  from scratch), ``neighbours_k`` (their length) and ``neighbours_centre`` (the
  vector every embedding is centred on before comparing, and how many items the
  catalog had when it was taken: float64 bytes and an int).

Storage only stores: what the lists hold is decided by the engine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import msgpack
import numpy as np

from .catalog_store import row_from_key, row_key
from .lists_by_owner import ListsByOwner
from .lists_in_memory import ENTRY, ListsInMemory, padded
from .lmdb_env import LmdbEnvironment

LAYOUT = 1
_EMPTY = np.zeros(0, np.int64)


def encode_list(rows: np.ndarray, sims: np.ndarray) -> bytes:
    if len(rows) != len(sims):
        raise ValueError("a neighbour list needs as many similarities as rows")
    entries = np.empty(len(rows), ENTRY)
    entries["row"], entries["sim"] = rows, sims
    return entries.tobytes()


def decode_list(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    entries = np.frombuffer(raw, ENTRY)
    return entries["row"].astype(np.int64), entries["sim"].astype(np.int32)


class NeighbourLists:
    """Typed access to the neighbour lists inside caller-owned transactions."""

    def __init__(
        self, env: LmdbEnvironment, in_memory_entries: int = 0, held_entries: int = 0
    ) -> None:
        self.env = env
        self.lists = env.db("neighbours")
        self.reverse = env.db("neighbour_of")
        self.meta = env.db("meta")
        # hold every list in memory while they have at most this many entries
        self.in_memory_entries = in_memory_entries
        self._memory: ListsInMemory | None = None
        self._memory_lock = threading.Lock()
        # else keep the lists ranking reads, up to this many entries
        self.held = ListsByOwner(held_entries) if held_entries > 0 else None

    # -- the state the lists are in ------------------------------------------------

    def seq(self, txn: Any) -> int | None:
        """The catalog sequence number the lists are current for (None: never built)."""
        raw = txn.get(b"neighbours_seq", db=self.meta)
        if raw is None:
            return None
        state = msgpack.unpackb(raw)
        return int(state[1]) if isinstance(state, list) and state[0] == LAYOUT else None

    def k(self, txn: Any) -> int | None:
        raw = txn.get(b"neighbours_k", db=self.meta)
        return None if raw is None else int(msgpack.unpackb(raw))

    def set_state(self, txn: Any, seq: int, k: int) -> None:
        txn.put(b"neighbours_seq", msgpack.packb([LAYOUT, seq]), db=self.meta)
        txn.put(b"neighbours_k", msgpack.packb(k), db=self.meta)

    def centre(self, txn: Any) -> tuple[np.ndarray, int] | None:
        raw = txn.get(b"neighbours_centre", db=self.meta)
        if raw is None:
            return None
        vector, count = msgpack.unpackb(raw)
        return np.frombuffer(vector, "<f8").copy(), int(count)

    def set_centre(self, txn: Any, vector: np.ndarray, count: int) -> None:
        value = [np.ascontiguousarray(vector, "<f8").tobytes(), count]
        txn.put(b"neighbours_centre", msgpack.packb(value), db=self.meta)

    # -- lists ------------------------------------------------------------------------

    def get(self, txn: Any, owner: int) -> tuple[np.ndarray, np.ndarray] | None:
        raw = txn.get(row_key(owner), db=self.lists)
        return None if raw is None else decode_list(raw)

    def version(self, txn: Any) -> bytes | None:
        """Changes with every write of a list (None: none since the store had it)."""
        raw = txn.get(b"neighbours_version", db=self.meta)
        return None if raw is None else bytes(raw)

    def _changed(self, txn: Any) -> None:
        txn.put(b"neighbours_version", os.urandom(8), db=self.meta)

    def get_many(self, txn: Any, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The lists of many owners at once (rows; -1 or a row without a list: none) as
        padded blocks: ``rows[i, j]`` and ``sims[i, j]`` the j-th entry of owner i's
        list, row -1 and similarity 0 past its end (``ListsInMemory.get_many``). From
        memory while the lists there are current (read again after a change, if they
        are few enough: ``in_memory_entries``); else those held since the lists last
        changed (``held_entries``, ``lists_by_owner.py``), and LMDB for the rest."""
        version = self.version(txn)
        memory = self._in_memory(txn, version)
        if memory is not None:
            return memory.get_many(owners)
        if self.held is None:
            return self.read_many(txn, owners)
        width = self.k(txn) or 0
        return self.held.get_many(
            txn, version, width, owners, lambda asked: self.read_many(txn, asked)
        )

    def read_many(self, txn: Any, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``get_many`` read from LMDB."""
        keys = [row_key(o) if o >= 0 else b"" for o in np.asarray(owners, np.int64).tolist()]
        found = dict(txn.cursor(db=self.lists).getmulti([k for k in keys if k]))
        found[b""] = b""  # (no owner: no list)
        raws = [found.get(k, b"") for k in keys]  # (values are bytes: buffers are off)
        return padded(raws, self.k(txn) or 0)

    def in_memory(self, txn: Any) -> ListsInMemory | None:
        """The lists as of ``txn`` from memory; read into memory first if they changed
        and hold at most ``in_memory_entries`` entries (None: read them from LMDB)."""
        return self._in_memory(txn, self.version(txn))

    def _in_memory(self, txn: Any, version: bytes | None) -> ListsInMemory | None:
        """``in_memory``, the lists' version read by the caller."""
        if self.in_memory_entries <= 0:
            return None
        memory = self._memory
        if memory is not None and memory.version == version:
            return memory
        k = self.k(txn) or 0
        if self.count(txn) * k > self.in_memory_entries:
            return None
        with self._memory_lock:
            memory = self._memory
            if memory is None or memory.version != version:
                memory = ListsInMemory.read(txn, self.lists, version, k)
                if memory.entries > self.in_memory_entries:
                    return None
                self._memory = memory
            return memory

    def hold_all(self) -> None:
        """Read every list into the held table, if they fit there and are too many to
        hold whole (a warm-up: ~0.3-0.5 s at 100k items)."""
        if self.held is None:
            return
        with self.env.read() as txn:
            k = self.k(txn) or 0
            entries = self.count(txn) * k
            if entries <= self.in_memory_entries or entries > self.held.max_entries:
                return
            memory = ListsInMemory.read(txn, self.lists, self.version(txn), k)
            self.held.hold_all(txn, memory.version, k, (memory.rows, memory.sims))

    def put(self, txn: Any, owner: int, rows: np.ndarray, sims: np.ndarray) -> None:
        txn.put(row_key(owner), encode_list(rows, sims), db=self.lists)
        self._changed(txn)

    def delete(self, txn: Any, owner: int) -> None:
        txn.delete(row_key(owner), db=self.lists)
        self._changed(txn)

    def iter_lists(self, txn: Any) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Every stored list, by owner row."""
        for key, raw in txn.cursor(db=self.lists):
            rows, sims = decode_list(raw)
            yield row_from_key(key), rows, sims

    def count(self, txn: Any) -> int:
        return int(txn.stat(self.lists)["entries"])

    # -- the reverse index ----------------------------------------------------------

    def owners_of(self, txn: Any, row: int) -> np.ndarray:
        """The rows whose lists hold ``row`` (sorted)."""
        raw = txn.get(row_key(row), db=self.reverse)
        return _EMPTY if raw is None else np.frombuffer(raw, "<i8").astype(np.int64)

    def put_owners(self, txn: Any, row: int, owners: np.ndarray) -> None:
        if len(owners):
            owners = np.ascontiguousarray(owners, dtype="<i8")
            txn.put(row_key(row), owners.tobytes(), db=self.reverse)
        else:
            txn.delete(row_key(row), db=self.reverse)

    def iter_owners(self, txn: Any) -> Iterator[tuple[int, np.ndarray]]:
        for key, raw in txn.cursor(db=self.reverse):
            yield row_from_key(key), np.frombuffer(raw, "<i8").astype(np.int64)

    def clear(self, txn: Any) -> None:
        """Drop every list, the reverse index and the state (before a rebuild)."""
        txn.drop(self.lists, delete=False)
        txn.drop(self.reverse, delete=False)
        self._changed(txn)
        for key in (b"neighbours_seq", b"neighbours_k", b"neighbours_centre"):
            txn.delete(key, db=self.meta)
