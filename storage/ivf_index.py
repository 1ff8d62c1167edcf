"""An IVF index over catalog rows: the vectors, unchanged, in inverted lists around
centroids fitted to a sample of the catalog.

A search compares the query with every centroid (exact: a flat quantizer) and scans
the ``nprobe`` nearest lists exactly. Removal deletes a vector at once (FAISS's hash
table maps a row to its list), so there are no tombstones.

A filtered search cannot simply scan more lists: a filter often admits rows that sit
together in a few lists far from the query (a topic, a language). So this index keeps
the list of every row (``list_of``), counts the admitted rows of each list, and scans
the lists that hold admitted rows, nearest centroid first, until it has covered
``FILTERED_BREADTH`` times as many admitted rows as an unfiltered search scans rows;
inside them an ID selector (one bit per row) skips the rows the filter does not admit.
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np
import numpy.typing as npt

from ..errors import DimensionMismatchError

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.float32]

# A filter's admitted rows are usually far from the query (a topic other than the
# query's), where the order of the centroids tells less about the order of the rows,
# so a filtered search covers more rows than an unfiltered one (1x, 2x and 4x were
# compared: bench/README.md, 2026-12-06 evening; index_bench's filtered rows measure
# this setting).
FILTERED_BREADTH = 2


class IvfIndex:
    """A trained ``faiss.IndexIVFFlat`` (inner product) plus each row's list."""

    def __init__(self, index: Any) -> None:
        self.faiss = index
        self.nlist = int(index.nlist)
        self.centroids: Vectors = np.asarray(index.quantizer.reconstruct_n(0, self.nlist))
        self.list_of = np.full(0, -1, dtype=np.int32)  # row -> its list, -1: none
        lists = index.invlists
        for number in range(self.nlist):
            size = lists.list_size(number)
            if size:
                self._note(faiss.rev_swig_ptr(lists.get_ids(number), size), number)

    @classmethod
    def trained(cls, dimension: int, lists: int, training: Vectors | None) -> IvfIndex:
        """An empty index whose ``lists`` centroids are fitted to ``training`` (k-means
        with FAISS's fixed seed: the same sample gives the same centroids).

        >>> sample = np.eye(4, dtype=np.float32)
        >>> index = IvfIndex.trained(4, 2, sample)
        >>> index.add(np.array([7, 9]), sample[:2])
        >>> index.search(sample[:1], 1, nprobe=2)[1].tolist()
        [[7]]
        """
        if training is None or lists < 1:
            raise ValueError("an ivf index needs ivf_lists >= 1 and a training sample")
        sample = np.ascontiguousarray(training, dtype=np.float32)
        if sample.ndim != 2 or sample.shape[1] != dimension:
            raise DimensionMismatchError(dimension, int(sample.shape[-1]))
        lists = min(lists, len(sample))  # k-means needs a point per centroid
        # The centroids are compared exactly (2,048 of them: ~0.8 M multiply-adds a
        # query). An HNSW graph over them, tried first, returned fewer than half of the
        # lists when asked for all of them.
        centroids = faiss.IndexFlatIP(dimension)
        index = faiss.IndexIVFFlat(centroids, dimension, lists, faiss.METRIC_INNER_PRODUCT)
        centroids.this.disown()  # type: ignore[attr-defined]  # the IVF index frees it
        index.own_fields = True
        index.cp.min_points_per_centroid = 1  # a small catalog trains on what it has
        index.train(sample)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        return cls(index)

    @property
    def ntotal(self) -> int:
        return int(self.faiss.ntotal)

    # -- changes -----------------------------------------------------------------------

    def add(self, rows: Rows, vectors: Vectors) -> None:
        """Add vectors (float32, C-contiguous) under these rows, each to its nearest list."""
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        _, nearest = self.faiss.quantizer.search(x, 1)
        lists = np.ascontiguousarray(nearest[:, 0], dtype=np.int64)
        ptr = faiss.swig_ptr
        self.faiss.add_core(len(ids), ptr(x), ptr(ids), ptr(lists))
        self._note(ids, lists)

    def remove(self, rows: Rows) -> None:
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        # the hash table's removal takes an array selector only
        self.faiss.remove_ids(faiss.IDSelectorArray(ids.size, faiss.swig_ptr(ids)))
        known = ids[(ids >= 0) & (ids < self.list_of.size)]
        self.list_of[known] = -1

    def _note(self, rows: npt.NDArray[np.int64], lists: npt.NDArray[np.int64] | int) -> None:
        """Record that ``rows`` are now in ``lists``."""
        top = int(rows.max()) + 1 if rows.size else 0
        if top > self.list_of.size:
            grown = np.full(max(top, 2 * self.list_of.size), -1, dtype=np.int32)
            grown[: self.list_of.size] = self.list_of
            self.list_of = grown
        self.list_of[rows] = lists

    def labels(self) -> Rows:
        """Every row in the index, ascending."""
        return np.flatnonzero(self.list_of >= 0).astype(np.int64)

    # -- queries -----------------------------------------------------------------------

    def search(self, queries: Vectors, k: int, *, nprobe: int) -> tuple[Scores, Rows]:
        """The best ``k`` rows per query among the ``nprobe`` nearest lists."""
        params = faiss.SearchParametersIVF(nprobe=min(nprobe, self.nlist))  # type: ignore[call-arg]
        scores, rows = self.faiss.search(queries, k, params=params)
        return scores, rows

    def search_within(
        self, queries: Vectors, k: int, allowed: Rows, *, nprobe: int
    ) -> tuple[Scores, Rows]:
        """The best ``k`` of the ``allowed`` rows per query, scanning the lists that hold
        admitted rows, nearest first, until they cover ``FILTERED_BREADTH`` times
        ``nprobe`` lists' worth of rows (every admitted row when there are fewer: then
        the answer is exact)."""
        allowed = np.asarray(allowed, dtype=np.int64)
        allowed = allowed[(allowed >= 0) & (allowed < self.list_of.size)]
        lists = self.list_of[allowed]
        allowed = allowed[lists >= 0]
        nq = len(queries)
        if allowed.size == 0:
            return np.full((nq, k), -np.inf, np.float32), np.full((nq, k), -1, np.int64)
        counts = np.bincount(lists[lists >= 0], minlength=self.nlist)
        holding = np.flatnonzero(counts)
        closeness = queries @ self.centroids[holding].T
        order = np.argsort(-closeness, axis=1, kind="stable")
        covered = np.cumsum(counts[holding][order], axis=1)
        want = max(k, FILTERED_BREADTH * nprobe * self.ntotal // self.nlist)
        width = np.minimum((covered < want).sum(axis=1) + 1, holding.size)
        widest = int(width.max())
        probe = np.ascontiguousarray(holding[order[:, :widest]], dtype=np.int64)
        probe[np.arange(widest)[None, :] >= width[:, None]] = -1  # -1: no list
        probe_scores = np.ascontiguousarray(np.take_along_axis(closeness, order[:, :widest], 1))
        bits = _row_bitmap(allowed)
        selector = faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits))
        params = faiss.SearchParametersIVF(nprobe=widest, sel=selector)  # type: ignore[call-arg]
        x = np.ascontiguousarray(queries, dtype=np.float32)
        scores = np.empty((nq, k), np.float32)
        rows = np.empty((nq, k), np.int64)
        ptr = faiss.swig_ptr
        self.faiss.search_preassigned_c(
            nq, ptr(x), k, ptr(probe), ptr(probe_scores), ptr(scores), ptr(rows), False, params
        )
        del bits  # the selector reads these bits until the search returns
        return scores, rows


def _row_bitmap(rows: Rows) -> npt.NDArray[np.uint8]:
    """One bit per row, set for ``rows`` (FAISS's ``IDSelectorBitmap`` layout: row r is
    bit r % 8 of byte r // 8): a membership test is one lookup, which matters because
    a scan tests every row of the lists it visits.

    >>> _row_bitmap(np.array([0, 9])).tolist()
    [1, 2]
    """
    bits = np.zeros(int(rows.max()) + 1 if rows.size else 1, dtype=bool)
    bits[rows] = True
    return np.packbits(bits, bitorder="little")
