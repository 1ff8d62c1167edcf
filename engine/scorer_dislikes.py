"""The dislike scorer: what resembles what the user turned down sinks, however popular.

Popularity and the collaborative signal speak for other people; an explicit
"no" (a dislike, a low rating, a skip) speaks for this user, so it must win
over them. Each candidate ``b`` gets

    - max(0, D(b) - dislike_like_offset * L(b)),
    D(b) = mean(w) * max(0, cos(c, b)) ** dislike_power

with ``c`` the centre of the user's newest ``dislike_items`` disliked items
(their catalog-centred unit vectors weighted by ``w_a = min(1, |s_a|)``, ``s_a``
the item's net negative feedback strength) and ``cos`` the content similarity of
the frozen embeddings, centred on the catalog mean; ``L(b)`` is the same
closeness to the centre of the newest liked items. Three dislikes in a topic put
its centre there, so every item of the topic sinks, not only those near a
disliked one; a candidate close to what the user also liked is not pushed away
(mixed feedback on a kind of item cancels out; a user who only said "no" to a
topic gets none of it). Unweighted the part lies in [-1, 0]; popularity lies in
[0, 1], so ``dislike_weight`` above 1 lets a clear "no" outweigh any count.

Chosen by measurement (``bench/README.md``, 2026-12-05): a variant that also took
the closeness to each single disliked item (from the content-neighbour lists)
scored the same on inner validation and cost cold20 a little more, at twice the
time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import numpy as np

from .candidates import Centre, UserVectors, centred_units
from .catalog import Catalog
from .config import EngineConfig, RankingConfig
from .scoring import RankingContext, ScorePart


class DislikeScorer:
    name = "dislikes"

    def __init__(self, catalog: Catalog, config: EngineConfig) -> None:
        self.catalog = catalog
        self.config = config

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.dislike_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        """The part of every eligible candidate."""
        lowering = self.penalty(ctx)
        everyone = np.arange(len(ctx.eligible))
        return ScorePart(np.zeros(len(everyone)) if lowering is None else lowering(everyone))

    def penalty(self, ctx: RankingContext) -> Callable[[np.ndarray], np.ndarray] | None:
        """The part of the eligible candidates at given positions (None: 0 for all); the
        ranker asks only for the candidates that can still reach the top n
        (``ranker.LazyScores``)."""
        cfg = ctx.config
        if ctx.record is None or self.weight(cfg) <= 0.0:
            return None
        rated, newest = ctx.rated, cfg.dislike_items
        strengths, in_catalog = rated.strengths, rated.rows >= 0
        negative = np.flatnonzero(strengths <= -cfg.dislike_min_strength)[-newest:]
        negative = negative[in_catalog[negative]]
        if not len(negative):
            return None
        # what the user also liked is not pushed away
        positive = np.flatnonzero(strengths > 0.0)[-newest:]
        positive = positive[in_catalog[positive]]
        both = np.concatenate([negative, positive])
        found = ctx.pool.slots(rated.rows[both])
        if int(found.max()) < len(ctx.pool.rows):  # the pool knows their norms: one gather
            units = ctx.pool.units_at(found)
        else:
            (negative, positive), units = self._units(ctx, negative, positive)
            if not len(negative):
                return None
            both = np.concatenate([negative, positive])
        weights = np.minimum(np.abs(strengths[both]), 1.0)
        split, mean = len(negative), ctx.pool.mean
        disliked = _centre(weights[:split], units[:split], mean)
        liked = _centre(weights[split:], units[split:], mean) if len(positive) else None
        pool, eligible = ctx.pool, ctx.eligible

        def at(positions: np.ndarray) -> np.ndarray:
            rows = eligible[positions]
            # most of the pool: a matrix-vector product over its contiguous rows is
            # cheaper than copying the rows out first (and two of them cheaper than one
            # product with two columns); a few rows: those rows only, read once
            if 4 * len(positions) < len(pool.rows):
                cosines = pool.cosines_at(rows)
            else:

                def cosines(centre: Centre) -> np.ndarray:
                    return np.asarray(pool.cosines(centre)[rows])

            def near(centre: Centre, weight: float) -> np.ndarray:
                cos = cosines(centre)
                return np.asarray(_power(np.maximum(cos, 0.0), cfg.dislike_power) * weight)

            penalty = near(*disliked)
            if liked is not None:
                penalty = penalty - cfg.dislike_like_offset * near(*liked)
            return np.asarray(-np.maximum(penalty, 0.0))

        return at

    def _units(
        self, ctx: RankingContext, *groups: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """The groups of rated items (indices into ``ctx.rated``) and the catalog-centred
        unit vectors of their items, one group after another: a group the pool holds
        whole from the pool (it knows their norms; a pool of the whole catalog does),
        the others read once for all of them: by the rows the call looked up, from the
        index, when it still holds every one; else by id (``_vectors``). An item
        whose vector is gone (deleted by another thread since the call looked up its
        row) is then left out of its group, as if never rated."""
        pool, rated = ctx.pool, ctx.rated
        kept = list(groups)
        units: list[np.ndarray | None] = []
        for group in groups:
            at = pool.positions(rated.rows[group])
            units.append(pool.units_at(at) if (at >= 0).all() else None)
        missing = [g for g, u in enumerate(units) if u is None]
        if missing and _reads_index(ctx):
            # by the rows the call looked up: one read when the index holds every one of
            # them (the usual case), as one block
            sizes = [len(groups[g]) for g in missing]
            rows = np.concatenate([rated.rows[groups[g]] for g in missing])
            known, _ids, vectors = self.catalog.keeper.indexed_items(rows.tolist())
            if known.all():
                blocks = np.split(vectors, np.cumsum(sizes)[:-1])
                for g, block in zip(missing, blocks, strict=True):
                    units[g] = centred_units(block, pool.mean)
                missing = []
        wanted = [rated.refs[k] for g in missing for k in groups[g].tolist()]
        if wanted:
            by_ref = self._vectors(ctx, wanted)
            for g, group in enumerate(groups):
                if units[g] is None:
                    present = [k for k in group.tolist() if rated.refs[k] in by_ref]
                    kept[g] = np.asarray(present, np.int64)
                    stacked = [by_ref[rated.refs[k]] for k in present]
                    units[g] = (
                        centred_units(np.stack(stacked), pool.mean)
                        if stacked
                        else np.zeros((0, pool.vectors.shape[1]), np.float32)
                    )
        return kept, np.concatenate([u for u in units if u is not None])

    def _vectors(self, ctx: RankingContext, refs: list[str]) -> Mapping[str, np.ndarray]:
        """The vectors of ``refs``: the call's reading of the user's vectors if it made one
        (retrieval does), else from the index in one read (or, while the index is
        catching up, the user's vectors from LMDB)."""
        read = ctx.user_vectors
        if not _reads_index(ctx):
            return read
        found = self.catalog.keeper.item_vectors(refs)
        return read if found is None else found


def _reads_index(ctx: RankingContext) -> bool:
    """Whether vectors the pool lacks come from the index: the call has not read the
    user's vectors (retrieval does; then they are at hand)."""
    read = ctx.user_vectors
    return isinstance(read, UserVectors) and not read.loaded


def _centre(weights: np.ndarray, units: np.ndarray, mean: np.ndarray) -> tuple[Centre, float]:
    """The centre of ``units`` weighted by ``weights`` (``w = min(1, |strength|)``), as
    a unit vector, and mean(w)."""
    centre = weights @ units
    # as numpy's norm and mean compute them, without their dispatch (~10 us a call)
    centre /= max(math.sqrt(float(centre @ centre)), 1e-12)
    return Centre.of(centre, mean), float(weights.sum()) / len(weights)


def _power(values: np.ndarray, power: float) -> np.ndarray:
    return values if power == 1.0 else np.asarray(values**power)
