"""The item catalog: batched upserts, deletes, property updates, semantic search.

Every write is one LMDB transaction (all or nothing). Texts are embedded before
the transaction opens, only for items that are new or whose embedded text
changed (detected by content hash), so an unchanged re-ingest costs no model
time. After a write the in-process index catches up from the change log, so
the writer sees its own change at once and other processes at their next query.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from pydantic import ValidationError

from ..errors import (
    BatchTooLargeError,
    DimensionMismatchError,
    InvalidInputError,
    InvalidItemError,
    ItemNotFoundError,
)
from ..storage.catalog_store import CatalogChange, CatalogMoments, CatalogStore, StoredItem
from .catalog_sync import catalog_changes
from .catalog_wire import DEFAULT_PAGE_SIZE, CatalogPage
from .config import EngineConfig
from .content_neighbours import ContentNeighbours
from .encoder import Encoder
from .filters import Expr, parse_filter
from .index_keeper import IndexKeeper
from .items import Item, is_valid_item_id, too_deep_properties, trusted_item
from .personal_model import CatalogPrior

MAX_RESULTS = 1_000
MAX_QUERY_CHARS = 2_000


@dataclass(frozen=True)
class Hit:
    """One search result: the item and its cosine similarity to the query."""

    item_id: str
    score: float
    item: Item


@dataclass
class UpsertReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    embedded: int = 0


@dataclass
class DeleteReport:
    deleted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


class _StaleRead(Exception):
    """Another writer changed an item's text between our read and our write."""


def _problem_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "item"
        message = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def validate_item(raw: Item | Mapping[str, Any]) -> Item:
    """An ``Item`` from a mapping; raises ``ValueError`` with a readable reason."""
    if isinstance(raw, Item):
        return raw
    if not isinstance(raw, Mapping):
        raise ValueError(f"expected an object, got {type(raw).__name__}")
    try:
        item = Item.model_validate(dict(raw))
    except ValidationError as exc:
        raise ValueError(_problem_text(exc)) from None
    return item


def read_item(
    item_id: str,
    title: str,
    body: str,
    tags: tuple[str, ...],
    properties: dict[str, Any],
    published_at: datetime | None,
) -> tuple[Item, tuple[str, ...]]:
    """The catalog's ``ItemReader`` (``storage.catalog_store``): an ``Item`` from its
    stored fields, without the properties today's rules refuse, and their names.

    No re-validation (``trusted_item``): every stored item was validated when
    written, and this runs for every item that search and recommend decode. Only
    the nesting of properties is checked, as items written by older versions may
    nest deeper than ``MAX_PROPERTY_DEPTH``: one such value would make every
    response naming the item fail to serialize.
    """
    dropped = too_deep_properties(properties)
    if dropped:
        properties = {k: v for k, v in properties.items() if k not in dropped}
    item = trusted_item(
        {
            "id": item_id,
            "title": title,
            "body": body,
            "tags": tags,
            "properties": properties,
            "published_at": published_at,
        }
    )
    return item, tuple(dropped)


def check_item_id(item_id: object) -> str:
    if not is_valid_item_id(item_id):
        raise InvalidInputError(f"invalid item id {item_id!r}", item_id=item_id)
    return str(item_id)


def check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_RESULTS:
        raise InvalidInputError(f"n must be an integer in 1..{MAX_RESULTS}, got {n!r}")
    return n


class Catalog:
    def __init__(
        self,
        store: CatalogStore,
        keeper: IndexKeeper,
        encoder: Encoder,
        config: EngineConfig,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        # items read through the store (by the index keeper and the users' ranking
        # too) are this catalog's ``Item``s, served by today's rules
        store.bind_item_reader(read_item)
        self.env = store.env
        self.keeper = keeper
        self.encoder = encoder
        self.config = config
        self.clock = clock
        # (catalog version, its prior, LMDB's last transaction id when last checked)
        self._prior: tuple[int, CatalogPrior, int] | None = None
        self.neighbours = ContentNeighbours(
            store.env,
            store,
            keeper.dimension,
            config.content_neighbours,
            config.neighbour_sync_budget,
            config.neighbour_lists_in_memory,
            config.neighbour_lists_held,
        )
        # called inside catalog write transactions when an item's vector appears,
        # changes or goes away: (txn, item id, old vector or None, new or None)
        self.vector_listeners: list[
            Callable[[Any, str, np.ndarray | None, np.ndarray | None], None]
        ] = []

    def _vector_changed(
        self, txn: Any, item_id: str, old: np.ndarray | None, new: np.ndarray | None
    ) -> None:
        for listener in self.vector_listeners:
            listener(txn, item_id, old, new)

    # -- reads ------------------------------------------------------------------------

    def count(self) -> int:
        with self.env.read() as txn:
            return self.store.count_items(txn)

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, item_id: object) -> bool:
        if not is_valid_item_id(item_id):
            return False
        with self.env.read() as txn:
            return self.store.get_item(txn, str(item_id)) is not None

    def get(self, item_id: str) -> Item:
        check_item_id(item_id)
        with self.env.read() as txn:
            stored = self.store.get_item(txn, item_id)
        if stored is None:
            raise ItemNotFoundError(item_id)
        item: Item = stored.item  # built by ``read_item``
        return item

    def get_many(self, item_ids: Iterable[str]) -> dict[str, Item]:
        """The items that exist among ``item_ids`` (unknown ids are left out)."""
        out: dict[str, Item] = {}
        with self.env.read() as txn:
            for item_id in item_ids:
                stored = self.store.get_item(txn, check_item_id(item_id))
                if stored is not None:
                    out[item_id] = stored.item
        return out

    # -- writes -------------------------------------------------------------------------

    def upsert(self, items: Iterable[Item | Mapping[str, Any]]) -> UpsertReport:
        """Add or replace items in one transaction; invalid input stores nothing.

        Within a batch a later item with the same id wins. Raises
        ``InvalidItemError`` listing every invalid item.
        """
        batch: dict[str, Item] = {}
        problems: list[tuple[int, str | None, str]] = []
        for pos, raw in enumerate(items):
            try:
                item = validate_item(raw)
            except ValueError as exc:
                raw_id = raw.get("id") if isinstance(raw, Mapping) else None
                problems.append((pos, raw_id if isinstance(raw_id, str) else None, str(exc)))
                continue
            batch.pop(item.id, None)
            batch[item.id] = item
        if problems:
            raise InvalidItemError(problems)
        if len(batch) > self.config.max_upsert_batch:
            raise BatchTooLargeError(
                f"{len(batch)} items in one upsert; the limit is {self.config.max_upsert_batch}"
            )
        if not batch:
            return UpsertReport()
        for _attempt in range(5):
            with self.env.read() as txn:
                known = {i: self.store.get_item(txn, i) for i in batch}
            to_embed = [
                it
                for it in batch.values()
                if known[it.id] is None or known[it.id].content_hash != it.content_hash()  # type: ignore[union-attr]
            ]
            vectors = self._embed(to_embed)
            try:
                report = self._write_upsert(batch, vectors)
            except _StaleRead:
                continue
            report.embedded = len(to_embed)
            self.keeper.sync()
            self.neighbours.catch_up()
            return report
        raise RuntimeError("catalog upsert kept racing with concurrent writers")  # pragma: no cover

    def _embed(self, items: Sequence[Item]) -> dict[str, np.ndarray]:
        if not items:
            return {}
        vectors = self.encoder.encode([it.embedding_text() for it in items])
        if vectors.ndim != 2 or vectors.shape != (len(items), self.keeper.dimension):
            raise DimensionMismatchError(self.keeper.dimension, int(vectors.shape[-1]))
        return {it.id: vectors[i] for i, it in enumerate(items)}

    def _write_upsert(self, batch: dict[str, Item], vectors: dict[str, np.ndarray]) -> UpsertReport:
        report = UpsertReport()
        change = CatalogChange()
        added: list[np.ndarray] = []
        removed: list[np.ndarray] = []
        now = self.clock()
        dim = self.keeper.dimension
        with self.env.write() as txn:
            for item in batch.values():
                old = self.store.get_item(txn, item.id)
                digest = item.content_hash()
                if old is not None and old.content_hash == digest:
                    # a record with properties dropped on reading is rewritten clean
                    if old.item == item and not old.dropped_properties:
                        report.unchanged.append(item.id)
                        continue
                    self.store.put_item(txn, StoredItem(item, digest, old.row, old.created_at, now))
                    change.properties.append(old.row)
                    report.updated.append(item.id)
                    continue
                vector = vectors.get(item.id)
                if vector is None:
                    raise _StaleRead(item.id)
                row = self.store.allocate_row(txn)
                self.store.put_vector(txn, row, item.id, vector)
                change.added.append(row)
                added.append(vector)
                if old is None:
                    report.added.append(item.id)
                    created = now
                    self._vector_changed(txn, item.id, None, vector)
                else:
                    old_vector = self.store.delete_vector(txn, old.row, dim)
                    if old_vector is not None:
                        removed.append(old_vector)
                    self._vector_changed(txn, item.id, old_vector, vector)
                    change.removed.append(old.row)
                    report.updated.append(item.id)
                    created = old.created_at
                self.store.put_item(txn, StoredItem(item, digest, row, created, now))
            if change:
                self.store.update_moments(txn, dim, added, removed)
                self.store.record_change(txn, change, self.config.changelog_keep)
        return report

    def update_properties(
        self, item_id: str, properties: Mapping[str, Any], *, replace: bool = False
    ) -> Item:
        """Merge (or with ``replace``, set) an item's properties; never re-embeds."""
        check_item_id(item_id)
        if not isinstance(properties, Mapping):
            raise InvalidInputError("properties must be an object")
        with self.env.write() as txn:
            old = self.store.get_item(txn, item_id)
            if old is None:
                raise ItemNotFoundError(item_id)
            merged = dict(properties) if replace else {**old.item.properties, **properties}
            try:
                item = Item.model_validate({**old.item.model_dump(), "properties": merged})
            except ValidationError as exc:
                raise InvalidItemError([(0, item_id, _problem_text(exc))]) from None
            if item != old.item or old.dropped_properties:
                self.store.put_item(
                    txn, StoredItem(item, old.content_hash, old.row, old.created_at, self.clock())
                )
                self.store.record_change(
                    txn, CatalogChange(properties=[old.row]), self.config.changelog_keep
                )
        self.keeper.sync()
        self.neighbours.catch_up()
        return item

    def delete(self, item_ids: Iterable[str]) -> DeleteReport:
        """Delete items in one transaction; unknown ids are reported as missing."""
        ids = list(dict.fromkeys(check_item_id(i) for i in item_ids))
        if len(ids) > self.config.max_upsert_batch:
            raise BatchTooLargeError(
                f"{len(ids)} ids in one delete; the limit is {self.config.max_upsert_batch}"
            )
        report = DeleteReport()
        change = CatalogChange()
        removed: list[np.ndarray] = []
        dim = self.keeper.dimension
        with self.env.write() as txn:
            for item_id in ids:
                old = self.store.get_item(txn, item_id)
                if old is None:
                    report.missing.append(item_id)
                    continue
                self.store.delete_item(txn, item_id)
                old_vector = self.store.delete_vector(txn, old.row, dim)
                if old_vector is not None:
                    removed.append(old_vector)
                self._vector_changed(txn, item_id, old_vector, None)
                change.removed.append(old.row)
                report.deleted.append(item_id)
            if change:
                self.store.update_moments(txn, dim, [], removed)
                self.store.record_change(txn, change, self.config.changelog_keep)
        self.keeper.sync()
        self.neighbours.catch_up()
        return report

    # -- search -------------------------------------------------------------------------

    def parse_filters(self, filters: Mapping[str, Any] | None) -> Expr | None:
        return None if filters is None else parse_filter(filters)

    def embed_query(self, text: str) -> np.ndarray:
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the query text is empty")
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidInputError(f"the query text exceeds {MAX_QUERY_CHARS} characters")
        vector: np.ndarray = self.encoder.encode([text])[0]
        return vector

    def search(self, text: str, n: int = 10, filters: Mapping[str, Any] | None = None) -> list[Hit]:
        """Items closest in meaning to ``text`` (no personalization)."""
        check_n(n)
        expr = self.parse_filters(filters)
        return self.search_vector(self.embed_query(text), n, expr)

    def similar(
        self, item_id: str, n: int = 10, filters: Mapping[str, Any] | None = None
    ) -> list[Hit]:
        """Items closest in meaning to an item of the catalog (the item itself excluded)."""
        check_n(n)
        expr = self.parse_filters(filters)
        row, vector = self.vector_of(item_id)
        return self.search_vector(vector, n, expr, exclude_rows=[row])

    def vector_of(self, item_id: str) -> tuple[int, np.ndarray]:
        check_item_id(item_id)
        with self.env.read() as txn:
            stored = self.store.get_item(txn, item_id)
            found = (
                self.store.get_vector(txn, stored.row, self.keeper.dimension) if stored else None
            )
        if stored is None or found is None:
            raise ItemNotFoundError(item_id)
        return stored.row, found[1]

    # -- the prior --------------------------------------------------------------------

    def prior(self) -> CatalogPrior:
        """The personal models' catalog-side matrices (from the catalog's moments),
        cached per catalog version (not even the version is read while LMDB has
        committed nothing since the last look: ``LmdbEnvironment.last_txn_id``)."""
        committed, found = self.env.last_txn_id(), self._prior
        if found is not None and found[2] == committed:
            return found[1]
        with self.env.read() as txn:  # (a snapshot at least as new as ``committed``)
            seq = self.store.catalog_seq(txn)
            if found is None or found[0] != seq:
                moments = self.store.get_moments(txn, self.keeper.dimension)
                found = (seq, CatalogPrior(moments, self.config.learner), committed)
            self._prior = (seq, found[1], committed)  # one assignment: never mismatched
        return found[1]

    def moments(self) -> tuple[int, CatalogMoments]:
        """(catalog version, the embeddings' moments): catalog data, what a device
        needs to fit a user's model bit for bit as the server does (docs/sync.md)."""
        with self.env.read() as txn:
            seq = self.store.catalog_seq(txn)
            return seq, self.store.get_moments(txn, self.keeper.dimension)

    def prior_seq(self) -> int:
        """The catalog version of the cached prior (after refreshing it)."""
        self.prior()
        assert self._prior is not None
        return self._prior[0]

    def vectors_of(self, txn: Any, item_ids: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those of ``item_ids`` in the catalog, as of ``txn``."""
        out: dict[str, np.ndarray] = {}
        dim = self.keeper.dimension
        for item_id in item_ids:
            vector = self.store.vector_of(txn, item_id, dim)
            if vector is not None:
                out[item_id] = vector
        return out

    def search_vector(
        self,
        vector: np.ndarray,
        n: int,
        expr: Expr | None = None,
        *,
        exclude_rows: Sequence[int] = (),
    ) -> list[Hit]:
        ranked = self.keeper.search(
            vector, n, expr, np.asarray(exclude_rows, dtype=np.int64) if exclude_rows else None
        )
        hits: list[Hit] = []
        with self.env.read() as txn:
            for row, score in ranked:
                item_id = self.store.item_id_of_row(txn, row)
                stored = self.store.get_item(txn, item_id) if item_id is not None else None
                if stored is not None and stored.row == row:  # never a deleted item
                    hits.append(Hit(stored.item.id, score, stored.item))
        return hits

    # -- device sync (catalog_sync.py) ------------------------------------------------

    def changes(
        self,
        since: str | None = None,
        *,
        page: str | None = None,
        encoding: str = "f32",
        filters: Mapping[str, Any] | None = None,
        newest: int | None = None,
        titles: bool = True,
        body: bool = False,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> CatalogPage:
        """One page of a device's catalog sync: a full sync, or the changes since the
        cursor ``since`` (``catalog_sync.catalog_changes``; docs/sync.md)."""
        return catalog_changes(
            self,
            since,
            page=page,
            encoding=encoding,
            filters=filters,
            newest=newest,
            titles=titles,
            body=body,
            page_size=page_size,
        )
