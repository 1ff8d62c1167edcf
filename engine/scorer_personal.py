"""The personal scorer: the user's own model (``PersonalModel.score``) on each candidate,
explained by the interest and the rated item closest to it."""

from __future__ import annotations

from typing import Any

import numpy as np

from .config import RankingConfig
from .scoring import RankingContext, ScorePart


class PersonalScorer:
    name = "personal"

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.personal_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        if ctx.model is None or ctx.record is None:
            return ScorePart(np.zeros(len(ctx.ids)))

        def explain(_k: int, vector: np.ndarray) -> dict[str, Any]:
            interests = ctx.interests
            if not interests:
                return {}
            best = int(np.argmax([float(i.vector @ vector) for i in interests]))
            interest = interests[best]
            return {
                "interest": best,
                "because_of": interest.members[int(np.argmax(interest.matrix @ vector))],
            }

        return ScorePart(ctx.model.score(ctx.pool.vectors)[ctx.eligible], explain)
