"""Candidate selection, the first stage of ranking: which items a call ranks.

A filter that admits few enough items ranks every one of them (a *small pool*,
cached); otherwise candidates are retrieved from the catalog index around the
user's head direction (and each of their interests, if configured) and the
popular direction, plus the items nearest the user's liked ones by the stored
content-neighbour lists (``NeighbourScorer.candidates``: no search), the most
popular items, or the most recent ones when nothing else is known.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, overload

import numpy as np

from ..storage.lists_in_memory import ListsInMemory
from .catalog import Catalog
from .config import EngineConfig
from .event_columns import EventColumns
from .head_answer import HeadAnswer, head_query, over_fetched, question, wanted
from .scorer_popularity import Popularity
from .seen_filter import fingerprint
from .shared_stats import SharedStatistics
from .user_record import PersonalModel, SeenItems, UserRecord

NO_ROWS = np.zeros(0, np.int64)
Found = tuple[np.ndarray | list[int], str]  # candidate rows and what found them
DEFAULT_INTEREST_QUERIES = 3  # without candidates from the neighbour lists


@dataclass(frozen=True)
class Interest:
    """A centre of interest at ranking time: its direction and its member items."""

    vector: np.ndarray
    members: list[str]
    matrix: np.ndarray  # member vectors, one row each


@dataclass(frozen=True)
class CandidatePool:
    """Items being ranked: their rows, ids and vectors, and the catalog mean that
    closeness is measured from."""

    rows: np.ndarray
    ids: list[str]
    vectors: np.ndarray
    mean: np.ndarray  # the catalog mean (float32)
    # cached across calls (``CandidateSelector.small_pool``): tables over catalog data
    # may be kept with it (a pool retrieved for one call is the user's: nothing is)
    kept: bool = False

    @cached_property
    def units(self) -> np.ndarray:
        """Catalog-centred unit vectors (only the dense neighbour score reads them all)."""
        return centred_units(self.vectors, self.mean)

    @cached_property
    def inverse_norms(self) -> np.ndarray:
        """1 / |vector - mean| of each item (once per pool: pools are cached)."""
        return inverse_norms(self.vectors, self.mean)

    @cached_property
    def scaled_units(self) -> np.ndarray:
        """``(vector - mean) * inverse_norm`` of every item: the centred unit vectors
        as ``units_at`` computes them, bit for bit. Computed whole only for pools that
        are kept (``CandidateSelector.small_pool``: 4 bytes a dimension an item more)."""
        return np.asarray((self.vectors - self.mean) * self.inverse_norms[:, None])

    def units_at(self, at: np.ndarray) -> np.ndarray:
        """The centred unit vectors of the items at positions ``at``; one gather where
        the pool holds them all (a kept pool), else computed for those rows."""
        if "scaled_units" in self.__dict__:
            return np.asarray(self.scaled_units[at])
        return np.asarray((self.vectors[at] - self.mean) * self.inverse_norms[at, None])

    def cosines(self, centre: Centre, at: np.ndarray | None = None) -> np.ndarray:
        """``units @ centre`` computed from ``vectors`` (of the positions ``at``, else of
        every item): a ranking call that also scores ``vectors`` then reads one matrix,
        not two (each pass over a catalog-sized matrix costs about as much as the rest
        of the call, bench/README.md 2026-12-06)."""
        if at is None:
            return centre.cosines(self.vectors, self.inverse_norms)
        return centre.cosines(self.vectors[at], self.inverse_norms[at])

    def cosines_at(self, at: np.ndarray) -> Callable[[Centre], np.ndarray]:
        """``cosines(centre, at)`` for any number of centres, reading those rows once
        (and computing only their norms while the pool's are not computed: a ranking
        call asks for the few candidates that can reach the top n)."""
        vectors = self.vectors[at]
        if "inverse_norms" in self.__dict__:
            inverse = self.inverse_norms[at]
        else:
            inverse = inverse_norms(vectors, self.mean)
        return lambda centre: centre.cosines(vectors, inverse)

    @cached_property
    def row_order(self) -> np.ndarray:
        """Positions that sort ``rows`` (once per pool: pools are cached)."""
        return np.argsort(self.rows, kind="stable")

    @cached_property
    def slot_by_row(self) -> np.ndarray | None:
        """row -> position in the pool, ``len(rows)`` (one past the pool) for a row not
        in it, and one more such entry at the end, which row -1 reads: one array while
        rows are small enough for that (else None: rows are looked up in ``row_order``)."""
        top = int(self.rows.max(initial=-1)) + 1
        if top > max(4 * len(self.rows), 1 << 20):
            return None
        table = np.full(top + 1, len(self.rows), np.int64)
        table[self.rows] = np.arange(len(self.rows))
        return table

    def positions(self, rows: np.ndarray) -> np.ndarray:
        """The pool position of each of ``rows`` (-1: not in the pool)."""
        found = self.slots(rows)
        return np.where(found == len(self.rows), -1, found)

    def list_slots(self, lists: ListsInMemory) -> np.ndarray | None:
        """``slots`` of every entry of the neighbour lists in memory, one row per owner,
        and one more row, of the spare slot only, for an owner without a list; kept
        with a kept pool for as long as the same lists are current (else None)."""
        if not self.kept:
            return None
        found = self.__dict__.get("_list_slots")
        if found is not None and found[0] is lists:
            return np.asarray(found[1])
        spare = np.full((1, lists.rows.shape[1]), len(self.rows), np.int64)
        table = np.vstack([self.slots(lists.rows), spare])
        self.__dict__["_list_slots"] = (lists, table)  # (as a cached_property stores)
        return table

    def slots(self, rows: np.ndarray) -> np.ndarray:
        """The pool position of each of ``rows`` (any shape; -1 allowed), and
        ``len(self.rows)``, one past the pool, for a row not in it: a sparse sum
        adds every entry into one array, those outside the pool into its last slot.

        >>> pool = CandidatePool(np.array([7, 3]), ["a", "b"], np.zeros((2, 1)), np.zeros(1))
        >>> pool.slots(np.array([[3, -1], [7, 9]])).tolist(), pool.positions(np.array([3, 5]))
        ([[1, 2], [0, 2]], array([ 1, -1]))
        """
        outside, table = len(self.rows), self.slot_by_row
        if table is not None:
            # -1, and any row past the table, read its last entry: outside
            if rows.size and int(rows.max()) >= len(table):
                rows = np.minimum(rows, len(table) - 1)
            found: np.ndarray = table[rows]
            return found
        order = self.row_order
        sorted_rows = self.rows[order]
        at = np.minimum(np.searchsorted(sorted_rows, rows), max(outside - 1, 0))
        found = sorted_rows[at] == rows if outside else np.zeros(rows.shape, bool)
        return np.where(found, order[at], outside)

    def ids_at(self, positions: np.ndarray) -> PoolIds:
        """The ids at ``positions``, each looked up when asked (a ranking call names
        its few results: a list of every candidate's id cost more than the ranking)."""
        return PoolIds(self.ids, positions)

    @cached_property
    def position_of(self) -> dict[str, int]:
        return {item_id: k for k, item_id in enumerate(self.ids)}

    @cached_property
    def hashes(self) -> np.ndarray:
        """The fingerprints earlier items are matched by (``seen_filter.fingerprint``;
        once per pool: pools are cached)."""
        return np.array([fingerprint(i) for i in self.ids], np.uint32)

    @cached_property
    def sorted_hashes(self) -> tuple[np.ndarray, np.ndarray]:
        """The positions that sort ``hashes``, and the sorted hashes (once per pool)."""
        order = np.argsort(self.hashes, kind="stable")
        return order, self.hashes[order]

    def unseen(self, logged_rows: np.ndarray, earlier: np.ndarray) -> np.ndarray:
        """Positions of the items not seen: not at ``logged_rows`` (the live rows of the
        items in the user's log; -1 for none) and without one of the ``earlier``
        fingerprints (sorted uint32, ``SeenItems.earlier``)."""
        keep = np.ones(len(self.ids) + 1, bool)  # (+1: the slot of rows not in the pool)
        keep[self.slots(logged_rows)] = False
        if len(earlier):  # a binary search per earlier item in the sorted hashes
            order, hashes = self.sorted_hashes
            first = np.searchsorted(hashes, earlier, "left")
            past = np.searchsorted(hashes, earlier, "right")
            found = first < past
            if found.any():
                first, past = first[found], past[found]
                if int((past - first).max()) == 1:  # (a fingerprint shared in the pool: rare)
                    keep[order[first]] = False
                else:
                    for start, stop in zip(first.tolist(), past.tolist(), strict=True):
                        keep[order[start:stop]] = False
        return np.flatnonzero(keep[:-1])


class PoolIds(Sequence[str]):
    """The item ids at some positions of a pool, read on demand.

    >>> ids = PoolIds(["a", "b", "c"], np.array([2, 0]))
    >>> len(ids), ids[0], list(ids), ids[-1:]
    (2, 'c', ['c', 'a'], ['a'])
    """

    def __init__(self, ids: list[str], positions: np.ndarray) -> None:
        self._ids = ids
        self._positions = positions

    def __len__(self) -> int:
        return len(self._positions)

    @overload
    def __getitem__(self, k: int) -> str: ...

    @overload
    def __getitem__(self, k: slice) -> list[str]: ...

    def __getitem__(self, k: int | slice) -> str | list[str]:
        if isinstance(k, slice):
            return [self._ids[p] for p in self._positions[k].tolist()]
        return self._ids[int(self._positions[k])]

    def __iter__(self) -> Iterator[str]:
        ids = self._ids
        return (ids[p] for p in self._positions.tolist())


class UserVectors(Mapping[str, np.ndarray]):
    """The vectors of a user's items, read on first use: a ranking call that needs
    only their rows (the neighbour lists) never reads them."""

    def __init__(self, load: Callable[[], dict[str, np.ndarray]]) -> None:
        self._load = load
        self._vectors: dict[str, np.ndarray] | None = None

    @property
    def loaded(self) -> bool:
        """Whether the vectors were read (a caller with other ways to get a few of them
        uses these only then)."""
        return self._vectors is not None

    @property
    def vectors(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            self._vectors = self._load()
        return self._vectors

    def __getitem__(self, item_id: str) -> np.ndarray:
        return self.vectors[item_id]

    def __contains__(self, item_id: object) -> bool:
        # (Mapping's own asks for the item and catches KeyError: 2.5x the time, timeit)
        return item_id in self.vectors

    def __iter__(self) -> Iterator[str]:
        return iter(self.vectors)

    def __len__(self) -> int:
        return len(self.vectors)


class CandidateSelector:
    """Pools of candidates for a ranking call (``rank`` in ``recommender.py``)."""

    def __init__(
        self,
        catalog: Catalog,
        shared: SharedStatistics,
        config: EngineConfig,
        popularity: Popularity,
    ) -> None:
        self.catalog = catalog
        self.env = catalog.env
        self.store = catalog.store
        self.shared = shared
        self.config = config
        self.popularity = popularity
        self._pools: dict[tuple[int, bytes], CandidatePool] = {}
        self._pools_lock = threading.Lock()
        self._last_pool: tuple[int, np.ndarray, CandidatePool] | None = None

    def user_vectors(self, record: UserRecord | None) -> dict[str, np.ndarray]:
        """The vectors of the catalog items in the user's events (deleted ones: absent),
        from the in-memory index once it caught up with LMDB."""
        if record is None:
            return {}
        found = self.catalog.keeper.item_vectors(record.item_ids())
        if found is not None:
            return found
        with self.env.read() as txn:
            return self.catalog.vectors_of(txn, record.item_ids())

    def lazy_user_vectors(self, record: UserRecord | None) -> UserVectors:
        return UserVectors(lambda: self.user_vectors(record))

    def ref_rows(self, log: EventColumns) -> np.ndarray:
        """The live row of each ref of ``log`` (-1: a query, or an item that left the
        catalog), as of a catch-up of the index with LMDB."""
        keeper = self.catalog.keeper
        keeper.sync()
        # (the usual log has no search: its refs are all items)
        items = np.flatnonzero(~log.is_query) if log.is_query.any() else None
        rows = keeper.live_rows(
            log.refs if items is None else [log.refs[i] for i in items.tolist()]
        )
        if items is None:
            return rows
        out = np.full(len(log.refs), -1, np.int64)
        out[items] = rows
        return out

    def interest_vectors(
        self, record: UserRecord, model: PersonalModel, vectors: Mapping[str, np.ndarray]
    ) -> list[Interest]:
        """The user's interests, heaviest first, with their members' vectors."""
        members = [
            record.event_refs(idx) for _w, idx in sorted(model.interests, key=lambda g: -g[0])
        ]
        # (the dict itself: a lookup through the lazy mapping's methods costs ~3x)
        held = vectors.vectors if isinstance(vectors, UserVectors) else vectors
        out = []
        for group in members:
            present = [m for m in group if m in held]
            if present:
                matrix = np.stack([held[m] for m in present])
                total = matrix.sum(axis=0)
                out.append(Interest(total / (np.linalg.norm(total) + 1e-12), present, matrix))
        return out

    def small_pool(self, expr: Any) -> CandidatePool | None:
        """Every item the filter admits, when few enough to rank exhaustively.

        Cached per (catalog mean, set of rows): a row's item and vector never
        change (re-embedding an item gives it a new row), so a cached pool is
        exact for as long as the same rows are admitted.
        """
        keeper = self.catalog.keeper
        rows = keeper.small_pool(expr, self.config.ranking.full_rank_limit)
        if rows is None:
            return None
        seq, last = self.catalog.prior_seq(), self._last_pool
        # the index answers a filter it saw before with the same array while nothing
        # changed: then no key of every row is built and hashed (8.5 us at 3,883 rows)
        if last is not None and last[0] == seq and last[1] is rows:
            return last[2]
        key = (seq, rows.tobytes())
        cached = self._pools.get(key)
        if cached is None:
            cached = replace(self.pool_of([int(r) for r in rows]), kept=True)
            cached.scaled_units  # noqa: B018 (computed once for the pool's many calls)
            with self._pools_lock:  # SDK users may rank from several threads
                if len(self._pools) >= 8:
                    self._pools.pop(next(iter(self._pools)))
                self._pools[key] = cached
        self._last_pool = (seq, rows, cached)  # holds ``rows``: its id is not reused
        return cached

    def pool_of(self, rows: Sequence[int]) -> CandidatePool:
        """Ids, vectors and centred unit vectors of these rows (rows deleted since: dropped).

        Ids and vectors come from the in-memory index where it holds the row (as of
        its last catch-up), else from LMDB."""
        dim = self.catalog.keeper.dimension
        known, known_ids, indexed = self.catalog.keeper.indexed_items(rows)
        mean = self.catalog.prior().mean32
        if known.all():  # the usual case: every row is in the index
            return CandidatePool(np.asarray(rows, np.int64), known_ids, indexed, mean)
        next_known = iter(known_ids)
        kept: list[int] = []
        ids: list[str] = []
        from_lmdb: dict[int, np.ndarray] = {}  # position in the pool -> vector
        with self.env.read() as txn:
            for pos, row in enumerate(rows):
                if known[pos]:
                    item_id: str | None = next(next_known)
                else:
                    hit = self.store.get_vector(txn, row, dim)
                    item_id = None if hit is None else hit[0]
                    if hit is not None:
                        from_lmdb[len(kept)] = hit[1]
                if item_id is not None:
                    kept.append(pos)
                    ids.append(item_id)
        matrix = np.empty((len(kept), dim), np.float32)
        matrix[known[kept]] = indexed
        for k, vector in from_lmdb.items():
            matrix[k] = vector
        return CandidatePool(np.asarray(rows, np.int64)[kept], ids, matrix, mean)

    def retrieve(
        self,
        model: PersonalModel | None,
        interests: list[Interest],
        expr: Any,
        seen: SeenItems,
        n: int,
        also: Sequence[str] = (),
        near: np.ndarray = NO_ROWS,
        kept: HeadAnswer | None = None,
    ) -> tuple[np.ndarray, list[str]]:
        """Candidate rows (and what retrieved each) from a catalog too big to score whole:
        around the head, each interest and the popular direction, plus ``near`` (rows
        of items like the user's, from the content-neighbour lists), the top popular
        and ``also`` (items liked together with the user's, best first). A row found
        twice keeps its first finder, in that order. ``kept``: the record's head
        answer, used instead of searching while it answers the same search
        (``head_answer.py``)."""
        cfg = self.config.ranking
        keeper = self.catalog.keeper
        want = wanted(cfg.candidates, n)
        found: list[Found] = []  # rows and what found them, in order
        queries: list[tuple[np.ndarray, str, int]] = []
        if model is not None:
            queries.append((head_query(model.weights), "personal", want))
            for interest in interests[: interest_queries(self.config)]:
                queries.append((interest.vector, "interest", want // 2))

        sizes = [over_fetched(k, len(seen)) for _vec, _why, k in queries]
        if kept is not None and model is not None and expr is None:
            keeper.sync()  # (the index at the current catalog version)
            index = keeper.index
            rows = kept.rows_for(index.seq, question(queries[0][0], sizes[0], index))
            if rows is not None:  # the head's answer as kept: the others are searched
                found.append((rows, "personal"))
                queries, sizes = queries[1:], sizes[1:]
        if queries:  # (which rows, not their order: IVF need not re-score its codes)
            vectors = np.stack([vec for vec, _why, _k in queries])
            hits = keeper.search_many(vectors, sizes, expr, exact=False)
            for (_vec, why, _k), answer in zip(queries, hits, strict=True):
                found.append(([row for row, _score in answer], why))
        allowed = keeper.allowed_rows(expr)  # sorted

        def admitted(rows: np.ndarray) -> np.ndarray:
            return rows if allowed is None else rows[contains_rows(allowed, rows)]

        found.append((admitted(near), "neighbours"))
        with self.env.read() as txn:
            direction = self.popularity.direction(txn)
            top = self.shared.top(txn, want, keep=lambda i: i not in seen)
        if direction is not None:  # items predicted popular (the top list below has the rest)
            slope = direction[:-1]  # without the intercept
            popular = slope / (np.linalg.norm(slope) + 1e-12)
            # the same query for every user: its answer is kept while nothing changed
            shared = keeper.search_shared(popular, over_fetched(want // 2, len(seen)), expr)
            found.append(([row for row, _score in shared], "popular"))
        for ids, why in ((top, "popular"), ([i for i in also if i not in seen], "collaborative")):
            rows = keeper.live_rows(ids)
            found.append((admitted(rows[rows >= 0]), why))
        if not queries and direction is None and not any(len(rows) for rows, _why in found):
            with self.env.read() as txn:  # no model, no popularity: recent
                seen_rows = {r for i in seen.logged if (r := self.store.row_of(txn, i)) is not None}
            found.append((keeper.most_recent(want, expr, seen_rows), "recent"))
        return first_found(found)


def first_found(found: Sequence[Found]) -> tuple[np.ndarray, list[str]]:
    """Each row once, in the order given, with the name of the first group holding it.

    >>> rows, why = first_found([([4, 2], "a"), ([2, 7, 4], "b")])
    >>> rows.tolist(), why
    ([4, 2, 7], ['a', 'a', 'b'])
    """
    sizes = [len(rows) for rows, _why in found]
    if not sum(sizes):
        return NO_ROWS, []
    rows = np.concatenate([np.asarray(rows, np.int64) for rows, _why in found])
    group = np.repeat(np.arange(len(found)), sizes)
    _unique, first = np.unique(rows, return_index=True)  # (each row's first position)
    first.sort()
    return rows[first], [found[g][1] for g in group[first].tolist()]


def interest_queries(config: EngineConfig) -> int:
    """How many interests retrieval searches around (``RankingConfig.interest_queries``;
    unset: none while the content-neighbour lists give candidates, else 3).

    >>> from ownrank.engine.config import RankingConfig
    >>> unset, no_lists = EngineConfig(), EngineConfig(content_neighbours=0)
    >>> interest_queries(unset), interest_queries(no_lists)
    (0, 3)
    >>> interest_queries(EngineConfig(ranking=RankingConfig(neighbour_candidates=0)))
    3
    >>> interest_queries(EngineConfig(ranking=RankingConfig(interest_queries=1)))
    1
    """
    configured = config.ranking.interest_queries
    if configured is not None:
        return configured
    lists = config.content_neighbours > 0 and config.ranking.neighbour_candidates > 0
    return 0 if lists else DEFAULT_INTEREST_QUERIES


def contains_rows(sorted_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Which of ``rows`` are in ``sorted_rows``.

    >>> contains_rows(np.array([2, 5, 9]), np.array([5, 3, 9, 10])).tolist()
    [True, False, True, False]
    """
    at = np.minimum(np.searchsorted(sorted_rows, rows), max(len(sorted_rows) - 1, 0))
    found: np.ndarray = sorted_rows[at] == rows if len(sorted_rows) else np.zeros(len(rows), bool)
    return found


def inverse_norms(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """1 / |vector - mean| of each row, in float32 (row by row the same bits for any
    set of rows)."""
    norms = np.linalg.norm(np.asarray(vectors, np.float32) - mean, axis=1)
    return np.asarray(1.0 / np.maximum(norms, 1e-12), np.float32)


def centred_units(vectors: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Vectors centred on ``mean`` and scaled to unit length (closeness means alike)."""
    centred = np.asarray(vectors, dtype=np.float32) - mean
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.asarray(centred / np.maximum(norms, 1e-12))


@dataclass(frozen=True)
class Centre:
    """A unit vector to measure catalog-centred cosines to (``CandidatePool.cosines``),
    with what every measure needs: it in float32, and the catalog mean's product with
    it, each computed once."""

    vector: np.ndarray  # float32
    shift: np.float32  # mean @ vector

    @classmethod
    def of(cls, centre: np.ndarray, mean: np.ndarray) -> Centre:
        c = np.asarray(centre, np.float32)
        return cls(c, np.float32(mean @ c))

    def cosines(self, vectors: np.ndarray, inverse_norms: np.ndarray) -> np.ndarray:
        """The cosine of each row of ``vectors``, centred on the mean, with the centre:
        ``(vectors @ c - mean @ c) / |vector - mean|``."""
        return np.asarray((vectors @ self.vector - self.shift) * inverse_norms)
