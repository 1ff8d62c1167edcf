"""The collaborative scorer: people who liked what you liked also liked this.

Item-to-item similarity from the co-occurrence counts of liked pairs
(``co_counts.py``), computed at query time from integers only, so an erased
user's influence is gone the moment their counts are (nothing derived from the
counts is kept between calls).

For the user's newest ``collaborative_query_items`` liked items ``a`` (weighted
by their feedback strength ``s_a``), each candidate ``b`` scores

    sum_a  s_a * count(a, b) / (degree(a)^alpha * likes(b)^(1 - alpha) + shrink)

an asymmetric cosine with shrinkage: ``degree(a)`` is how many users have ``a``
among their pairs, ``likes(b)`` the popularity count of ``b``; ``alpha = 0.5``
is the cosine, higher values favour popular candidates less. The raw scores
are standardized over the eligible candidates, like the neighbour score. A
call reads one row per liked item (one batched LMDB read) and does one
vectorised pass over their entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .candidates import CandidatePool
from .co_counts import item_keys
from .config import EngineConfig, RankingConfig
from .key_lookup import KeyLookup
from .scorer_popularity import Popularity
from .scoring import RankingContext, ScorePart
from .shared_stats import SharedStatistics


class CollaborativeScorer:
    name = "collaborative"

    def __init__(
        self, shared: SharedStatistics, config: EngineConfig, popularity: Popularity
    ) -> None:
        self.shared = shared
        self.config = config
        self.popularity = popularity
        self._lookup: tuple[CandidatePool, KeyLookup] | None = None  # of the last pool
        self._powers: tuple[np.ndarray, float, np.ndarray] | None = None

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.collaborative_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        count = len(ctx.eligible)
        if not (
            self.shared.collaborative and ctx.record is not None and self.weight(ctx.config) > 0.0
        ):
            return ScorePart(np.zeros(count))
        cfg = ctx.config
        liked = [o for o in ctx.observations if not o.is_query and o.strength > 0]
        liked = liked[-cfg.collaborative_query_items :]
        rows = self.shared.co.rows(ctx.txn, [o.ref for o in liked])
        found = [(o, row) for o, row in zip(liked, rows, strict=True) if row is not None]
        if not found:
            return ScorePart(np.zeros(count))
        lookup = self._lookup_of(ctx.pool)
        partners = np.concatenate([row.partners for _o, row in found])
        counts = np.concatenate([row.counts for _o, row in found])
        sizes = np.array([len(row.partners) for _o, row in found])
        source = np.repeat(np.arange(len(found), dtype=np.int32), sizes)
        if cfg.collaborative_min_count > 1:  # pairs seen once or twice are mostly noise
            strong = counts >= cfg.collaborative_min_count
            partners, counts, source = partners[strong], counts[strong], source[strong]
        position = lookup.positions(partners)
        inside = position >= 0
        position, counts, source = position[inside], counts[inside], source[inside]
        alpha = cfg.collaborative_alpha
        # the normaliser's two factors: one per liked item, one per pool item
        degree = np.array([row.degree for _o, row in found], np.float64) ** alpha
        likes = self._likes(ctx, 1.0 - alpha)
        strength = np.array([o.strength for o, _row in found])
        if cfg.collaborative_half_life_items > 0:  # newer likes say more about what is next
            age = np.array([len(liked) - 1 - k for k, row in enumerate(rows) if row is not None])
            strength *= np.exp2(-age / cfg.collaborative_half_life_items)
        contribution = (strength[source] * counts) / (
            degree[source] * likes[position] + cfg.collaborative_shrink
        )
        total = np.bincount(position, weights=contribution, minlength=len(ctx.pool.ids))
        raw = total[ctx.eligible]
        spread = float(raw.std())
        values = (raw - raw.mean()) / spread if spread > 1e-12 else np.zeros(count)
        refs = [o.ref for o, _row in found]
        because = _because(position, source, contribution, ctx.eligible, refs)

        def explain(k: int, _vector: np.ndarray) -> dict[str, Any]:
            item = because(k)
            return {} if item is None else {"because_of": item}

        return ScorePart(values, explain)

    def _likes(self, ctx: RankingContext, power: float) -> np.ndarray:
        """likes(b)^power of every pool item (counts below 1 count as 1), kept for
        the pool and snapshot the popularity counts are kept for."""
        counts = self.popularity.pool_counts(ctx)
        last = self._powers
        if last is not None and last[0] is counts and last[1] == power:
            return last[2]
        values: np.ndarray = np.maximum(counts, 1).astype(np.float64) ** power
        self._powers = (counts, power, values)
        return values

    def _lookup_of(self, pool: CandidatePool) -> KeyLookup:
        last = self._lookup
        if last is not None and last[0] is pool:
            return last[1]
        lookup = KeyLookup(item_keys(pool.ids))
        self._lookup = (pool, lookup)
        return lookup


def _because(
    position: np.ndarray,
    source: np.ndarray,
    contribution: np.ndarray,
    eligible: np.ndarray,
    refs: list[str],
) -> Callable[[int], str | None]:
    def because(k: int) -> str | None:
        """The liked item whose pairs gave candidate ``k`` the most (found only for the
        candidates a call explains)."""
        mine = np.flatnonzero(position == eligible[k])
        if not len(mine):
            return None
        return refs[int(source[mine[np.argmax(contribution[mine])]])]

    return because
