"""The neighbour scorer: how close each candidate is to the items the user rated.

Item-to-item similarity in the frozen base model's space, with the user's own
feedback strengths as weights; reads the user's record, writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .blas import single_threaded
from .candidates import centred_units
from .catalog import Catalog
from .config import EngineConfig, RankingConfig
from .personal_model import observations
from .scoring import RankingContext, ScorePart
from .user_record import UserRecord


@dataclass(frozen=True)
class Neighbours:
    """The neighbour score of each candidate and the rated item that contributed most."""

    scores: np.ndarray
    because: list[str]

    @staticmethod
    def none(count: int) -> Neighbours:
        return Neighbours(np.zeros(count), [])


class NeighbourScorer:
    name = "neighbours"

    def __init__(self, catalog: Catalog, config: EngineConfig) -> None:
        self.catalog = catalog
        self.config = config

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.neighbour_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        count = len(ctx.ids)
        found = Neighbours.none(count)
        if ctx.model is not None and ctx.record is not None and self.weight(ctx.config) > 0.0:
            found = self.neighbours(ctx.record, ctx.user_vectors, ctx.pool.units, ctx.eligible)

        def explain(k: int, _vector: np.ndarray) -> dict[str, Any]:
            return {"because_of": found.because[k]} if found.because else {}

        return ScorePart(found.scores, explain)

    def neighbours(
        self,
        record: UserRecord,
        vectors: Mapping[str, np.ndarray],
        pool_units: np.ndarray,
        eligible: np.ndarray,
    ) -> Neighbours:
        """How close each candidate is to the items the user rated, standardized.

        Vectors are centred on the catalog mean (so closeness means "alike", not
        "typical"), similarities below zero count as zero and the rest are raised
        to ``neighbour_power`` so a candidate scores by its nearest rated items.
        """
        obs = [
            o
            for o in observations(record.events, self.config.learner)
            if not o.is_query and o.ref in vectors
        ]
        obs = obs[-self.config.ranking.neighbour_items :]  # the newest
        if not obs:
            return Neighbours.none(len(eligible))
        mean = self.catalog.prior().mean32
        rated = centred_units(np.stack([vectors[o.ref] for o in obs]), mean)
        strengths = np.array([o.strength for o in obs], dtype=np.float32)
        with single_threaded():
            sims = np.maximum(rated @ pool_units.T, 0.0)[:, eligible]
            raise_to(sims, self.config.ranking.neighbour_power)
            weighted = strengths[:, None] * sims
            raw = weighted.sum(axis=0) / float(np.abs(strengths).sum())
        spread = float(raw.std())
        scores = (raw - raw.mean()) / spread if spread > 1e-12 else np.zeros(len(raw))
        because = [obs[int(j)].ref for j in np.argmax(weighted, axis=0)]
        return Neighbours(scores.astype(np.float64), because)


def raise_to(values: np.ndarray, power: float) -> None:
    """values **= power in place; whole powers by repeated products (pow() is slow)."""
    if power == int(power) and 1 <= power <= 8:
        base = values.copy()
        for _ in range(int(power) - 1):
            values *= base
    else:
        values **= power
