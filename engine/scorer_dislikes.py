"""The dislike scorer: what resembles what the user turned down sinks, however popular.

Popularity and the collaborative signal speak for other people; an explicit
"no" (a dislike, a low rating, a skip) speaks for this user, so it must win
over them. Each candidate ``b`` gets

    - max(0, D(b) - L(b)),
    D(b) = max(max over the user's newest ``dislike_items`` disliked items a of
               w_a * max(0, cos(a, b)) ** dislike_power,
               mean(w) * max(0, cos(c, b)) ** dislike_power)

with ``w_a = min(1, |s_a|)`` (``s_a`` the item's net, negative, feedback
strength), ``cos`` the content similarity of the frozen embeddings, centred on
the catalog mean (for single items from the stored content-neighbour lists: an
item outside every disliked item's list counts as dissimilar), and ``c`` the
w-weighted centre of the disliked items, which reaches the rest of a disliked
topic; L(b) is the same closeness to the newest liked items, so a candidate
as close to something the user liked is not pushed away (mixed feedback on a
kind of item cancels out; a user who only said "no" to a topic gets none of
it). A maximum, not a sum: one strong "no" is enough, and many mild ones do not
add up to a ban. Unweighted it lies in [-1, 0]; popularity lies
in [0, 1], so ``dislike_weight`` above 1 lets one dislike outweigh any count.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .candidates import centred_units
from .catalog import Catalog
from .config import EngineConfig, RankingConfig
from .content_neighbours import SIM_SCALE
from .personal_model import Observation
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
        rated = [o for o in ctx.observations if not o.is_query]
        strong = [o for o in rated if o.strength <= -cfg.dislike_min_strength]
        disliked = self._side(ctx, strong[-cfg.dislike_items :])
        if disliked is None:
            return ScorePart(np.zeros(count))
        # what the user also liked is not pushed away
        liked = self._side(ctx, [o for o in rated if o.strength > 0][-cfg.dislike_items :])
        sides = [disliked] if liked is None else [disliked, liked]
        # each side's centre against the whole pool (a matrix-vector product over
        # contiguous rows is cheaper than copying the eligible rows out first)
        closeness = [
            np.maximum(
                single,
                _power(np.maximum(ctx.pool.units @ centre, 0.0)[ctx.eligible], cfg.dislike_power)
                * weight,
            )
            for single, centre, weight in sides
        ]
        if len(closeness) == 1:
            penalty = closeness[0]
        else:
            penalty = closeness[0] - cfg.dislike_like_offset * closeness[1]
        return ScorePart(-np.maximum(penalty, 0.0))

    def _side(
        self, ctx: RankingContext, observed: list[Observation]
    ) -> tuple[np.ndarray, np.ndarray, float] | None:
        """For these items: each eligible candidate's closeness to the nearest of them
        (weighted), their weighted centre (a unit vector) and their mean weight; None
        when none of them is live."""
        live = self.catalog.keeper.live_rows([o.ref for o in observed])
        kept = [(o, row) for o, row in zip(observed, live, strict=True) if row is not None]
        if not kept:
            return None
        weights = np.minimum(np.abs([o.strength for o, _row in kept]), 1.0)
        refs = [o.ref for o, _row in kept]
        vectors = self.catalog.keeper.item_vectors(refs)
        if vectors is None:  # the index is catching up: the user's vectors from LMDB
            vectors = {r: ctx.user_vectors[r] for r in refs}
        units = centred_units(np.stack([vectors[r] for r in refs]), self.catalog.prior().mean32)
        if self.config.content_neighbours > 0:
            single = self._from_lists(ctx, [row for _o, row in kept], weights)
        else:
            sims = np.maximum(ctx.pool.units @ units.T, 0.0)[ctx.eligible]
            single = (_power(sims, ctx.config.dislike_power) * weights[None, :]).max(axis=1)
        centre = (weights[:, None] * units).sum(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        return single, centre.astype(np.float32), float(weights.mean())

    def _from_lists(self, ctx: RankingContext, rows: list[int], weights: np.ndarray) -> Any:
        neighbours, sims, source = self.catalog.neighbours.entries(ctx.txn, rows)
        if not len(neighbours):
            return np.zeros(len(ctx.eligible))
        closeness = _power(np.maximum(sims / SIM_SCALE, 0.0), ctx.config.dislike_power)
        penalty = weights[source] * closeness
        position = ctx.pool.positions(neighbours)
        inside = position >= 0
        position, penalty = position[inside], penalty[inside]
        # the largest entry of each position: sort by value, the last write wins
        order = np.argsort(penalty, kind="stable")
        by_position = np.zeros(len(ctx.pool.ids))
        by_position[position[order]] = penalty[order]
        return by_position[ctx.eligible]


def _power(values: np.ndarray, power: float) -> np.ndarray:
    return values if power == 1.0 else np.asarray(values**power)
