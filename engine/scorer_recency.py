"""The recency scorer: newer items score higher (half-life ``recency_half_life_days``);
off unless ``recency_weight`` > 0, and the cold-start order when nothing else is known."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from .config import EngineConfig, RankingConfig
from .scoring import RankingContext, ScorePart


class RecencyScorer:
    name = "recency"

    def __init__(self, config: EngineConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.recency_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        if not ctx.items:  # not a dated call: the items were not read
            return ScorePart(np.zeros(len(ctx.ids)))
        return ScorePart(self.recency(ctx.items))

    def recency(self, items: Sequence[Any]) -> np.ndarray:
        cfg = self.config.ranking
        if cfg.recency_weight == 0.0:
            return np.zeros(len(items))
        now = self.clock()
        out = np.zeros(len(items))
        for k, item in enumerate(items):
            if item is not None and item.published_at is not None:
                age_days = max(0.0, now - item.published_at.timestamp()) / 86_400.0
                out[k] = 0.5 ** (age_days / cfg.recency_half_life_days)
        return out


def recency_rank(items: Sequence[Any]) -> np.ndarray:
    """Newest first (items without a date last), as a score in [0, 1]."""
    stamps = np.array(
        [it.published_at.timestamp() if it and it.published_at else -np.inf for it in items]
    )
    order = np.argsort(-stamps, kind="stable")
    out = np.zeros(len(items))
    out[order] = np.linspace(1.0, 0.0, num=len(items))
    return out
