"""The collaborative scorer: people who liked what you liked also liked this.

Item-to-item similarity from the co-occurrence counts of liked pairs
(``co_counts.py``), computed at query time from integers only, so an erased
user's influence is gone the moment their counts are (nothing derived from the
counts is kept between calls).

For the user's newest ``collaborative_query_items`` liked items ``a``, with
weight ``w_a`` = their feedback strength, halved for every
``collaborative_half_life_items`` newer likes (what comes next resembles the
latest likes most), each candidate ``b`` scores

    sum_a  w_a * count(a, b) / (degree(a)^alpha * likes(b)^(1 - alpha) + shrink)

an asymmetric cosine with shrinkage: ``degree(a)`` is how many users have ``a``
among their pairs, ``likes(b)`` the popularity count of ``b``; ``alpha = 0.5``
is the cosine. Pairs liked together by fewer than ``collaborative_min_count``
users are left out (noise, and most of the entries). The raw scores are
standardized over the eligible candidates, like the neighbour score, and scaled
by n / (n + ``collaborative_ramp_items``) for a user with n liked items. A call
reads one row per liked item (one batched LMDB read) and does one vectorised
pass over their entries; catalogs too big to score whole also retrieve the
partners with the largest numerators as candidates (``candidates``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .candidates import CandidatePool
from .co_counts import item_keys
from .config import EngineConfig, RankingConfig
from .key_lookup import KeyLookup
from .personal_model import NetFeedback
from .scorer_popularity import Popularity
from .scoring import BestEntry, RankingContext, ScorePart
from .shared_stats import SharedStatistics


@dataclass(frozen=True)
class _Pairs:
    """The rows of a user's liked items, flattened: one entry per (liked item, partner)."""

    refs: list[str]  # the liked items with a row
    weight: np.ndarray  # their feedback strength (recency-weighted)
    degree: np.ndarray  # their degree ** alpha
    partners: np.ndarray  # uint64 item keys
    counts: np.ndarray  # float64
    source: np.ndarray  # which liked item each entry belongs to


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
        # the calling user's rows: (their net feedback, (snapshot id, settings), rows);
        # dropped when the ranking call ends (``end_call``)
        self._last_pairs: tuple[NetFeedback, tuple[int, RankingConfig], _Pairs | None] | None = None

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.collaborative_weight

    def end_call(self) -> None:
        """Drop the last user's rows (kept only from retrieval to scoring in one call):
        after an erasure nothing derived from the user stays in memory."""
        self._last_pairs = None

    def active(self, cfg: RankingConfig) -> bool:
        return self.shared.collaborative and self.weight(cfg) > 0.0

    def score(self, ctx: RankingContext) -> ScorePart:
        count = len(ctx.eligible)
        if not (self.active(ctx.config) and ctx.record is not None):
            return ScorePart(np.zeros(count))
        cfg = ctx.config
        pairs = self._pairs(ctx.txn, ctx.feedback, cfg)
        if pairs is None:
            return ScorePart(np.zeros(count))
        position = self._lookup_of(ctx.pool).positions(pairs.partners)
        inside = position >= 0
        counts, source = pairs.counts, pairs.source
        if not inside.all():  # (a pool of the whole catalog holds every partner)
            position, counts, source = position[inside], counts[inside], source[inside]
        # the normaliser's two factors: one per liked item, one per pool item
        likes = self._likes(ctx, 1.0 - cfg.collaborative_alpha)
        contribution = (pairs.weight[source] * counts) / (
            pairs.degree[source] * likes[position] + cfg.collaborative_shrink
        )
        total = np.bincount(position, weights=contribution, minlength=len(ctx.pool.ids))
        raw = total[ctx.eligible]
        spread = float(raw.std())
        values = (raw - raw.mean()) / spread if spread > 1e-12 else np.zeros(count)
        ramp = cfg.collaborative_ramp_items
        if ramp > 0.0:  # a few likes say little about whom the user resembles
            liked = len(ctx.feedback.liked)
            values *= liked / (liked + ramp)
        best = BestEntry(position, source, contribution, ctx.eligible, len(ctx.pool.ids))

        def explain(k: int, _vector: np.ndarray) -> dict[str, Any]:
            """The liked item whose pairs gave candidate ``k`` the most."""
            liked = best.source_of(k)
            return {} if liked is None else {"because_of": pairs.refs[liked]}

        return ScorePart(values, explain, best.prepare)

    def candidates(
        self, txn: Any, feedback: NetFeedback, cfg: RankingConfig, want: int
    ) -> list[str]:
        """The ``want`` items most liked together with the user's newest liked items
        (by the score's numerator: catalogs too big to score whole retrieve them as
        candidates, and the score then ranks them with the rest), best first."""
        if not self.active(cfg):
            return []
        pairs = self._pairs(txn, feedback, cfg)
        if pairs is None:
            return []
        keys, where = np.unique(pairs.partners, return_inverse=True)
        weight = pairs.weight[pairs.source] * pairs.counts / pairs.degree[pairs.source]
        total = np.bincount(where, weights=weight, minlength=len(keys))
        best = np.lexsort((keys, -total))[:want]  # ties: the smaller key
        found = self.shared.catalog.ids_of_keys(txn, keys[best].tolist())
        return [item_id for item_id in found if item_id is not None]

    def _pairs(self, txn: Any, feedback: NetFeedback, cfg: RankingConfig) -> _Pairs | None:
        """The co-occurrence rows of the user's newest liked items, flattened; read
        once a call (retrieval and the score ask for the same user, settings and
        LMDB snapshot: any write, an erasure's too, gives a new snapshot id)."""
        stamp = (txn.id(), cfg)
        last = self._last_pairs
        if last is not None and last[0] is feedback and last[1] == stamp:
            return last[2]
        pairs = self._read_pairs(txn, feedback, cfg)
        self._last_pairs = (feedback, stamp, pairs)
        return pairs

    def _read_pairs(self, txn: Any, feedback: NetFeedback, cfg: RankingConfig) -> _Pairs | None:
        liked = feedback.liked[-cfg.collaborative_query_items :]  # (refs of the log)
        names = feedback.log.refs
        refs = [names[i] for i in liked.tolist()]
        joined = self.shared.co.joined_rows(txn, refs)
        if joined is None:
            return None
        partners, counts, source = joined.partners, joined.counts, joined.source
        if cfg.collaborative_min_count > 1:  # pairs seen once or twice are mostly noise
            strong = np.flatnonzero(counts >= cfg.collaborative_min_count)
            partners, counts, source = partners[strong], counts[strong], source[strong]
        found = np.asarray(joined.found, np.int64)  # (positions in ``liked``)
        weight = np.asarray(feedback.net[liked[found]], np.float64)
        if cfg.collaborative_half_life_items > 0:  # newer likes say more about what is next
            age = len(liked) - 1 - found
            weight *= np.exp2(-age / cfg.collaborative_half_life_items)
        degree = joined.degrees.astype(np.float64)
        return _Pairs(
            [refs[k] for k in joined.found],
            weight,
            degree**cfg.collaborative_alpha,
            partners,
            counts.astype(np.float64),
            source,
        )

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
