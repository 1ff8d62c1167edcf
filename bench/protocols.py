"""The chrono20 and cold20 protocols of ``../shared/data/README.md``, and their metrics,
following the README in every detail so numbers compare with its peer table.
Positives are ratings >= 4 in both.

chrono20
    A user with >= 5 positives is split: of their positives sorted by (timestamp, item
    id), the last ``max(1, round(0.2 * n))`` are test, the rest train. Other users are
    not evaluated, but their positives are training data (history a deployed model
    would see). Test items without any training positive are dropped (and users left
    without test items). Candidates: every item with a training positive, minus the
    user's own training positives at ranking time. ``train_all`` (what a model may use
    besides positives, e.g. low ratings as negatives): for a split user, every rating
    strictly before the (timestamp, item id) of their first test positive, taken
    before test items are dropped; for other users, all their ratings.

cold20
    ``default_rng(0).choice`` picks ``int(0.2 * n)`` of the ``n`` items with positives
    as "new". Train: all positives on the other items (every user). Test: all
    positives on new items of users with >= 5 training positives. Candidates: the new
    items only; nothing is excluded. ``train_all``: every rating on a non-new item.

Inner validation applies the same function to the training data (training positives
as positives, ``train_all`` as the rating pool), so it never sees test.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import harness
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp  # type: ignore[import-untyped]
from eval_data import IntArray, Ratings

ProtocolName = Literal["chrono20", "cold20"]
FloatArray = npt.NDArray[np.floating]
RankFn = Callable[[int], Sequence[int]]
ScoreFn = Callable[[IntArray], FloatArray]

POSITIVE_THRESHOLD = 4
MIN_POSITIVES = 5
TEST_SHARE = 0.2
COLD_SEED = 0
METRICS = ("NDCG@10", "Recall@10", "HR@10")  # the quality rows, each its own unit


@dataclass(frozen=True, eq=False)
class Split:
    """One train/test split. ``train`` (positives) and ``train_all`` are sorted by
    (user, timestamp, item). Score matrices handed to :func:`evaluate` have one row
    per ``users`` entry (in that order) and one column per ``candidates`` entry."""

    protocol: ProtocolName
    train: Ratings
    train_all: Ratings
    test: dict[int, IntArray]
    candidates: IntArray
    exclude_train: bool
    users: IntArray = field(init=False)
    train_users: IntArray = field(init=False)
    train_items: IntArray = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "users", np.array(sorted(self.test), dtype=np.int64))
        object.__setattr__(self, "train_users", np.unique(self.train.user))
        object.__setattr__(self, "train_items", np.unique(self.train.item))

    @cached_property
    def train_positives(self) -> dict[int, IntArray]:
        """User -> training positive items in (timestamp, item) order."""
        return _group(self.train.item, self.train.user)

    def user_rows(self, users: IntArray) -> IntArray:
        """Row indices of ``users`` in :meth:`train_matrix` (every user must have one)."""
        rows = np.minimum(np.searchsorted(self.train_users, users), len(self.train_users) - 1)
        if not np.array_equal(self.train_users[rows], users):
            raise KeyError("some users have no training positives")
        return rows.astype(np.int64)

    def train_matrix(self) -> sp.csr_matrix:
        """Binary ``train_users x train_items`` matrix of training positives."""
        return _binary_matrix(self.train, self.train_users, self.train_items)

    def to_candidates(self, scores: FloatArray, items: IntArray) -> FloatArray:
        """Re-index score columns from ``items`` to ``candidates``; a candidate the model
        does not know scores 0 (e.g. every new item of cold20 for a pure CF model)."""
        if np.array_equal(items, self.candidates):
            return scores
        out = np.zeros((scores.shape[0], len(self.candidates)), dtype=scores.dtype)
        pos = np.searchsorted(items, self.candidates)
        pos = np.minimum(pos, max(len(items) - 1, 0))
        known = items[pos] == self.candidates if len(items) else np.zeros(0, bool)
        out[:, known] = scores[:, pos[known]]
        return out

    @cached_property
    def test_matrix(self) -> sp.csr_matrix:
        """Binary ``users x candidates`` matrix of the test positives."""
        users = np.repeat(self.users, [len(self.test[int(u)]) for u in self.users])
        items = np.concatenate([self.test[int(u)] for u in self.users] or [np.zeros(0, int)])
        pairs = Ratings(users, items, np.ones_like(users), np.zeros_like(users))
        return _binary_matrix(pairs, self.users, self.candidates)

    @cached_property
    def exclude_matrix(self) -> sp.csr_matrix:
        """Binary ``users x candidates`` matrix of what ranking excludes (training
        positives with ``exclude_train``, else nothing)."""
        if not self.exclude_train:
            return sp.csr_matrix((len(self.users), len(self.candidates)), dtype=np.float32)
        return _binary_matrix(self.train, self.users, self.candidates)

    def summary(self) -> str:
        """One line for logs."""
        n_test = sum(len(v) for v in self.test.values())
        return (
            f"{self.protocol}: {len(self.users)} users, {len(self.candidates)} candidates, "
            f"{len(self.train)} train positives ({len(self.train_all)} train ratings), "
            f"{n_test} test positives"
        )


def _binary_matrix(pairs: Ratings, rows: IntArray, cols: IntArray) -> sp.csr_matrix:
    """Binary matrix over (rows, cols) ids; pairs outside either set are dropped."""
    r = np.searchsorted(rows, pairs.user)
    c = np.searchsorted(cols, pairs.item)
    ok = (r < len(rows)) & (c < len(cols))
    ok[ok] &= (rows[r[ok]] == pairs.user[ok]) & (cols[c[ok]] == pairs.item[ok])
    data = np.ones(int(ok.sum()), dtype=np.float32)
    m = sp.csr_matrix((data, (r[ok], c[ok])), shape=(len(rows), len(cols)))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def _group(items: IntArray, users: IntArray) -> dict[int, IntArray]:
    """Group ``items`` by the (sorted, contiguous) ``users`` array, keeping order."""
    uniq, starts = np.unique(users, return_index=True)
    bounds = [*starts.tolist(), len(users)]
    return {int(u): items[bounds[i] : bounds[i + 1]].copy() for i, u in enumerate(uniq)}


def positives(ratings: Ratings) -> Ratings:
    """Ratings >= 4, in (user, timestamp, item) order."""
    return ratings.take(ratings.rating >= POSITIVE_THRESHOLD).sorted_by_user_time()


def chrono20(ratings: Ratings) -> Split:
    """The chrono20 split of all ``ratings`` (see module docstring)."""
    return _chrono(positives(ratings), ratings.sorted_by_user_time())


def cold20(ratings: Ratings) -> Split:
    """The cold20 split of all ``ratings`` (see module docstring)."""
    return _cold(positives(ratings), ratings.sorted_by_user_time())


def inner_validation(split: Split) -> Split:
    """The same protocol applied to ``split``'s training data only (for tuning)."""
    protocol = _chrono if split.protocol == "chrono20" else _cold
    return protocol(split.train, split.train_all)


def _chrono(pos: Ratings, pool: Ratings) -> Split:
    """chrono20 on positives ``pos`` (sorted by user, time, item) and rating pool ``pool``."""
    users, starts, counts = np.unique(pos.user, return_index=True, return_counts=True)
    # max(1, round(0.2 n)) test positives: 0.2 n is never x.5, so numpy's rint is round
    n_test = np.maximum(1, np.rint(TEST_SHARE * counts)).astype(np.int64)
    k = np.where(counts >= MIN_POSITIVES, n_test, 0)
    user_idx = np.repeat(np.arange(len(users)), counts)
    rank = np.arange(len(pos)) - starts[user_idx]
    is_test = rank >= (counts - k)[user_idx]

    train = pos.take(~is_test)
    train_items = np.unique(train.item)
    keep = is_test & np.isin(pos.item, train_items)
    test = _group(pos.item[keep], pos.user[keep])

    # Split boundary per split user: (timestamp, item) of the first test positive.
    split_users = users[k > 0]
    first = (starts + counts - k)[k > 0]
    b_ts = np.full(len(pool), np.iinfo(np.int64).max)
    b_item = np.full(len(pool), np.iinfo(np.int64).max)
    where = np.searchsorted(split_users, pool.user)
    where = np.minimum(where, max(len(split_users) - 1, 0))
    has = split_users[where] == pool.user if len(split_users) else np.zeros(len(pool), bool)
    b_ts[has] = pos.timestamp[first[where[has]]]
    b_item[has] = pos.item[first[where[has]]]
    before = (pool.timestamp < b_ts) | ((pool.timestamp == b_ts) & (pool.item < b_item))
    return Split(
        protocol="chrono20",
        train=train,
        train_all=pool.take(before),
        test=test,
        candidates=train_items,
        exclude_train=True,
    )


def _cold(pos: Ratings, pool: Ratings) -> Split:
    """cold20 on positives ``pos`` (sorted by user, time, item) and rating pool ``pool``."""
    item_ids = np.unique(pos.item)
    rng = np.random.default_rng(COLD_SEED)  # the README's fixed draw of the new items
    new = np.sort(rng.choice(item_ids, size=int(TEST_SHARE * len(item_ids)), replace=False))
    is_new = np.isin(pos.item, new)
    train = pos.take(~is_new)
    users, counts = np.unique(train.user, return_counts=True)
    eligible = users[counts >= MIN_POSITIVES]
    keep = is_new & np.isin(pos.user, eligible)
    return Split(
        protocol="cold20",
        train=train,
        train_all=pool.take(~np.isin(pool.item, new)),
        test=_group(pos.item[keep], pos.user[keep]),
        candidates=new,
        exclude_train=False,
    )


# --- metrics ---------------------------------------------------------------------------


def _discounts(k: int) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / np.log2(np.arange(k) + 2.0)
    return out


def _aggregate(
    hits: npt.NDArray[np.float64], n_rel: npt.NDArray[np.float64], k: int
) -> dict[str, float]:
    """Average Recall/NDCG/HR over users from a (users x k) hit matrix."""
    n_hit = hits.sum(axis=1)
    return {
        f"Recall@{k}": float(np.mean(n_hit / n_rel)) if len(n_rel) else 0.0,
        f"NDCG@{k}": float(np.mean(_ndcg_rows(hits, n_rel, k))) if len(n_rel) else 0.0,
        f"HR@{k}": float(np.mean(n_hit > 0)) if len(n_rel) else 0.0,
        "n_users": float(len(n_rel)),
    }


def top_k(split: Split, users: IntArray, scores: FloatArray, k: int = 10) -> npt.NDArray[np.int64]:
    """Column indices (into ``candidates``) of each row's top ``k`` after exclusions;
    ties go to the lower column index so results are deterministic."""
    s = np.array(scores, dtype=np.float64, copy=True)
    s[np.isnan(s)] = -np.inf
    if split.exclude_train:
        rows = np.searchsorted(split.users, users)
        excl = split.exclude_matrix[rows].tocoo()
        s[excl.row, excl.col] = -np.inf
    kk = min(k, s.shape[1])
    part = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
    part_scores = np.take_along_axis(s, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    return np.take_along_axis(part, order, axis=1)


def evaluate(split: Split, rank_fn: RankFn | FloatArray, k: int = 10) -> dict[str, float]:
    """Recall@k, NDCG@k, HR@k averaged over ``split.users``, plus ``n_users``.

    ``rank_fn`` is either a function ``user -> ranked item ids`` (already excluding
    what must be excluded; only the first ``k`` count) or a score matrix with rows
    ``split.users`` and columns ``split.candidates`` (exclusions are applied here).
    """
    if isinstance(rank_fn, np.ndarray):
        shape = (len(split.users), len(split.candidates))
        if rank_fn.shape != shape:
            raise ValueError(f"score matrix shape {rank_fn.shape} != (users, candidates) {shape}")
        matrix = rank_fn
        return evaluate_scores(split, lambda users: matrix[np.searchsorted(split.users, users)], k)
    return _aggregate(*_hits(split, rank_fn, k), k)


def ndcg_per_user(split: Split, rank_fn: RankFn, k: int = 10) -> npt.NDArray[np.float64]:
    """NDCG@k of each of ``split.users``, in that order: two rankers evaluated on the same
    users compare by the mean and standard error of their per-user differences (paired),
    far tighter than the standard error of either mean."""
    hits, n_rel = _hits(split, rank_fn, k)
    return _ndcg_rows(hits, n_rel, k)


def _hits(
    split: Split, rank_fn: RankFn, k: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The (users x k) hit matrix of ``rank_fn`` and each user's number of test items."""
    n_rel = np.array([len(split.test[int(u)]) for u in split.users], dtype=np.float64)
    hits = np.zeros((len(split.users), k))
    for i, u in enumerate(split.users):
        test = set(split.test[int(u)].tolist())
        ranked = list(rank_fn(int(u)))[:k]
        hits[i, : len(ranked)] = [int(item) in test for item in ranked]
    return hits, n_rel


def _ndcg_rows(
    hits: npt.NDArray[np.float64], n_rel: npt.NDArray[np.float64], k: int
) -> npt.NDArray[np.float64]:
    disc = _discounts(k)
    ideal = np.cumsum(disc)[np.minimum(n_rel, k).astype(np.int64) - 1]
    out: npt.NDArray[np.float64] = (hits @ disc) / ideal
    return out


def evaluate_scores(
    split: Split, score_fn: ScoreFn, k: int = 10, batch_size: int = 1024
) -> dict[str, float]:
    """Vectorized :func:`evaluate` for a batch scorer ``users -> (len(users), n_candidates)``,
    ``batch_size`` users at a time so memory stays bounded."""
    n_rel = np.array([len(split.test[int(u)]) for u in split.users], dtype=np.float64)
    hits = np.zeros((len(split.users), k))
    test = split.test_matrix
    for start in range(0, len(split.users), batch_size):
        index = np.arange(start, min(start + batch_size, len(split.users)))
        users = split.users[index]
        cols = top_k(split, users, score_fn(users), k)
        dense = test[index].toarray()
        hits[index, : cols.shape[1]] = np.take_along_axis(dense, cols, axis=1)
    return _aggregate(hits, n_rel, k)


def random_expectation(split: Split, k: int = 10) -> dict[str, float]:
    """Exact expected metrics of a uniformly random ranking of the candidates (a
    noise-free floor; exact where ``exclude_train`` is False, else approximate)."""
    c = float(len(split.candidates))
    t = np.array([len(split.test[int(u)]) for u in split.users], dtype=np.float64)
    kk = min(k, int(c))
    disc = _discounts(kk)
    ideal = np.cumsum(_discounts(k))[np.minimum(t, k).astype(np.int64) - 1]
    # P(no hit in top kk) = prod_{r<kk} (c - t - r) / (c - r)
    r = np.arange(kk)[None, :]
    miss = np.prod(np.clip((c - t[:, None] - r) / (c - r), 0.0, None), axis=1)
    return {
        f"Recall@{k}": float(np.mean(kk / c * np.ones_like(t))),
        f"NDCG@{k}": float(np.mean(t / c * disc.sum() / ideal)),
        f"HR@{k}": float(np.mean(1.0 - miss)),
        "n_users": float(len(t)),
    }


def add_quality(
    run: harness.Run, metrics: dict[str, float], fit_s: float, chosen: str, **labels: Any
) -> None:
    """The rows of one model's evaluation: :data:`METRICS`, users, fit seconds and the
    setting chosen on inner validation (when there is one)."""
    for name in METRICS:
        run.add(name, metrics[name], name, **labels)
    run.add("users", int(metrics["n_users"]), "count", **labels)
    run.add("fit", fit_s, "s", **labels)
    if chosen:
        run.add("chosen", chosen, "", **labels)
