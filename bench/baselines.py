"""Reference recommenders for the chrono20 / cold20 protocols (interface:
:class:`Recommender`): they validate the protocol code against the README's peer
numbers and give ownrank honest baselines. Exclusion of a user's own training items is
left to :func:`protocols.evaluate`; hyperparameters are chosen with :func:`tune` on
:func:`protocols.inner_validation`, never on test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]
from eval_data import IntArray
from protocols import FloatArray, Split, evaluate_scores, inner_validation

P = TypeVar("P")
TUNE_METRIC = "NDCG@10"


def row_matrix(items: IntArray, columns: IntArray) -> sp.csr_matrix:
    """One binary row over ``columns`` (sorted ids); items not among them are dropped."""
    items = np.asarray(items, dtype=np.int64)
    pos = np.minimum(np.searchsorted(columns, items), max(len(columns) - 1, 0))
    cols = np.unique(pos[columns[pos] == items]) if len(columns) else pos[:0]
    data = np.ones(len(cols), dtype=np.float32)
    return sp.csr_matrix((data, (np.zeros(len(cols), dtype=np.int64), cols)), (1, len(columns)))


class Recommender:
    """A model of the benchmarks: :meth:`fit` on a split's training positives (timed:
    ``fit_seconds``), :meth:`scores` (one row per user, one column per
    ``split.candidates``; unknown items score 0) and :meth:`update_user`, the scores
    after a user's history became ``items``, done as the model would online
    (``update_method`` says how; ``update_is_refit``: by a whole refit).

    The binary training matrix ``x`` has rows ``split.train_users`` and columns
    ``items``. A subclass implements :meth:`train` and either :meth:`history_scores`
    (item-item models) or :meth:`item_scores`."""

    name = "base"
    update_method = "history row x item-item matrix (sparse, no refit)"
    update_is_refit = False

    def __init__(self) -> None:
        self._split: Split | None = None
        self.x: sp.csr_matrix = sp.csr_matrix((0, 0))
        self.items: IntArray = np.zeros(0, dtype=np.int64)
        self.fit_seconds = 0.0

    @property
    def split(self) -> Split:
        if self._split is None:
            raise RuntimeError(f"{self.name}: call fit() first")
        return self._split

    def use_matrix(self, split: Split, x: sp.csr_matrix) -> None:
        """Take ``x`` (over ``split.train_items``) as the training data, untrained."""
        self._split, self.items, self.x = split, split.train_items, x

    def fit(self, split: Split) -> Self:
        start = time.perf_counter()
        self.use_matrix(split, split.train_matrix())
        self.train()
        self.fit_seconds = time.perf_counter() - start
        return self

    def train(self) -> None:
        raise NotImplementedError

    def history_scores(self, x: sp.csr_matrix) -> FloatArray:
        """Scores over ``items`` for histories given as binary rows over ``items``."""
        raise NotImplementedError

    def item_scores(self, rows: IntArray) -> FloatArray:
        """Scores over ``items`` for rows of ``x``."""
        return self.history_scores(self.x[rows])

    def scores(self, users: IntArray) -> FloatArray:
        rows = self.split.user_rows(np.asarray(users, dtype=np.int64))
        return self.split.to_candidates(self.item_scores(rows), self.items)

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        """Online update: the new history row through the fitted model, no refit."""
        scores = self.history_scores(row_matrix(items, self.items))
        out: FloatArray = self.split.to_candidates(scores, self.items)[0]
        return out


class MostPop(Recommender):
    """Number of training positives per item, the same for every user."""

    name = "MostPop"
    update_method = "none: the list does not depend on the user"

    def train(self) -> None:
        self.pop = np.asarray(self.x.sum(axis=0), dtype=np.float64).ravel()

    def item_scores(self, rows: IntArray) -> FloatArray:
        return np.tile(self.pop, (len(rows), 1))

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        """A history change alters no user's list (counts change globally)."""
        out: FloatArray = self.scores(np.array([user], dtype=np.int64))[0]
        return out


class RandomScores(Recommender):
    """Uniform random scores over the candidates (the floor any model must beat)."""

    name = "Random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def train(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def scores(self, users: IntArray) -> FloatArray:
        return self._rng.random((len(users), len(self.split.candidates)))


class ItemKNN(Recommender):
    """Cosine item-kNN: score(u, j) = sum of sim(i, j) over the user's items i that are
    among the ``k`` nearest neighbours of the candidate j.

    Pruning the candidate's neighbourhood (classic item-kNN) rather than each source
    item's (implicit's CosineRecommender) matters: only the former reproduces the
    README's peer numbers. ``sim``'s column j holds j's ``k`` neighbours, so
    ``X @ sim`` sums over them.
    """

    name = "ItemKNN"

    def __init__(self, k: int = 100) -> None:
        super().__init__()
        self.k = k

    def train(self) -> None:
        """Dense cosine of the binary columns, zero diagonal (an item is not its own
        neighbour), kept whole in ``full`` for :meth:`with_k`."""
        co = (self.x.T @ self.x).toarray().astype(np.float64)
        norms = np.sqrt(np.diag(co))
        norms[norms == 0] = 1.0
        self.full: npt.NDArray[np.float64] = co / norms[:, None] / norms[None, :]
        np.fill_diagonal(self.full, 0.0)
        self.prune()

    def prune(self) -> None:
        """``sim``: each row of ``full`` cut to its ``k`` largest entries, transposed."""
        n, k = self.full.shape[0], self.k
        if k >= n:
            self.sim = sp.csr_matrix(self.full).T.tocsr()
            return
        cols = np.argpartition(-self.full, k - 1, axis=1)[:, :k]
        vals = np.take_along_axis(self.full, cols, axis=1)
        rows = np.repeat(np.arange(n), k)
        top = sp.csr_matrix((vals.ravel(), (rows, cols.ravel())), shape=self.full.shape)
        self.sim = top.T.tocsr()

    def with_k(self, k: int) -> ItemKNN:
        """Same fitted similarity, other neighbourhood size (cheap tuning)."""
        other = ItemKNN(k)
        other.use_matrix(self.split, self.x)
        other.full = self.full
        other.prune()
        return other

    def history_scores(self, x: sp.csr_matrix) -> FloatArray:
        return np.asarray((x @ self.sim).toarray())


class EASE(Recommender):
    """EASE (Steck 2019): B = I - P diag(1/diag(P)), P = (X^T X + lambda I)^-1, diag(B) = 0
    (one dense inverse over the training items)."""

    name = "EASE"

    def __init__(self, lam: float = 500.0) -> None:
        super().__init__()
        self.lam = lam

    def train(self) -> None:
        gram = (self.x.T @ self.x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        p = np.linalg.inv(gram)
        b = p / -np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.b = b

    def history_scores(self, x: sp.csr_matrix) -> FloatArray:
        return np.asarray(x @ self.b)


class Centroid(Recommender):
    """Content baseline: cosine between each candidate's embedding and the mean
    embedding of the user's training positives.

    ``item_ids`` (sorted or not) label the rows of ``embeddings``; items without an
    embedding are skipped when averaging and score 0 as candidates.
    """

    update_method = "mean of the history's item vectors"

    def __init__(self, item_ids: IntArray, embeddings: FloatArray, name: str = "Centroid") -> None:
        super().__init__()
        self.name = name
        order = np.argsort(item_ids)
        self._ids = np.asarray(item_ids, dtype=np.int64)[order]
        emb = np.asarray(embeddings, dtype=np.float64)[order]
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        self._emb = emb / np.where(norms == 0, 1.0, norms)

    def _lookup(self, items: IntArray) -> npt.NDArray[np.float64]:
        """Unit embeddings for ``items``; unknown items get zero rows."""
        out = np.zeros((len(items), self._emb.shape[1]))
        pos = np.minimum(np.searchsorted(self._ids, items), len(self._ids) - 1)
        known = self._ids[pos] == items
        out[known] = self._emb[pos[known]]
        return out

    def train(self) -> None:
        self._cand = self._lookup(self.split.candidates)

    def scores(self, users: IntArray) -> FloatArray:
        positives = self.split.train_positives
        centroids = np.zeros((len(users), self._emb.shape[1]))
        for i, u in enumerate(users):
            items = positives.get(int(u))
            if items is not None and len(items):
                centroids[i] = self._lookup(items).mean(axis=0)
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        centroids /= np.where(norms == 0, 1.0, norms)
        return centroids @ self._cand.T

    def update_user(self, user: int, items: IntArray) -> FloatArray:
        """Mean of the history's unit vectors, cosine to the candidates."""
        centroid = self._lookup(np.asarray(items, dtype=np.int64)).mean(axis=0)
        norm = float(np.linalg.norm(centroid))
        out: FloatArray = self._cand @ (centroid / (norm or 1.0))
        return out


@dataclass(frozen=True)
class TuneResult(Generic[P]):
    """Chosen hyperparameter and the inner-validation metric of every candidate."""

    best: P
    table: list[tuple[P, float]]
    seconds: float


def tune_fitted(
    fitted: Callable[[Split], Iterable[tuple[P, Recommender]]],
    split: Split,
    inner: Split | None = None,
) -> TuneResult[P]:
    """Evaluate each (setting, model) that ``fitted(inner)`` yields, fitted on the
    inner training data, and pick the best inner NDCG@10. ``split``'s test is never
    read."""
    start = time.perf_counter()
    inner = inner_validation(split) if inner is None else inner
    table = [(p, evaluate_scores(inner, m.scores)[TUNE_METRIC]) for p, m in fitted(inner)]
    best = max(table, key=lambda row: row[1])[0]
    return TuneResult(best, table, time.perf_counter() - start)


def tune(
    factory: Callable[[P], Recommender],
    grid: Sequence[P],
    split: Split,
    inner: Split | None = None,
) -> TuneResult[P]:
    """One fit of ``factory(p)`` per ``p`` in ``grid``."""
    return tune_fitted(lambda data: ((p, factory(p).fit(data)) for p in grid), split, inner)


# The peer numbers are reproduced with this grid (inner validation picks 400 on
# ml-1m-half, 200 on ml-100k); adding 800 changes test NDCG@10 by noise only.
ITEMKNN_GRID = (10, 20, 50, 100, 200, 400)
EASE_GRID = (50.0, 100.0, 250.0, 500.0, 1000.0, 2000.0, 3000.0, 5000.0)


def tune_itemknn(
    split: Split, grid: Sequence[int] = ITEMKNN_GRID, inner: Split | None = None
) -> TuneResult[int]:
    """Neighbourhood size for :class:`ItemKNN`; the similarity is computed once."""

    def fitted(data: Split) -> Iterable[tuple[int, Recommender]]:
        base = ItemKNN(grid[0]).fit(data)
        return ((k, base.with_k(k)) for k in grid)

    return tune_fitted(fitted, split, inner)


def tune_ease(
    split: Split, grid: Sequence[float] = EASE_GRID, inner: Split | None = None
) -> TuneResult[float]:
    """L2 strength for :class:`EASE`."""
    return tune(EASE, grid, split, inner)
