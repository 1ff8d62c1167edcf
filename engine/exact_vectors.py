"""The float32 vectors of catalog rows as stored, and the exact scores made of them.

Flat, HNSW and float32 IVF indexes hold every vector bit for bit, and hand them out
(``reconstruct``); an IVF index of float16 codes (the default) holds them rounded, so
its rows' vectors are read from LMDB, where every vector is stored as added. A row's
vector never changes (re-embedding an item gives it a new row), so either source
gives the same bits. Every caller holds the index keeper's read lock.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

import faiss
import numpy as np
import numpy.typing as npt

from ..storage.catalog_store import CatalogStore
from ..storage.lmdb_env import LmdbEnvironment
from ..storage.vector_index import VectorIndex, use_faiss_threads

Rows = npt.NDArray[np.int64]
_EXACT_CHUNK = 65_536
_ADMITTED_CACHE_BYTES = 64 * 2**20


class ExactVectors:
    """Exact vectors and scores for an index keeper (``index_keeper.py``)."""

    def __init__(self, env: LmdbEnvironment, store: CatalogStore, dimension: int) -> None:
        self.env = env
        self.store = store
        self.dimension = dimension
        self._admitted: dict[bytes, np.ndarray] = {}
        self._admitted_lock = threading.Lock()

    def of(self, index: VectorIndex, rows: Rows) -> tuple[np.ndarray, np.ndarray]:
        """(which rows are held, the vector of each as stored): from ``index`` where it
        keeps them exactly (``RuntimeError`` if a row is not in it), else from LMDB,
        where a row deleted since the index's last catch-up is not held (its vector:
        zeros; such a row's item is gone, and every caller that reads it drops it)."""
        if index.exact_vectors:
            return np.ones(len(rows), bool), index.reconstruct(rows)
        with self.env.read() as txn:
            return self.store.vectors_at(txn, rows.tolist(), self.dimension)

    def rescored(
        self, index: VectorIndex, query: np.ndarray, found: list[tuple[int, float]]
    ) -> list[tuple[int, float]]:
        """``found`` (an index search's answer) with the scores of the exact vectors,
        best first, ties by row: an index of float16 codes scores their rounded
        values. A row gone from LMDB meanwhile keeps the index's score."""
        if index.exact_vectors or not found:
            return found
        rows = np.array([r for r, _s in found], np.int64)
        known, vectors = self.of(index, rows)
        exact = vectors @ np.asarray(query, np.float32).reshape(-1)
        scores = np.where(known, exact, np.array([s for _r, s in found], np.float32))
        order = np.lexsort((rows, -scores))
        return [(int(rows[i]), float(scores[i])) for i in order]

    def admitted(self, index: VectorIndex, allowed: Rows) -> np.ndarray:
        """The vectors of a filter's rows, cached by the set of rows: a row's vector
        never changes, so the same admitted rows on a later query cost no copy,
        whatever was written since."""
        key = hashlib.blake2b(allowed.tobytes(), digest_size=16).digest()
        found = self._admitted.get(key)
        if found is None:
            found = self.of(index, allowed)[1]
            with self._admitted_lock:
                self._admitted[key] = found
                while sum(v.nbytes for v in self._admitted.values()) > _ADMITTED_CACHE_BYTES:
                    self._admitted.pop(next(iter(self._admitted)))
        return found

    def best_many(
        self, index: VectorIndex, queries: np.ndarray, sizes: Sequence[int], allowed: Rows
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
                self.of(index, chunk)[1],
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
