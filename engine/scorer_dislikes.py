"""The dislike scorer: what resembles what the user turned down sinks, however popular.

Popularity and the collaborative signal speak for other people; an explicit
"no" (a dislike, a low rating, a skip) speaks for this user, so it must win
over them. Each candidate ``b`` gets

    - max over the user's newest ``dislike_items`` disliked items a of
      min(1, |s_a|) * max(0, cos(a, b)) ** dislike_power

with ``s_a`` the item's net (negative) feedback strength and ``cos`` the
content similarity of the frozen embeddings, centred on the catalog mean (the
stored content-neighbour lists: an item outside every disliked item's list
counts as dissimilar). A maximum, not a sum: one strong "no" is enough, and many
mild ones do not add up to a ban. Unweighted it lies in [-1, 0]; popularity lies
in [0, 1], so ``dislike_weight`` above 1 lets one dislike outweigh any count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .candidates import centred_units
from .catalog import Catalog
from .config import EngineConfig, RankingConfig
from .content_neighbours import SIM_SCALE
from .scoring import RankingContext, ScorePart


class DislikeScorer:
    name = "dislikes"

    def __init__(self, catalog: Catalog, config: EngineConfig) -> None:
        self.catalog = catalog
        self.config = config

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.dislike_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        count = len(ctx.eligible)
        cfg = ctx.config
        if ctx.record is None or self.weight(cfg) <= 0.0:
            return ScorePart(np.zeros(count))
        disliked = [o for o in ctx.observations if not o.is_query and o.strength < 0]
        disliked = disliked[-cfg.dislike_items :]
        live = self.catalog.keeper.live_rows([o.ref for o in disliked])
        kept = [(o, row) for o, row in zip(disliked, live, strict=True) if row is not None]
        if not kept:
            return ScorePart(np.zeros(count))
        weights = np.minimum(np.abs([o.strength for o, _row in kept]), 1.0)
        if self.config.content_neighbours > 0:
            penalty = self._from_lists(ctx, [row for _o, row in kept], weights)
        else:
            penalty = self._dense(ctx, [o.ref for o, _row in kept], weights)
        return ScorePart(-penalty)

    def _from_lists(self, ctx: RankingContext, rows: list[int], weights: np.ndarray) -> Any:
        neighbours, sims, source = self.catalog.neighbours.entries(ctx.txn, rows)
        if not len(neighbours):
            return np.zeros(len(ctx.eligible))
        closeness = np.maximum(sims / SIM_SCALE, 0.0) ** ctx.config.dislike_power
        penalty = weights[source] * closeness
        position = ctx.pool.positions(neighbours)
        inside = position >= 0
        by_position = np.zeros(len(ctx.pool.ids))
        np.maximum.at(by_position, position[inside], penalty[inside])
        return by_position[ctx.eligible]

    def _dense(self, ctx: RankingContext, refs: list[str], weights: np.ndarray) -> Any:
        mean = self.catalog.prior().mean32
        units = centred_units(np.stack([ctx.user_vectors[r] for r in refs]), mean)
        sims = np.maximum(ctx.pool.units[ctx.eligible] @ units.T, 0.0) ** ctx.config.dislike_power
        return (sims * weights[None, :]).max(axis=1)
