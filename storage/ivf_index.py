"""An IVF index over catalog rows: the vectors in inverted lists around centroids
fitted to a sample of the catalog, as float16 codes (the default) or unchanged
(float32).

A search compares the query with every centroid (exact: a flat quantizer) and scans
the ``nprobe`` nearest lists. The scan is memory-bound: float16 codes halve the bytes
it reads (a k=10 search at 1M items 1.77 against 3.16 ms, at 100k 0.39 against 0.59,
recall@10 the same: ``bench/index_bench.py --kinds ivf ivf-float32``, bench/README.md,
2026-12-07 fifth session). With them the
vectors as added are kept apart, by row (``row_table.py``): a search picks its best
``k`` by the codes and returns them with, and in the order of, their exact scores, and
``reconstruct`` returns the exact vectors. Removal deletes a vector at once (FAISS's
hash table maps a row to its list), so there are no tombstones.

A filtered search cannot simply scan more lists: a filter often admits rows that sit
together in a few lists far from the query (a topic, a language). So this index keeps
the list of every row (``list_of``), counts the admitted rows of each list, and scans
the lists that hold admitted rows, nearest centroid first, until it has covered
``FILTERED_BREADTH`` times as many admitted rows as an unfiltered search scans rows;
inside them an ID selector (one bit per row) skips the rows the filter does not admit.

An index read from its file can be *mapped* (``IvfIndex.mapped``): FAISS maps the
file's inverted lists into memory read-only, so the processes that open the same file
(a service's workers) share one copy of the vectors in the page cache instead of one
private copy each. A mapped index never writes into the file's lists: rows added
later go to a small in-memory *delta* index with the same centroids, rows removed
from the file's lists are skipped through a bitmap, and every search scans both and
merges. ``merged`` writes both back into one ordinary index (to save it).
"""

from __future__ import annotations

from typing import Any, Literal

import faiss
import numpy as np
import numpy.typing as npt

from ..errors import DimensionMismatchError
from .row_table import RowTable

Rows = npt.NDArray[np.int64]
Scores = npt.NDArray[np.float32]
Vectors = npt.NDArray[np.float32]
IvfCodes = Literal["float16", "float32"]

# A filter's admitted rows are usually far from the query (a topic other than the
# query's), where the order of the centroids tells less about the order of the rows,
# so a filtered search covers more rows than an unfiltered one (1x, 2x and 4x were
# compared: bench/README.md, 2026-12-06 evening; index_bench's filtered rows measure
# this setting).
FILTERED_BREADTH = 2


class IvfIndex:
    """A trained FAISS IVF index (inner product; ``IndexIVFScalarQuantizer`` with float16
    codes and the exact vectors in a ``RowTable``, or ``IndexIVFFlat``) plus each row's
    list; with ``mapped``, its lists are a read-only file mapping and changes go to a
    delta."""

    def __init__(self, index: Any, *, mapped: bool = False, table: RowTable | None = None) -> None:
        self.faiss = index  # the base: the file's lists when mapped, else every row
        self.mapped = mapped
        exact = isinstance(index, faiss.IndexIVFFlat)
        if not exact and table is None and index.ntotal:
            raise ValueError("an index of float16 codes needs the table of its vectors")
        # the vectors as added, for an index of float16 codes
        self.table = None if exact else table if table is not None else RowTable(index.d)
        self.nlist = int(index.nlist)
        self.centroids: Vectors = np.asarray(index.quantizer.reconstruct_n(0, self.nlist))
        self.list_of = np.full(0, -1, dtype=np.int32)  # row -> its list, -1: none
        self.in_delta = np.zeros(0, dtype=bool)  # row -> held by the delta (mapped only)
        self._delta: Any = None  # created on the first add to a mapped index
        self._gone = np.zeros(0, dtype=bool)  # rows removed from the base's lists
        self._gone_bits: npt.NDArray[np.uint8] | None = None  # the same, packed (cached)
        self._gone_count = 0
        lists = index.invlists
        for number in range(self.nlist):
            size = lists.list_size(number)
            if size:
                self._note(faiss.rev_swig_ptr(lists.get_ids(number), size), number)

    @property
    def codes(self) -> IvfCodes:
        """How the lists hold vectors: ``float16`` codes or ``float32`` (unchanged)."""
        return "float32" if isinstance(self.faiss, faiss.IndexIVFFlat) else "float16"

    @classmethod
    def trained(
        cls, dimension: int, lists: int, training: Vectors | None, codes: IvfCodes = "float16"
    ) -> IvfIndex:
        """An empty index whose ``lists`` centroids are fitted to ``training`` (k-means
        with FAISS's fixed seed: the same sample gives the same centroids), holding
        vectors as ``codes``.

        >>> sample = np.eye(4, dtype=np.float32)
        >>> index = IvfIndex.trained(4, 2, sample)
        >>> index.add(np.array([7, 9]), sample[:2])
        >>> index.search(sample[:1], 1, nprobe=2)[1].tolist()
        [[7]]
        >>> index.codes, index.reconstruct(np.array([9])).tolist()  # the vector as added
        ('float16', [[0.0, 1.0, 0.0, 0.0]])
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
        index = _ivf(centroids, dimension, lists, codes)
        centroids.this.disown()  # type: ignore[attr-defined]  # the IVF index frees it
        index.own_fields = True
        index.cp.min_points_per_centroid = 1  # a small catalog trains on what it has
        index.train(sample)
        index.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        return cls(index)

    @property
    def ntotal(self) -> int:
        delta = int(self._delta.ntotal) if self._delta is not None else 0
        return int(self.faiss.ntotal) - self._gone_count + delta

    @property
    def delta_count(self) -> int:
        """Rows held by the in-memory delta of a mapped index."""
        return int(self._delta.ntotal) if self._delta is not None else 0

    # -- changes -----------------------------------------------------------------------

    def add(self, rows: Rows, vectors: Vectors) -> None:
        """Add vectors (float32, C-contiguous) under these rows, each to its nearest list
        (of a mapped index: in the delta); a row already held is replaced."""
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        inside = ids[ids < self.list_of.size]
        if (self.list_of[inside] >= 0).any():
            self.remove(inside)
        _, nearest = self.faiss.quantizer.search(x, 1)
        lists = np.ascontiguousarray(nearest[:, 0], dtype=np.int64)
        ptr = faiss.swig_ptr
        target = self._delta_index() if self.mapped else self.faiss
        target.add_core(len(ids), ptr(x), ptr(ids), ptr(lists))
        self._note(ids, lists, in_delta=self.mapped)
        if self.table is not None:
            self.table.put(ids, x)

    def remove(self, rows: Rows) -> None:
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        ids = ids[(ids >= 0) & (ids < self.list_of.size)]
        held = np.unique(ids[self.list_of[ids] >= 0])
        target, ids = self.faiss, held
        if self.mapped:  # the file's lists are read-only: their rows are skipped instead
            self._skip(held[~self.in_delta[held]])
            target, ids = self._delta, held[self.in_delta[held]]
        if ids.size:  # the hash table's removal takes an array selector only
            target.remove_ids(faiss.IDSelectorArray(ids.size, faiss.swig_ptr(ids)))
        self.list_of[held] = -1
        self.in_delta[held] = False
        if self.table is not None:
            self.table.drop(held)

    def _skip(self, rows: Rows) -> None:
        """Mark rows of the mapped lists as removed (every search skips them)."""
        if not rows.size:
            return
        if int(rows.max()) >= self._gone.size:
            grown = np.zeros(self.list_of.size, dtype=bool)
            grown[: self._gone.size] = self._gone
            self._gone = grown
        self._gone[rows] = True
        self._gone_count += int(rows.size)
        self._gone_bits = None

    def _delta_index(self) -> Any:
        """The in-memory index that takes a mapped index's additions (same centroids)."""
        if self._delta is None:
            self._delta = _empty_like(self.faiss, self.centroids)
        return self._delta

    def _note(
        self,
        rows: npt.NDArray[np.int64],
        lists: npt.NDArray[np.int64] | int,
        *,
        in_delta: bool = False,
    ) -> None:
        """Record that ``rows`` are now in ``lists`` (of the delta or of the base)."""
        top = int(rows.max()) + 1 if rows.size else 0
        if top > self.list_of.size:
            size = max(top, 2 * self.list_of.size)
            grown = np.full(size, -1, dtype=np.int32)
            grown[: self.list_of.size] = self.list_of
            self.list_of = grown
            flags = np.zeros(size, dtype=bool)
            flags[: self.in_delta.size] = self.in_delta
            self.in_delta = flags
        self.list_of[rows] = lists
        self.in_delta[rows] = in_delta

    def labels(self) -> Rows:
        """Every row in the index, ascending."""
        return np.flatnonzero(self.list_of >= 0).astype(np.int64)

    def reconstruct(self, rows: Rows) -> Vectors:
        """The vectors of these rows as added, bit for bit (``RuntimeError`` if one is
        not in the index)."""
        ids = np.ascontiguousarray(rows, dtype=np.int64)
        if self.table is not None:
            held, vectors = self.table.get(ids)
            if not held.all():
                raise RuntimeError("a row is not in the index")
            return vectors
        if not self.mapped:
            return np.asarray(self.faiss.reconstruct_batch(ids), dtype=np.float32)
        known = (ids >= 0) & (ids < self.list_of.size)
        if not known.all() or (self.list_of[ids] < 0).any():
            raise RuntimeError("a row is not in the index")
        out = np.empty((ids.size, self.faiss.d), dtype=np.float32)
        delta = self.in_delta[ids]
        if delta.any():
            out[delta] = self._delta.reconstruct_batch(np.ascontiguousarray(ids[delta]))
        if not delta.all():
            out[~delta] = self.faiss.reconstruct_batch(np.ascontiguousarray(ids[~delta]))
        return out

    def merged(self) -> Any:
        """An ordinary in-memory index holding every live row (for a mapped index, the
        file's lists without removed rows plus the delta; this copies the vectors once)."""
        if not self.mapped:
            return self.faiss
        out = _empty_like(self.faiss, self.centroids, row_map=False)
        total = 0
        for source, skip in ((self.faiss, self._gone), (self._delta, None)):
            if source is None:
                continue
            lists = source.invlists
            for number in range(self.nlist):
                size = lists.list_size(number)
                if not size:
                    continue
                ids = faiss.rev_swig_ptr(lists.get_ids(number), size).copy()
                codes = faiss.rev_swig_ptr(lists.get_codes(number), size * lists.code_size)
                codes = codes.reshape(size, lists.code_size)
                if skip is not None:
                    keep = ~_flags(skip, ids)
                    ids, codes = ids[keep], codes[keep]
                if ids.size:
                    codes = np.ascontiguousarray(codes)
                    out.invlists.add_entries(
                        number, ids.size, faiss.swig_ptr(ids), faiss.swig_ptr(codes)
                    )
                    total += int(ids.size)
        out.ntotal = total
        out.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        return out

    # -- queries -----------------------------------------------------------------------

    def search(
        self, queries: Vectors, k: int, *, nprobe: int, exact: bool = True
    ) -> tuple[Scores, Rows]:
        """The best ``k`` rows per query among the ``nprobe`` nearest lists, found by
        their codes; ``exact``: scored by the vectors as added, else by the codes (the
        same rows, for a caller that wants only which ones)."""
        x = np.ascontiguousarray(queries, dtype=np.float32)
        probe_scores, probe = self.faiss.quantizer.search(x, min(nprobe, self.nlist))
        return self._scan(x, k, probe, probe_scores, None, exact)

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
        x = np.ascontiguousarray(queries, dtype=np.float32)
        return self._scan(x, k, probe, probe_scores, allowed)

    def _scan(
        self,
        x: Vectors,
        k: int,
        probe: npt.NDArray[np.int64],
        probe_scores: Scores,
        allowed: Rows | None,
        exact: bool = True,
    ) -> tuple[Scores, Rows]:
        """Scan the ``probe`` lists of each query (of the base, and of a mapped index's
        delta) for its best ``k`` rows (of ``allowed`` when given), best first, ties by
        row: the same rows in any split between base and delta give the same answer.
        ``exact``: re-score them with the vectors as added (when the codes are not)."""
        skip = self._gone if self._gone_count else None
        if skip is not None and allowed is None and self._gone_bits is None:
            self._gone_bits = np.packbits(skip, bitorder="little")  # once per removal
        found = [_scan_lists(self.faiss, x, k, probe, probe_scores, allowed, skip, self._gone_bits)]
        if self._delta is not None and self._delta.ntotal:
            found.append(_scan_lists(self._delta, x, k, probe, probe_scores, allowed, None, None))
        if len(found) == 1 and self.table is not None and exact:
            rows = found[0][1]  # (the k best codes: re-scored and ordered below)
        else:
            scores = np.concatenate([f[0] for f in found], axis=1)
            rows = np.concatenate([f[1] for f in found], axis=1)
            scores[rows < 0] = -np.inf
            order = np.lexsort((rows, -scores), axis=1)[:, :k]
            scores = np.take_along_axis(scores, order, 1)
            rows = np.take_along_axis(rows, order, 1)
            if self.table is None or not exact:
                return scores, rows
        # the best k by their codes, scored by the vectors as added
        held, vectors = self.table.get(rows.ravel())
        rescored = np.einsum("qkd,qd->qk", vectors.reshape(*rows.shape, -1), x)
        rescored = np.where(held.reshape(rows.shape), rescored, -np.inf).astype(np.float32)
        order = np.lexsort((rows, -rescored), axis=1)
        return np.take_along_axis(rescored, order, 1), np.take_along_axis(rows, order, 1)


def _scan_lists(
    index: Any,
    x: Vectors,
    k: int,
    probe: npt.NDArray[np.int64],
    probe_scores: Scores,
    allowed: Rows | None,
    skip: npt.NDArray[np.bool_] | None,
    skip_bits: npt.NDArray[np.uint8] | None,
) -> tuple[Scores, Rows]:
    """FAISS's scan of the given lists of one index, through a one-bit-per-row selector
    of the admitted rows less the skipped ones (no selector when neither applies;
    ``skip_bits``: ``skip`` packed, for an unfiltered scan)."""
    bits: npt.NDArray[np.uint8] | None = None
    selector: Any = None
    if allowed is not None:
        admitted = allowed if skip is None else allowed[~_flags(skip, allowed)]
        bits = _row_bitmap(admitted)
        selector = faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits))
    elif skip is not None:
        bits = skip_bits if skip_bits is not None else np.packbits(skip, bitorder="little")
        selector = faiss.IDSelectorNot(faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits)))
    params = faiss.SearchParametersIVF(nprobe=probe.shape[1], sel=selector)  # type: ignore[call-arg]
    nq = len(x)
    scores = np.empty((nq, k), np.float32)
    rows = np.empty((nq, k), np.int64)
    ptr = faiss.swig_ptr
    probe = np.ascontiguousarray(probe, dtype=np.int64)
    probe_scores = np.ascontiguousarray(probe_scores, dtype=np.float32)
    index.search_preassigned_c(
        nq, ptr(x), k, ptr(probe), ptr(probe_scores), ptr(scores), ptr(rows), False, params
    )
    del bits  # the selector reads these bits until the search returns
    return scores, rows


def _flags(flags: npt.NDArray[np.bool_], rows: Rows) -> npt.NDArray[np.bool_]:
    """``flags[rows]``, False past the end of ``flags``."""
    inside = rows < flags.size
    out = np.zeros(rows.size, dtype=bool)
    out[inside] = flags[rows[inside]]
    return out


def _empty_like(index: Any, centroids: Vectors, *, row_map: bool = True) -> Any:
    """An empty in-memory IVF index with ``index``'s centroids (no training); without
    ``row_map``, the caller fills its lists directly, then sets the hash table (which
    FAISS builds from the lists only when the map's type changes)."""
    quantizer = faiss.IndexFlatIP(index.d)
    quantizer.add(np.ascontiguousarray(centroids))
    codes: IvfCodes = "float32" if isinstance(index, faiss.IndexIVFFlat) else "float16"
    out = _ivf(quantizer, index.d, index.nlist, codes)
    quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF index frees it
    out.own_fields = True
    out.is_trained = True
    if row_map:
        out.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
    return out


def _ivf(quantizer: Any, dimension: int, lists: int, codes: IvfCodes) -> Any:
    """An untrained IVF index (inner product) over ``quantizer`` holding ``codes``;
    float16 codes are of the vectors themselves, not of their residuals from the
    centroid, so the same vector has the same code in any list or index."""
    if codes == "float32":
        return faiss.IndexIVFFlat(quantizer, dimension, lists, faiss.METRIC_INNER_PRODUCT)
    return faiss.IndexIVFScalarQuantizer(
        quantizer,
        dimension,
        lists,
        faiss.ScalarQuantizer.QT_fp16,
        faiss.METRIC_INNER_PRODUCT,
        False,  # by_residual
    )


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
