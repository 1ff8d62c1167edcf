"""The popularity scorer: how many users liked an item, from the shared statistics.

Counts are exact integers (``shared_stats.py``); items nobody has rated yet get a
count predicted from their content by a ridge regression whose Gram matrix is the
catalog's. Its direction is also a retrieval query (``candidates.py``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .blas import single_threaded
from .catalog import Catalog
from .config import EngineConfig, RankingConfig
from .counts_by_row import CountsByRow
from .personal_model import CatalogPrior
from .scoring import RankingContext, ScorePart

if TYPE_CHECKING:
    from .candidates import CandidatePool
from .shared_stats import F_SCALE, Q_SCALE, SharedStatistics


class Popularity:
    """Popularity scores and the popular direction, with what they keep in memory."""

    name = "popularity"

    def __init__(self, catalog: Catalog, shared: SharedStatistics, config: EngineConfig) -> None:
        self.catalog = catalog
        self.shared = shared
        self.config = config
        self._solver: tuple[CatalogPrior, np.ndarray] | None = None
        # the last direction, keyed by the exact statistic it came from (replaced, not
        # kept, when the statistic changes: an erasure's change is seen on the next call)
        self._direction: tuple[CatalogPrior, bytes, np.ndarray] | None = None
        # the scores of the last pool ranked, keyed by that pool and the LMDB snapshot
        # they were read in: any write since (an erasure's too) gives a new snapshot id
        self._last_pool: tuple[int, CandidatePool, np.ndarray, np.ndarray] | None = None
        # the counts read, by row, for the following calls on the same snapshot
        self.by_row = CountsByRow(shared.counts)

    def forget(self) -> None:
        """Drop what was derived from the statistic before an erasure."""
        self._direction = None
        self._last_pool = None
        self.by_row.forget()

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.popularity_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        """The popularity of every item in the pool (an item's score depends on nothing
        else), read once per pool and snapshot, then the eligible ones."""
        values = self._of_pool(ctx)[1][ctx.eligible]
        fade = ctx.config.popularity_fade_items
        if fade > 0.0 and self.shared.collaborative:
            # the more the engine knows of the user, the less it leans on the crowd's
            # counts and the more on the user's own signals and the collaborative part
            # (without that part the user's own signals are too weak to lead)
            rated = len(ctx.feedback.items)
            values = values * (fade / (fade + rated))
        return ScorePart(values)

    def pool_counts(self, ctx: RankingContext) -> np.ndarray:
        """The exact count of every item in the pool (0 without the statistic)."""
        return self._of_pool(ctx)[0]

    def _of_pool(self, ctx: RankingContext) -> tuple[np.ndarray, np.ndarray]:
        snapshot, last = ctx.txn.id(), self._last_pool
        if last is not None and last[0] == snapshot and last[1] is ctx.pool:
            return last[2], last[3]
        ids = ctx.pool.ids
        if self.shared.enabled and ids:
            counts = self.by_row.counts(ctx.txn, ctx.pool.rows, ids)
        else:
            counts = np.zeros(len(ids), np.int64)
        values = self.scores_of(ctx.txn, counts, ctx.pool.vectors)
        self._last_pool = (snapshot, ctx.pool, counts, values)
        return counts, values

    def direction(self, txn: Any) -> np.ndarray | None:
        """Ridge regression of log(1 + count) on content over the catalog (unrated
        items count 0): predicts the popularity of items nobody has seen yet.

        Its Gram matrix is the catalog's (no user data); only the right-hand
        side, ``popvec``, is a shared statistic. Returns slope and intercept.
        """
        if not self.shared.enabled:
            return None
        popvec = self.shared.popvec(txn)
        if not popvec.any():
            return None
        prior = self.catalog.prior()
        memo, stamp = self._direction, popvec.tobytes()
        if memo is not None and memo[0] is prior and memo[1] == stamp:
            return memo[2]  # the same statistic as the last call: never a stale one
        if self._solver is None or self._solver[0] is not prior:
            moments = prior.moments
            dim = self.shared.qdim
            gram = np.empty((dim, dim))
            gram[:-1, :-1] = moments.gram
            gram[:-1, -1] = gram[-1, :-1] = moments.total
            gram[-1, -1] = moments.count
            with single_threaded():
                inverse = np.linalg.inv(gram + self.config.ranking.popularity_l2 * np.eye(dim))
            self._solver = (prior, inverse)
        direction = np.asarray(self._solver[1] @ (popvec.astype(np.float64) / (F_SCALE * Q_SCALE)))
        self._direction = (prior, stamp, direction)
        return direction

    def scores_of(self, txn: Any, item_counts: np.ndarray, vectors: np.ndarray) -> np.ndarray:
        """Popularity on a [0, 1] scale: log(1 + count) / log(1 + contributing users).

        Items nobody has rated yet get their count predicted from content. The
        result is shrunk by users / (users + popularity_min_users): counts from a
        handful of users are noise, not a prior.
        """
        n_users = self.shared.users(txn) if self.shared.enabled else 0
        if n_users == 0 or not len(item_counts):
            return np.zeros(len(item_counts))
        counts = item_counts.astype(np.float64)
        values = np.log1p(counts)
        unseen = counts == 0
        if unseen.any():
            direction = self.direction(txn)
            if direction is not None:
                predicted = vectors[unseen] @ direction[:-1] + direction[-1]
                values[unseen] = np.maximum(predicted, 0.0)
        shrink = n_users / (n_users + self.config.ranking.popularity_min_users)
        return np.asarray(np.clip(values / math.log1p(n_users), 0.0, 1.0) * shrink)
