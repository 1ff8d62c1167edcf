"""How the catalog is laid out in LMDB (format version 1).

Named databases:
- ``meta``: store-wide facts: format version, base-model fingerprint and
  dimension, the catalog sequence number, the next free row number, the
  layout version of the ``popular_rank`` index (``rank_format``);
- ``items``: item id -> msgpack record (texts, properties, publication time,
  content hash, current row, timestamps);
- ``vectors``: row (8-byte big-endian) -> msgpack ``[item id, float32 bytes]``.
  A row is one embedding of one item; it is the label in the FAISS index.
  Re-embedding an item gives it a new row, so an index never holds two
  vectors under one label;
- ``catalog_log``: catalog sequence number -> the rows added, removed and
  re-propertied by that write. Other processes replay it to catch their
  in-memory index up; it holds item rows only, nothing about users.

Every catalog write is one transaction that also bumps ``catalog_seq`` and
appends its log entry, so an index that records the sequence number it
reflects can always tell whether (and how far) it is behind.
"""

from __future__ import annotations

import hashlib
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import msgpack
import numpy as np

from ..errors import DimensionMismatchError, StoreFormatError
from .lmdb_env import LmdbEnvironment

FORMAT_VERSION = 1
ITEM_KEYS_FORMAT = 1  # the item_keys database holds every item (absent: backfilled on open)
_ITEM_KEY = struct.Struct("<Q")


def item_key(item_id: str) -> int:
    """The 64-bit hash an item is named by in the collaborative statistic
    (``engine/co_counts.py``); the ``item_keys`` database maps it back to the id.

    >>> item_key("a") == item_key("a") != item_key("b")
    True
    """
    return int.from_bytes(hashlib.blake2b(item_id.encode(), digest_size=8).digest(), "little")


_ROW = struct.Struct(">Q")


def row_key(row: int) -> bytes:
    return _ROW.pack(row)


def row_from_key(key: bytes) -> int:
    return int(_ROW.unpack(key)[0])


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _to_micros(when: datetime | None) -> int | None:
    """Exact integer microseconds since the epoch (a float would round)."""
    return None if when is None else (when - _EPOCH) // timedelta(microseconds=1)


def _from_micros(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


class ItemFields(Protocol):
    """The fields of an item that the store keeps (read-only view).

    The engine's ``Item`` has them; so does ``ItemRecord``, what the store returns
    when no ``ItemReader`` is bound. The store never needs more than this.
    """

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def body(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def properties(self) -> dict[str, Any]: ...
    @property
    def published_at(self) -> datetime | None: ...


class ItemReader(Protocol):
    """Builds the item a stored record decodes to, as ``(item, dropped_properties)``:
    the names of any properties it leaves out because they break today's rules.

    The catalog (``engine.catalog``) binds one that builds its ``Item`` and applies its
    rules (``CatalogStore.bind_item_reader``); storage itself knows no item rules.
    It runs for every item decoded (search, recommend): keep it cheap.
    """

    def __call__(
        self,
        item_id: str,
        title: str,
        body: str,
        tags: tuple[str, ...],
        properties: dict[str, Any],
        published_at: datetime | None,
    ) -> tuple[ItemFields, tuple[str, ...]]: ...


@dataclass(frozen=True)
class ItemRecord:
    """An item's stored fields as plain data (what an unbound store returns)."""

    id: str
    title: str
    body: str
    tags: tuple[str, ...]
    properties: dict[str, Any]
    published_at: datetime | None


def read_record(
    item_id: str,
    title: str,
    body: str,
    tags: tuple[str, ...],
    properties: dict[str, Any],
    published_at: datetime | None,
) -> tuple[ItemFields, tuple[str, ...]]:
    """The default ``ItemReader``: the fields as stored, nothing left out."""
    return ItemRecord(item_id, title, body, tags, properties, published_at), ()


@dataclass(frozen=True)
class StoredItem:
    """An item as stored, with the bookkeeping the engine needs.

    ``item`` has the ``ItemFields``: it is what the store's ``ItemReader`` built, the
    engine's ``Item`` once the catalog bound its reader (typed ``Any`` so that the
    engine's code reading it through the store gets its ``Item`` without a cast).
    ``dropped_properties`` names the properties the reader left out because they
    break today's rules (written by an older version: nested deeper than the
    engine's ``MAX_PROPERTY_DEPTH``); such an item is served without them.
    """

    item: Any  # ItemFields
    content_hash: str
    row: int
    created_at: float
    updated_at: float
    dropped_properties: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        it: ItemFields = self.item
        return bytes(
            msgpack.packb(
                {
                    "t": it.title,
                    "b": it.body,
                    "g": list(it.tags),
                    "p": it.properties,
                    "at": _to_micros(it.published_at),
                    "h": self.content_hash,
                    "r": self.row,
                    "c": self.created_at,
                    "u": self.updated_at,
                },
                use_bin_type=True,
            )
        )

    @classmethod
    def from_bytes(cls, item_id: str, raw: bytes, read: ItemReader = read_record) -> StoredItem:
        rec = msgpack.unpackb(raw, raw=False)
        item, dropped = _read_fields(item_id, rec, read)
        return cls(item, rec["h"], rec["r"], rec["c"], rec["u"], dropped)

    @staticmethod
    def item_from_bytes(item_id: str, raw: bytes, read: ItemReader = read_record) -> Any:
        """Only the item of ``from_bytes`` (what a result shows), without building the
        stored item around it (a recommend decodes each of its results)."""
        return _read_fields(item_id, msgpack.unpackb(raw, raw=False), read)[0]


def _read_fields(
    item_id: str, rec: dict[str, Any], read: ItemReader
) -> tuple[Any, tuple[str, ...]]:
    """The item of a decoded stored record, and the properties ``read`` dropped."""
    return read(item_id, rec["t"], rec["b"], tuple(rec["g"]), rec["p"], _from_micros(rec["at"]))


def _strings(value: Any) -> Iterator[str]:
    """Every string in ``value`` (nested lists and maps: keys and values).

    >>> list(_strings(["a", {"b": [1, "c"]}, 2.5]))
    ['a', 'b', 'c']
    """
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, inner in value.items():
            yield from _strings(key)
            yield from _strings(inner)
    elif isinstance(value, list | tuple):
        for inner in value:
            yield from _strings(inner)


@dataclass(frozen=True)
class StoreIdentity:
    """Who a store is: a random id, and the base model its embeddings come from."""

    store_id: str
    model_fingerprint: str
    dimension: int
    created_at: float


@dataclass
class CatalogMoments:
    """First and second moments of the catalog's embeddings (catalog data only).

    The personal models use them as the "everything else" a user's taste is
    contrasted with: the Gram matrix stands in for every catalog item as an
    implicit negative, exactly and in O(d^2), with no sampling.
    """

    count: int
    total: np.ndarray  # float64 (d,)
    gram: np.ndarray  # float64 (d, d)

    @classmethod
    def empty(cls, dimension: int) -> CatalogMoments:
        return cls(0, np.zeros(dimension), np.zeros((dimension, dimension)))

    def to_bytes(self) -> bytes:
        return bytes(
            msgpack.packb(
                [self.count, self.total.astype("<f8").tobytes(), self.gram.astype("<f8").tobytes()]
            )
        )

    @classmethod
    def from_bytes(cls, raw: bytes, dimension: int) -> CatalogMoments:
        count, total, gram = msgpack.unpackb(raw)
        return cls(
            int(count),
            np.frombuffer(total, dtype="<f8").copy(),
            np.frombuffer(gram, dtype="<f8").reshape(dimension, dimension).copy(),
        )


@dataclass
class CatalogChange:
    """What one catalog write did to the set of indexed rows."""

    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    properties: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.properties)

    def to_bytes(self) -> bytes:
        return bytes(msgpack.packb({"a": self.added, "d": self.removed, "p": self.properties}))

    @classmethod
    def from_bytes(cls, raw: bytes) -> CatalogChange:
        rec = msgpack.unpackb(raw)
        return cls(list(rec["a"]), list(rec["d"]), list(rec["p"]))


def net_change(changes: list[CatalogChange]) -> CatalogChange:
    """Collapse a run of changes: a row added and removed inside it never touches the index."""
    added: set[int] = set()
    removed: set[int] = set()
    props: set[int] = set()
    for change in changes:
        added.update(change.added)
        removed.update(change.removed)
        props.update(change.properties)
    both = added & removed
    return CatalogChange(
        sorted(added - both), sorted(removed - both), sorted(props - removed - added)
    )


class CatalogStore:
    """Typed access to the catalog's databases inside caller-owned transactions."""

    def __init__(self, env: LmdbEnvironment, read_item: ItemReader = read_record) -> None:
        self.env = env
        self.meta = env.db("meta")
        self.items = env.db("items")
        self.vectors = env.db("vectors")
        self.log = env.db("catalog_log")
        self.item_keys = env.db("item_keys")
        self.read_item = read_item

    def bind_item_reader(self, read_item: ItemReader) -> None:
        """Decode items with ``read_item`` from now on (the catalog binds its own,
        before anything reads an item through this store)."""
        self.read_item = read_item

    # -- store identity ------------------------------------------------------------

    def initialize(self, fingerprint: str, dimension: int) -> StoreIdentity:
        """Record the model on first open; return the identity on record."""
        with self.env.write() as txn:
            version = self._get_meta(txn, "format_version")
            if version is None:
                self._put_meta(txn, "format_version", FORMAT_VERSION)
                self._put_meta(txn, "model_fingerprint", fingerprint)
                self._put_meta(txn, "dimension", dimension)
                self._put_meta(txn, "catalog_seq", 0)
                self._put_meta(txn, "next_row", 1)
                self._put_meta(txn, "created_at", time.time())
                self._put_meta(txn, "store_id", uuid.uuid4().hex)
            elif version != FORMAT_VERSION:
                raise StoreFormatError(
                    f"store format version {version} is not supported (expected {FORMAT_VERSION})"
                )
            return StoreIdentity(
                str(self._get_meta(txn, "store_id")),
                str(self._get_meta(txn, "model_fingerprint")),
                int(self._get_meta(txn, "dimension")),
                float(self._get_meta(txn, "created_at")),
            )

    def get_meta(self, txn: Any, name: str) -> Any:
        """A store-wide fact (msgpack value), None if absent."""
        return self._get_meta(txn, name)

    def put_meta(self, txn: Any, name: str, value: Any) -> None:
        self._put_meta(txn, name, value)

    def _get_meta(self, txn: Any, name: str) -> Any:
        raw = txn.get(name.encode(), db=self.meta)
        return None if raw is None else msgpack.unpackb(raw)

    def _put_meta(self, txn: Any, name: str, value: Any) -> None:
        txn.put(name.encode(), msgpack.packb(value), db=self.meta)

    def catalog_seq(self, txn: Any) -> int:
        return int(self._get_meta(txn, "catalog_seq") or 0)

    # -- items -------------------------------------------------------------------------

    def get_item(self, txn: Any, item_id: str) -> StoredItem | None:
        raw = txn.get(item_id.encode(), db=self.items)
        return None if raw is None else StoredItem.from_bytes(item_id, raw, self.read_item)

    def get_item_only(self, txn: Any, item_id: str) -> Any:
        """``get_item(...).item``, or None (``StoredItem.item_from_bytes``)."""
        raw = txn.get(item_id.encode(), db=self.items)
        return None if raw is None else StoredItem.item_from_bytes(item_id, raw, self.read_item)

    def row_of(self, txn: Any, item_id: str) -> int | None:
        """An item's current row, without building the item (hot paths)."""
        raw = txn.get(item_id.encode(), db=self.items)
        return None if raw is None else int(msgpack.unpackb(raw)["r"])

    def vector_of(self, txn: Any, item_id: str, dimension: int) -> np.ndarray | None:
        row = self.row_of(txn, item_id)
        found = None if row is None else self.get_vector(txn, row, dimension)
        return None if found is None else found[1]

    def has_item(self, txn: Any, item_id: str) -> bool:
        return txn.get(item_id.encode(), db=self.items) is not None

    def put_item(self, txn: Any, stored: StoredItem) -> None:
        item_id = stored.item.id
        txn.put(item_id.encode(), stored.to_bytes(), db=self.items)
        txn.put(_ITEM_KEY.pack(item_key(item_id)), item_id.encode(), db=self.item_keys)

    def delete_item(self, txn: Any, item_id: str) -> None:
        txn.delete(item_id.encode(), db=self.items)
        txn.delete(_ITEM_KEY.pack(item_key(item_id)), db=self.item_keys)

    def ids_of_keys(self, txn: Any, keys: Sequence[int]) -> list[str | None]:
        """The catalog item of each 64-bit item key (None: no such item), one batched
        read."""
        packed = [_ITEM_KEY.pack(k) for k in keys]
        found = dict(txn.cursor(db=self.item_keys).getmulti(packed))
        return [None if (raw := found.get(k)) is None else bytes(raw).decode() for k in packed]

    def backfill_item_keys(self) -> int:
        """Fill ``item_keys`` from the items of a store written before it existed (once);
        return how many items it now holds."""
        with self.env.read() as txn:
            if self._get_meta(txn, "item_keys_format") == ITEM_KEYS_FORMAT:
                return 0
        with self.env.write() as txn:
            txn.drop(self.item_keys, delete=False)
            count = 0
            for key in txn.cursor(db=self.items).iternext(keys=True, values=False):
                item_id = bytes(key).decode()
                txn.put(_ITEM_KEY.pack(item_key(item_id)), bytes(key), db=self.item_keys)
                count += 1
            self._put_meta(txn, "item_keys_format", ITEM_KEYS_FORMAT)
            return count

    def count_items(self, txn: Any) -> int:
        return int(txn.stat(self.items)["entries"])

    def iter_items(self, txn: Any) -> Iterator[StoredItem]:
        read = self.read_item
        for key, raw in txn.cursor(db=self.items):
            yield StoredItem.from_bytes(bytes(key).decode(), raw, read)

    def holds_text(self, txn: Any, needle: bytes) -> bool:
        """Whether some stored item's text (its id, title, body, tags, or a property's
        name or string value) contains ``needle`` verbatim: a scan of every item, for
        audits, which must tell catalog text from user data. Only an item whose stored
        bytes hold the needle is decoded; those bytes also hold numbers, times and
        field names, which a short needle can match without being text."""
        for key, raw in txn.cursor(db=self.items):
            if needle in bytes(key):  # the item's id
                return True
            value = bytes(raw)
            if needle in value:
                rec = msgpack.unpackb(value, raw=False)
                texts = (rec["t"], rec["b"], rec["g"], rec["p"])
                if any(needle in text.encode() for text in _strings(texts)):
                    return True
        return False

    def nonconforming_items(self, txn: Any) -> Iterator[str]:
        """Ids of the stored items whose properties today's rules refuse (written by an
        older version; served without those properties), for operators to fix. The
        rules are the bound ``ItemReader``'s."""
        for stored in self.iter_items(txn):
            if stored.dropped_properties:
                yield stored.item.id

    # -- vectors -----------------------------------------------------------------------

    def allocate_row(self, txn: Any) -> int:
        row = int(self._get_meta(txn, "next_row"))
        self._put_meta(txn, "next_row", row + 1)
        return row

    def put_vector(self, txn: Any, row: int, item_id: str, vector: np.ndarray) -> None:
        payload = msgpack.packb([item_id, np.asarray(vector, dtype="<f4").tobytes()])
        # Rows only grow, so this is always the last key: append=True fills pages
        # instead of splitting them (half the file size for 1.5 KB vectors).
        if not txn.put(row_key(row), payload, db=self.vectors, append=True):
            txn.put(row_key(row), payload, db=self.vectors)

    def get_vector(self, txn: Any, row: int, dimension: int) -> tuple[str, np.ndarray] | None:
        raw = txn.get(row_key(row), db=self.vectors)
        if raw is None:
            return None
        return self._decode_vector(raw, dimension)

    def item_id_of_row(self, txn: Any, row: int) -> str | None:
        raw = txn.get(row_key(row), db=self.vectors)
        return None if raw is None else str(msgpack.unpackb(raw)[0])

    def delete_vector(self, txn: Any, row: int, dimension: int) -> np.ndarray | None:
        """Delete a row; return its vector (for the catalog moments), None if absent."""
        found = self.get_vector(txn, row, dimension)
        txn.delete(row_key(row), db=self.vectors)
        return None if found is None else found[1]

    # -- catalog moments ---------------------------------------------------------------

    def get_moments(self, txn: Any, dimension: int) -> CatalogMoments:
        raw = txn.get(b"moments", db=self.meta)
        if raw is None:
            return CatalogMoments.empty(dimension)
        return CatalogMoments.from_bytes(raw, dimension)

    def update_moments(
        self, txn: Any, dimension: int, added: list[np.ndarray], removed: list[np.ndarray]
    ) -> None:
        """Keep the catalog's vector count, sum and Gram matrix in step with its vectors."""
        if not added and not removed:
            return
        moments = self.get_moments(txn, dimension)
        for sign, vectors in ((1.0, added), (-1.0, removed)):
            if vectors:
                block = np.asarray(vectors, dtype=np.float64)
                moments.count += int(sign) * len(vectors)
                moments.total += sign * block.sum(axis=0)
                moments.gram += sign * (block.T @ block)
        txn.put(b"moments", moments.to_bytes(), db=self.meta)

    def iter_vectors(self, txn: Any, dimension: int) -> Iterator[tuple[int, str, np.ndarray]]:
        for key, raw in txn.cursor(db=self.vectors):
            item_id, vec = self._decode_vector(raw, dimension)
            yield row_from_key(key), item_id, vec

    @staticmethod
    def _decode_vector(raw: bytes, dimension: int) -> tuple[str, np.ndarray]:
        item_id, blob = msgpack.unpackb(raw)
        vec = np.frombuffer(blob, dtype="<f4")
        if vec.shape[0] != dimension:
            raise DimensionMismatchError(dimension, int(vec.shape[0]))
        return str(item_id), vec

    # -- change log -------------------------------------------------------------------

    def record_change(self, txn: Any, change: CatalogChange, keep: int) -> int:
        """Bump the catalog sequence number, log the change, trim the log; return the seq."""
        seq = self.catalog_seq(txn) + 1
        self._put_meta(txn, "catalog_seq", seq)
        txn.put(row_key(seq), change.to_bytes(), db=self.log)
        if seq > keep:
            cursor = txn.cursor(db=self.log)
            oldest_kept = row_key(seq - keep + 1)
            while cursor.first() and cursor.key() < oldest_kept:
                cursor.delete()
        return seq

    def changes_since(self, txn: Any, seq: int) -> list[CatalogChange] | None:
        """The changes after ``seq``, or None when the log no longer reaches back that far."""
        current = self.catalog_seq(txn)
        if seq == current:
            return []
        if seq > current:
            return None
        cursor = txn.cursor(db=self.log)
        if not cursor.set_key(row_key(seq + 1)):
            return None
        changes = []
        for _key, raw in cursor.iternext(keys=True, values=True):
            changes.append(CatalogChange.from_bytes(raw))
        return changes

    def changes_between(self, txn: Any, seq: int, until: int) -> list[CatalogChange] | None:
        """The changes after ``seq`` up to ``until`` (inclusive), in order; None when the
        log no longer reaches back to ``seq`` or ``until`` is not in it (ahead of the
        store, or trimmed). Device catalog sync reads a fixed range page after page."""
        if seq < 0 or seq > until or until > self.catalog_seq(txn):
            return None
        if seq == until:
            return []
        cursor = txn.cursor(db=self.log)
        if not cursor.set_key(row_key(seq + 1)):
            return None
        changes = []
        last = row_key(until)
        for key, raw in cursor.iternext(keys=True, values=True):
            if bytes(key) > last:
                break
            changes.append(CatalogChange.from_bytes(raw))
        return changes

    def vectors_from(
        self, txn: Any, row: int, dimension: int
    ) -> Iterator[tuple[int, str, np.ndarray]]:
        """``iter_vectors`` from ``row`` on (rows ascending): a page of a device sync."""
        cursor = txn.cursor(db=self.vectors)
        if not cursor.set_range(row_key(max(row, 0))):
            return
        for key, raw in cursor.iternext(keys=True, values=True):
            item_id, vec = self._decode_vector(raw, dimension)
            yield row_from_key(key), item_id, vec
