"""Keeps this process's vector index and property table in step with LMDB.

LMDB is the source of truth; the FAISS index is a derived, per-process cache
persisted beside it (an IVF index is mapped from that file and shared between
processes: ``index_file``). On open the keeper loads the index file and catches it
up from the catalog change log, or rebuilds it from the stored vectors when the
file is missing, unreadable, from another model or store, or too far behind.
Before every query it compares the index's sequence number with the stored
one (one cheap read, none while no transaction committed since the last check)
and replays the changes it missed, so a catalog change made by another process
is visible at the next query and a deleted item is never returned. Rebuilds for
size (another kind, an IVF retrain, HNSW tombstones) are built beside the index in
use and swapped in.

Search strategy (exactness where it matters):
- no filter: the index's own search, over-fetching past excluded rows;
- filter: the property table yields the exact set of matching rows first. A
  flat index searches exactly within them; with HNSW, small sets (at most
  ``exact_filter_limit``) are scored exactly, larger ones use the index's filtered
  search; IVF always does (it scans the lists holding admitted rows, see
  ``storage/ivf_index``); both fall back to exact scoring if they found fewer than ``n``.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, overload

import faiss
import numpy as np
import numpy.typing as npt

from ..storage.catalog_store import CatalogStore, net_change
from ..storage.lmdb_env import LmdbEnvironment
from ..storage.vector_index import IndexType, VectorIndex, set_faiss_threads, use_faiss_threads
from .config import EngineConfig
from .filters import Expr
from .index_file import IndexFile
from .index_sizing import ef_search_for, ivf_lists_for, ivf_nprobe_for, ivf_training_stride
from .locks import ReadWriteLock
from .property_table import PropertyTable, filter_fields

log = logging.getLogger(__name__)

Rows = npt.NDArray[np.int64]
REBUILD_BATCH = 8_192
_EXACT_CHUNK = 65_536
_BATCH_EXACT_LIMIT = 16_384  # admitted rows copied once for a batch of filtered queries
_ADMITTED_CACHE_BYTES = 64 * 2**20
_SHARED_ANSWERS_KEPT = 32


def _enough(rows: Rows, scores: np.ndarray, need: int) -> list[tuple[int, float]] | None:
    """A search's (row, score) pairs, best first, if it found at least ``need`` rows."""
    out = [(r, s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True) if r >= 0]
    return out if len(out) >= need else None


class IndexKeeper:
    def __init__(
        self,
        env: LmdbEnvironment,
        store: CatalogStore,
        config: EngineConfig,
        path: Path,
        *,
        stamp: str,
        dimension: int,
    ) -> None:
        self.env = env
        self.store = store
        self.config = config
        self.path = path
        self.stamp = stamp
        self.dimension = dimension
        self.lock = ReadWriteLock()
        self.table: PropertyTable | None = None
        self.rebuilds = 0
        self._admitted: dict[bytes, np.ndarray] = {}
        self._admitted_lock = threading.Lock()
        # search_shared's answers by (seq, query, k, filter), oldest first
        self._shared_answers: dict[tuple[Any, ...], list[tuple[int, float]]] = {}
        self._shared_lock = threading.Lock()
        self.file = IndexFile(path, stamp, dimension, config)
        self._background = threading.Lock()
        set_faiss_threads(config.index_threads)
        self._current: tuple[int, Any] | None = None  # (txn id, index) of the last check
        self.index = self._open()

    # -- lifecycle ----------------------------------------------------------------------

    def _open(self) -> VectorIndex:
        index = self.file.load()
        with self.env.read() as txn:
            if index is None or not self._catch_up(index, txn):
                index = self._build(txn, index.kind if index else None)
            elif self._rebuild_due(index):
                index = self._build(txn, index.kind)
            return self._remapped(self._sized(index))

    def _sized(self, index: VectorIndex) -> VectorIndex:
        """``index`` with the beam width for its size (``ef_search_for``) and the
        configured IVF lists scanned (not the saved file's)."""
        index.ef_search = ef_search_for(index.ntotal - len(index.dead), self.config.hnsw_ef_search)
        index.nprobe = ivf_nprobe_for(index.ivf_lists, self.config.ivf_nprobe)
        return index

    def _desired_kind(self, live: int, current: IndexType | None) -> IndexType:
        if self.config.index_kind != "auto":
            return self.config.index_kind
        kinds: list[tuple[IndexType, int]] = [
            ("ivf", self.config.ivf_threshold),
            ("hnsw", self.config.hnsw_threshold),
        ]
        for kind, threshold in kinds:
            # hysteresis: an index keeps its kind down to half the threshold
            if live >= (threshold // 2 if current == kind else threshold):
                return kind
        return "flat"

    def _build(self, txn: Any, current: IndexType | None = None) -> VectorIndex:
        """A fresh index of every stored vector, at the snapshot of ``txn``."""
        live = int(txn.stat(self.store.vectors)["entries"])
        kind = self._desired_kind(live, current)
        lists = ivf_lists_for(live) if kind == "ivf" else 0
        index = VectorIndex(
            kind,
            self.dimension,
            hnsw_m=self.config.hnsw_m,
            ef_construction=self.config.hnsw_ef_construction,
            ef_search=ef_search_for(live, self.config.hnsw_ef_search),
            ivf_lists=lists,
            nprobe=ivf_nprobe_for(lists, self.config.ivf_nprobe),
            training=self._training_sample(txn, live, lists) if kind == "ivf" else None,
            trained_on=live,
            ivf_codes=self.config.ivf_codes,
        )
        rows: list[int] = []
        vecs: list[np.ndarray] = []
        for row, _item_id, vec in self.store.iter_vectors(txn, self.dimension):
            rows.append(row)
            vecs.append(vec)
            if len(rows) >= REBUILD_BATCH:
                index.add(np.asarray(rows, np.int64), np.stack(vecs))
                rows, vecs = [], []
        if rows:
            index.add(np.asarray(rows, np.int64), np.stack(vecs))
        index.seq = self.store.catalog_seq(txn)
        self.rebuilds += 1
        log.info("built %s index of %d vectors at catalog seq %d", index.kind, live, index.seq)
        return self._remapped(index)

    def _remapped(self, index: VectorIndex) -> VectorIndex:
        """``index`` written and mapped from the file when due (``IndexFile``)."""
        remapped = self.file.remapped(index)
        return index if remapped is index else self._sized(remapped)

    def _training_sample(self, txn: Any, live: int, lists: int) -> np.ndarray:
        """Every s-th stored vector (``ivf_training_stride``): one snapshot, one sample."""
        stride = ivf_training_stride(live, lists)
        vectors = self.store.iter_vectors(txn, self.dimension)
        sample = [vec for _row, _id, vec in itertools.islice(vectors, 0, None, stride)]
        return np.stack(sample) if sample else np.zeros((1, self.dimension), np.float32)

    def _rebuild_due(self, index: VectorIndex) -> bool:
        """Another kind (or IVF codes), IVF outgrown (2x since training), HNSW past tombstones."""
        wrong_kind = self._desired_kind(index.live_count, index.kind) != index.kind
        wrong_kind |= index.kind == "ivf" and index.ivf_codes != self.config.ivf_codes
        outgrown = index.kind == "ivf" and index.live_count > 2 * index.trained_on
        return wrong_kind or outgrown or index.tombstone_ratio > self.config.tombstone_rebuild_ratio

    def _catch_up(self, index: VectorIndex, txn: Any, *, table: bool = True) -> bool:
        """Replay the changes after ``index.seq`` (into the property table too, unless
        ``table`` is false); False when the log cannot (rebuild)."""
        changes = self.store.changes_since(txn, index.seq)
        if changes is None:
            return False
        if not changes:
            return True
        net = net_change(changes)
        index.remove(net.removed)
        read = [(row, self.store.get_vector(txn, row, self.dimension)) for row in net.added]
        found = [(row, hit[1]) for row, hit in read if hit is not None]
        rows = [row for row, _vector in found]
        if rows:
            index.add(np.asarray(rows, np.int64), np.stack([vector for _row, vector in found]))
        if table and self.table is not None:
            for row in net.removed:
                self.table.remove(row)
            for row in [*rows, *net.properties]:
                self._refresh_table_row(txn, row)
        index.seq = self.store.catalog_seq(txn)
        return True

    def _refresh_table_row(self, txn: Any, row: int) -> None:
        assert self.table is not None
        item_id = self.store.item_id_of_row(txn, row)
        stored = self.store.get_item(txn, item_id) if item_id is not None else None
        if stored is None or stored.row != row:
            self.table.remove(row)
        else:
            self.table.set(row, filter_fields(stored))

    def sync(self) -> None:
        """Catch up with changes committed by this or any other process."""
        index, committed, checked = self.index, self.env.last_txn_id(), self._current
        if checked is not None and checked[0] == committed and checked[1] is index:
            return  # nothing committed since the last check (the same index, by identity)
        with self.env.read() as txn:
            if self.store.catalog_seq(txn) == index.seq:
                self._current = (committed, index)  # (current as of a snapshot >= that)
                return
        with self.lock.writing(), self.env.read() as txn:
            if not self._catch_up(self.index, txn):
                self.index = self._build(txn, self.index.kind)
                self.table = None  # rebuilt lazily at the new index's snapshot
            self.index = self._sized(self.index)
        if self._rebuild_due(self.index):
            self._rebuild_beside()
        self._compact()

    def _rebuild_beside(self) -> None:
        """Rebuild from an LMDB snapshot under no lock while searches go on (a retrain
        takes ~20 s at 1M); under the write lock, catch the new index up (the table
        with the old one, so both keep one sequence number) and swap it in."""
        old = self.index
        if not self._background.acquire(blocking=False):
            return  # another thread is at it
        try:
            with self.env.read() as txn:
                fresh = self._build(txn, old.kind)
            with self.lock.writing(), self.env.read() as txn:
                if self.index is not old or not self._catch_up(fresh, txn, table=False):
                    return  # replaced meanwhile, or too far behind: the next sync decides
                if not self._catch_up(old, txn):
                    self.table = None
                self.index = self._sized(fresh)
        finally:
            self._background.release()

    def _compact(self) -> None:
        """Rewrite and map again a mapped index whose delta has outgrown a quarter of
        its rows while searches go on: the copy and write (seconds at 1M) hold the
        read lock (catch-ups wait); only the swap takes the write lock."""
        index = self.index
        if not index.mapped or not self.file.due(index):
            return
        if not self._background.acquire(blocking=False):
            return  # another thread is at it
        try:
            with self.lock.reading():
                fresh = self._remapped(index) if self.index is index else index
            if fresh is not index:
                with self.lock.writing():
                    if self.index is index and fresh.seq == index.seq:
                        self.index = fresh  # else a catch-up came first: next time
        finally:
            self._background.release()

    def rebuild(self) -> None:
        """Rebuild the index from LMDB now (drops tombstones, re-picks the kind)."""
        with self.lock.writing(), self.env.read() as txn:
            self.index = self._build(txn, self.index.kind)
            self.table = None

    def save(self, force: bool = False) -> bool:
        """Persist the index if it moved since it was loaded or last saved."""
        with self.lock.reading():
            return self.file.save(self.index, force)

    def warm_up(self) -> None:
        """Catch up with LMDB, build the property table and read a mapped index file
        into the page cache now rather than on the first searches (at 20k items the
        table alone takes ~0.4 s; a cold mapped file is faulted in page by page)."""
        self.sync()
        self.property_table()
        self.index.prefetch()

    def property_table(self) -> PropertyTable:
        """Build the property table at exactly the index's snapshot (caller holds no lock)."""
        table = self.table
        while table is None:
            with self.lock.writing(), self.env.read() as txn:
                table = self.table  # another thread may have built it while we waited
                if table is None:
                    if not self._catch_up(self.index, txn):
                        self.index = self._build(txn, self.index.kind)
                    table = PropertyTable()
                    for stored in self.store.iter_items(txn):
                        table.set(stored.row, filter_fields(stored))
                    self.table = table
        return table

    # -- search -------------------------------------------------------------------------

    def search(
        self, query: np.ndarray, n: int, expr: Expr | None = None, exclude: Rows | None = None
    ) -> list[tuple[int, float]]:
        """The best ``n`` live rows for ``query`` as (row, score), best first."""
        self.sync()
        table = self.property_table() if expr is not None else None
        excluded = np.asarray(exclude if exclude is not None else [], dtype=np.int64)
        with self.lock.reading():
            if table is None:
                return self._search_unfiltered(query, n, excluded)
            allowed = table.matching_rows(expr) if expr is not None else table.rows()
            if excluded.size:
                allowed = np.setdiff1d(allowed, excluded, assume_unique=True)
            return self.search_within(query, n, allowed)

    def search_many(
        self,
        queries: np.ndarray,
        sizes: Sequence[int],
        expr: Expr | None = None,
        exact: bool = True,
    ) -> list[list[tuple[int, float]]]:
        """The best ``sizes[i]`` rows for each query; unfiltered queries on the exact
        index go in one matrix product, several times faster than one search each
        (``exact`` False: for the rows only; IVF may score them by its codes)."""
        if expr is not None:
            return self._search_many_within(queries, sizes, expr)
        self.sync()
        with self.lock.reading():
            if self.index.kind in ("flat", "ivf"):  # one call (IVF's scan does not grow with k)
                scores, rows = self.index.search(queries, max(sizes), exact=exact)
                found = list(zip(scores, rows, strict=True))
            else:  # candidates for re-ranking: a beam as wide as the results is enough
                found = []
                start = 0
                for k, same in itertools.groupby(sizes):  # queries of one size in one call
                    end = start + len(list(same))
                    scores, rows = self.index.search(queries[start:end], k, ef_search=k)
                    found += zip(scores, rows, strict=True)
                    start = end
        return [
            [(r, s) for r, s in zip(rows.tolist(), scores.tolist(), strict=True) if r >= 0][:k]
            for (scores, rows), k in zip(found, sizes, strict=True)
        ]

    def search_shared(
        self, query: np.ndarray, k: int, expr: Expr | None = None
    ) -> list[tuple[int, float]]:
        """``search_many`` of one query that is the same for every user (the popular
        direction): an answer is reused while the index, the query, ``k`` and the filter
        are the same (one per filter and ``k`` in use, at most ``_SHARED_ANSWERS_KEPT``).
        The query comes from a shared statistic: when the statistic changes (an erasure
        included), so does the query, and the next search drops every answer to an
        older query or index."""
        self.sync()
        key = (self.index.seq, np.asarray(query, np.float32).tobytes(), k, repr(expr))
        found = self._shared_answers.get(key)
        if found is not None:
            return found
        found = self.search_many(np.asarray(query)[None, :], [k], expr)[0]
        if self.index.seq == key[0]:  # no catch-up in between: the answer is of that seq
            with self._shared_lock:
                for old in [o for o in self._shared_answers if o[:2] != key[:2]]:
                    del self._shared_answers[old]
                self._shared_answers[key] = found
                while len(self._shared_answers) > _SHARED_ANSWERS_KEPT:
                    del self._shared_answers[next(iter(self._shared_answers))]
        return found

    def forget_shared(self) -> None:
        """Drop the answers ``search_shared`` keeps (after an erasure in this process)."""
        with self._shared_lock:
            self._shared_answers.clear()

    def _search_many_within(
        self, queries: np.ndarray, sizes: Sequence[int], expr: Expr
    ) -> list[list[tuple[int, float]]]:
        """Filtered ``search_many``: the filter is evaluated once, and when the exact
        path applies the admitted vectors are read once for all the queries."""
        self.sync()
        table = self.property_table()
        with self.lock.reading():
            allowed = table.matching_rows(expr)
            if allowed.size == 0:
                return [[] for _k in sizes]
            limit = min(self.config.exact_filter_limit, _BATCH_EXACT_LIMIT)
            if self._index_filters(allowed, limit):
                return self._search_many_in_many(np.asarray(queries, np.float32), sizes, allowed)
            vectors = self._admitted_vectors(allowed)
        scores = np.asarray(queries, np.float32).reshape(len(sizes), -1) @ vectors.T
        out = []
        for q, k in enumerate(sizes):
            k = min(k, allowed.size)
            top = np.argpartition(-scores[q], k - 1)[:k]
            order = np.lexsort((allowed[top], -scores[q, top]))  # ties by row, deterministic
            out.append([(int(allowed[top[i]]), float(scores[q, top[i]])) for i in order])
        return out

    def _admitted_vectors(self, allowed: Rows) -> np.ndarray:
        """The vectors of a filter's rows (caller holds the read lock), cached by the set
        of rows: a row's vector never changes (re-embedding gives a new row), so the
        same admitted rows on a later query cost no copy, whatever was written since."""
        key = hashlib.blake2b(allowed.tobytes(), digest_size=16).digest()
        found = self._admitted.get(key)
        if found is None:
            found = self.index.reconstruct(allowed)
            with self._admitted_lock:
                self._admitted[key] = found
                while sum(v.nbytes for v in self._admitted.values()) > _ADMITTED_CACHE_BYTES:
                    self._admitted.pop(next(iter(self._admitted)))
        return found

    def _search_unfiltered(
        self, query: np.ndarray, n: int, excluded: Rows
    ) -> list[tuple[int, float]]:
        skip = set(excluded.tolist())
        want = n + len(skip)
        while True:
            scores, rows = self.index.search(query, want)
            out = [
                (int(r), float(s))
                for r, s in zip(rows[0], scores[0], strict=True)
                if r >= 0 and int(r) not in skip
            ]
            exhausted = want >= self.index.ntotal or rows.shape[1] < want
            if len(out) >= n or exhausted:
                return out[:n]
            want *= 4

    def _search_many_in_many(
        self, queries: np.ndarray, sizes: Sequence[int], allowed: Rows
    ) -> list[list[tuple[int, float]]]:
        """Filtered queries admitting more rows than one copy is worth (caller holds the
        read lock): each query as ``search_within`` would answer it, except that the
        queries the index answers short share one exact pass over the admitted rows (at
        1M items and a 1/12 filter, each exact pass copies ~83k vectors), and IVF takes
        the queries of one size in one call (how far it scans depends on the size)."""
        answers: list[list[tuple[int, float]] | None] = [None] * len(sizes)
        if self.index.kind == "ivf":
            for k in sorted(set(sizes)):
                which = [i for i, size in enumerate(sizes) if size == k]
                scores, rows = self.index.search(queries[which], k, allowed=allowed)
                for i, found_scores, found_rows in zip(which, scores, rows, strict=True):
                    answers[i] = _enough(found_rows, found_scores, min(k, int(allowed.size)))
        else:
            answers = [
                self.search_within(q, k, allowed, exact=False)
                for q, k in zip(queries, sizes, strict=True)
            ]
        short = [i for i, found in enumerate(answers) if found is None]
        exact: dict[int, list[tuple[int, float]]] = {}
        if short:
            found_short = self._exact_many(queries[short], [sizes[i] for i in short], allowed)
            exact = dict(zip(short, found_short, strict=True))
        return [found if found is not None else exact[i] for i, found in enumerate(answers)]

    @overload
    def search_within(
        self, query: np.ndarray, n: int, allowed: Rows, *, exact: Literal[True] = True
    ) -> list[tuple[int, float]]: ...

    @overload
    def search_within(
        self, query: np.ndarray, n: int, allowed: Rows, *, exact: Literal[False]
    ) -> list[tuple[int, float]] | None: ...

    def search_within(
        self, query: np.ndarray, n: int, allowed: Rows, *, exact: bool = True
    ) -> list[tuple[int, float]] | None:
        """The best ``n`` of the ``allowed`` rows; with ``exact=False``, None where the
        answer needs the exact pass (left to the caller)."""
        if allowed.size == 0:
            return []
        need = min(n, int(allowed.size))
        limit = self.config.exact_filter_limit
        if self.index.kind != "flat" and self._index_filters(allowed, limit):
            ef = max(self.index.ef_search, 4 * n)
            scores, rows = self.index.search(query, n, allowed=allowed, ef_search=ef)
            out = _enough(rows[0], scores[0], need)
            if out is not None:
                return out
        elif self.index.kind == "flat":
            scores, rows = self.index.search(query, n, allowed=allowed)
            return [(int(r), float(s)) for r, s in zip(rows[0], scores[0], strict=True) if r >= 0]
        return self._exact(query, n, allowed) if exact else None

    def _index_filters(self, allowed: Rows, limit: int) -> bool:
        """A filter's search goes to the index above ``limit`` admitted rows, and always
        with IVF: its filtered scan is exact up to twice an unfiltered scan's rows, and
        faster than copying the admitted vectors (bench/README.md, 2026-12-06)."""
        return self.index.kind == "ivf" or allowed.size > limit

    def _exact(self, query: np.ndarray, n: int, allowed: Rows) -> list[tuple[int, float]]:
        return self._exact_many(np.asarray(query, np.float32).reshape(1, -1), [n], allowed)[0]

    def _exact_many(
        self, queries: np.ndarray, sizes: Sequence[int], allowed: Rows
    ) -> list[list[tuple[int, float]]]:
        """The exact best ``sizes[i]`` allowed rows for each query, the admitted vectors
        read once (in chunks) for all of them."""
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(len(sizes), -1)
        best_rows: list[list[np.ndarray]] = [[] for _k in sizes]
        best_scores: list[list[np.ndarray]] = [[] for _k in sizes]
        for start in range(0, allowed.size, _EXACT_CHUNK):
            chunk = allowed[start : start + _EXACT_CHUNK]
            # faiss.knn runs on FAISS's own thread count (index_threads), not BLAS's
            use_faiss_threads()
            scores, top = faiss.knn(
                q,
                self.index.reconstruct(chunk),
                min(max(sizes), chunk.size),
                metric=faiss.METRIC_INNER_PRODUCT,
            )
            for i, n in enumerate(sizes):  # each row of top is best first
                keep = min(n, chunk.size)
                best_rows[i].append(chunk[top[i, :keep]])
                best_scores[i].append(scores[i, :keep])
        out = []
        for i, n in enumerate(sizes):
            rows = np.concatenate(best_rows[i])
            scores_i = np.concatenate(best_scores[i])
            order = np.lexsort((rows, -scores_i))[:n]  # ties broken by row, deterministic
            out.append([(int(rows[j]), float(scores_i[j])) for j in order])
        return out

    def allowed_rows(self, expr: Expr | None) -> Rows | None:
        """The rows a filter admits, sorted (None: no filter, everything)."""
        if expr is None:
            return None
        self.sync()
        table = self.property_table()
        with self.lock.reading():
            return table.matching_rows(expr)

    def small_pool(self, expr: Expr | None, limit: int) -> Rows | None:
        """Every live row the filter admits, if there are at most ``limit`` (small
        catalogs and narrow filters are ranked exhaustively, not through retrieval)."""
        self.sync()
        if expr is None and self.index.live_count > limit:
            return None  # no table needed to know there are too many
        table = self.property_table()
        with self.lock.reading():
            rows = table.matching_rows(expr) if expr is not None else table.rows()
            return None if rows.size > limit else rows

    def indexed_items(self, rows: Sequence[int]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(which of ``rows`` the in-memory index holds live, their item ids, their
        vectors), as of the index's last catch-up with LMDB (every search starts with
        one). A row's vector never changes (re-embedding gives a new row) and both index
        kinds store float32 vectors as given: the bits LMDB holds, without a decode per
        row. Rows the index does not hold (tombstoned, or written by another process
        since its last catch-up) are left to the caller."""
        table = self.property_table()
        with self.lock.reading():
            found = table.item_ids_of(rows)
            known = np.asarray(found != None, dtype=bool)  # noqa: E711 (elementwise)
            try:
                vectors = self.index.reconstruct(np.asarray(rows, np.int64)[known])
            except RuntimeError:  # not in the graph after all: let LMDB answer
                known[:] = False
                vectors = np.zeros((0, self.dimension), np.float32)
            ids = found[known].tolist()
        return known, ids, vectors

    def item_vectors(self, item_ids: Iterable[str]) -> dict[str, np.ndarray] | None:
        """The vectors of those of ``item_ids`` that are live, after a catch-up with LMDB,
        from the in-memory index (None: the index changed under us; read LMDB instead)."""
        self.sync()
        table = self.property_table()
        with self.lock.reading():
            found = [(i, r) for i in item_ids if (r := table.row_of(i)) is not None]
            try:
                vectors = self.index.reconstruct(np.array([r for _i, r in found], np.int64))
            except RuntimeError:
                return None
        return {item_id: vectors[k] for k, (item_id, _r) in enumerate(found)}

    def live_rows(self, item_ids: Sequence[str]) -> np.ndarray:
        """Each item's live row as of the last catch-up (-1: not in the catalog then)."""
        table = self.property_table()
        with self.lock.reading():
            return table.row_array(item_ids)

    def most_recent(self, n: int, expr: Expr | None, exclude: set[int]) -> list[int]:
        """Rows of the newest items by publication time (undated items last)."""
        self.sync()
        table = self.property_table()
        with self.lock.reading():
            rows = table.matching_rows(expr) if expr is not None else table.rows()
            col = table.column("published_at")
            stamps = col.dates()
            positions = np.searchsorted(table.rows(), rows)
            when = np.nan_to_num(stamps[positions], nan=-np.inf)
            order = np.lexsort((rows, -when))
            return [int(rows[i]) for i in order if int(rows[i]) not in exclude][:n]

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.save()
