"""The per-user learner: a ranking head and centres of interest, fit from one user's events.

The head is a weighted ridge regression over the frozen item embeddings (the
user step of implicit ALS with the base model's vectors as fixed item factors):

    w = argmin  sum_j c_j (w.x_j - y_j)^2  +  c0 * mean_i (w.e_i)^2  +  l2 |w|^2

- ``x_j`` are the embeddings of the items (and search queries) the user gave
  feedback on; ``y_j`` is 1 for net-positive feedback and ``negative_target`` for
  net-negative feedback (dislikes, low ratings, skips), with confidence ``c_j`` =
  the absolute, time-decayed strength of that feedback. The default target 0
  says "not for me" without pushing the head away from the disliked item's
  content (a low rating is often on an item much like the liked ones; -0.5 cost
  cold20 on inner validation, ``bench/tune_defaults.py``); the dislike part
  (``scorer_dislikes.py``) ranks against disliked content;
- the middle term treats *every* catalog item as a weak implicit negative. It
  needs only the catalog's Gram matrix (catalog data, no user data), so it is
  exact and O(d^2), with no negative sampling.

The solution is one linear solve (k x k by Woodbury for k observations, with
G^-1 shared by all users of a catalog version): a refit on every write costs
a few milliseconds (``bench/engine_bench.py`` profiles it), and the model is
a deterministic function of (retained events, catalog embeddings, config), so
replaying the events rebuilds it exactly.

Interests: the newest ``interest_items`` positive items, grouped greedily in
time order (join the closest
group if its cosine is at least ``interest_merge_cosine``, else start one; over
``max_interests`` groups, merge the closest two); used to retrieve candidates
and to explain recommendations. Time decay is relative to the user's newest
event, never to the wall clock, so a refit is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import repeat
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from ..storage.catalog_store import CatalogMoments
from .blas import single_threaded
from .event_columns import EventColumns
from .events import FeedbackStrengths, strengths_of
from .user_record import PersonalModel

Vector = npt.NDArray[np.float32]


class LearnerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    implicit_weight: float = Field(200.0, ge=0.0, description="c0: weight of the catalog")
    l2: float = Field(1.0, gt=0.0)
    negative_target: float = Field(0.0, le=0.0)
    half_life_days: float = Field(365.0, gt=0.0)
    max_interests: int = Field(4, ge=1, le=16)
    interest_merge_cosine: float = Field(0.5, ge=-1.0, le=1.0)
    interest_items: int = Field(
        64, ge=1, le=10_000, description="the newest liked items grouped into interests"
    )
    strengths: FeedbackStrengths = FeedbackStrengths()


class Observation(NamedTuple):
    """The net feedback on one item or query (a named tuple: every recommend builds
    one per item the user has events on)."""

    ref: str
    is_query: bool
    strength: float  # signed, time-decayed sum
    last_event: int  # index of its newest event

    @property
    def liked(self) -> bool:
        """A liked item: the one rule of what is positive (net strength above 0), for
        the model, popularity and the collaborative pairs."""
        return not self.is_query and self.strength > 0


@dataclass(frozen=True, eq=False)
class NetFeedback:
    """The net feedback of a log (``net_feedback``), as arrays over its refs (the
    distinct items and queries of ``EventColumns``): what a recommend reads, without
    an object per item unless a caller asks for ``observations``."""

    log: EventColumns
    net: np.ndarray  # float64 per ref: the signed, time-decayed sum of its events
    last: np.ndarray  # int64 per ref: the index of its newest event
    order: np.ndarray  # the refs with a net feedback (not 0), oldest first by ``last``

    @cached_property
    def items(self) -> np.ndarray:
        """``order`` without the queries: the user's rated items."""
        order = self.order
        return np.asarray(order[~self.log.is_query[order]])

    @cached_property
    def liked(self) -> np.ndarray:
        """``items`` with a positive net feedback (``Observation.liked``'s rule)."""
        items = self.items
        return np.asarray(items[self.net[items] > 0.0])

    @cached_property
    def observations(self) -> list[Observation]:
        """One ``Observation`` per ref of ``order`` (built once, on first use)."""
        refs, queries = self.log.refs, self.log.is_query.tolist()
        nets, lasts = self.net.tolist(), self.last.tolist()
        make = tuple.__new__  # a named tuple without the keyword handling of its __new__
        return [
            make(Observation, (refs[i], queries[i], nets[i], lasts[i])) for i in self.order.tolist()
        ]


def net_feedback(events: EventColumns, cfg: LearnerConfig) -> NetFeedback:
    """Net feedback per item (and per query): each event's strength, decayed by its
    age against the newest event, summed per ref in log order (one pass over
    columns: a recommend computes it for the user's whole log)."""
    refs = len(events.refs)
    if not len(events):
        nothing = np.zeros(0, np.int64)
        return NetFeedback(events, np.zeros(0), nothing, nothing)
    ts = events.ts.astype(np.int64)
    # a log holds few distinct (kind, value, weight): each strength is computed once, from
    # the configuration's table of bases (no user value is remembered across calls)
    base = np.array(strengths_of(events.combos, cfg.strengths))
    age = ((int(ts.max()) - ts) / (cfg.half_life_days * 86_400.0)).tolist()
    # Python's pow (0.5 ** a), not numpy's: the same bits on every CPU (numpy's may be
    # a SIMD one)
    decayed = base[events.combo_of] * np.fromiter(map(pow, repeat(0.5), age), np.float64, len(age))
    net = np.bincount(events.ref_of, weights=decayed, minlength=refs)  # in log order
    last = np.zeros(refs, np.int64)
    np.maximum.at(last, events.ref_of, np.arange(len(ts)))
    order = np.argsort(last)  # (each event is the last of at most one ref: no ties)
    return NetFeedback(events, net, last, order[net[order] != 0.0])


def observations(events: EventColumns, cfg: LearnerConfig) -> list[Observation]:
    """Net feedback per item (and per query), oldest first by last event
    (``net_feedback``, as one ``Observation`` each).

    >>> from .events import KindCode
    >>> log = EventColumns.from_events([(KindCode.like, "a", None, 1.0, 0, 0),
    ...                                 (KindCode.dislike, "b", None, 1.0, 0, 1)])
    >>> [(o.ref, o.liked) for o in observations(log, LearnerConfig())]
    [('a', True), ('b', False)]
    """
    return net_feedback(events, cfg).observations


class CatalogPrior:
    """What every user's fit shares, computed once per catalog version (catalog data only):
    G = c0 * Gram / n + l2 * I, its inverse, and the catalog's mean and covariance."""

    def __init__(self, moments: CatalogMoments, cfg: LearnerConfig) -> None:
        dim = moments.gram.shape[0]
        self.moments = moments
        with single_threaded():  # one thread: fast under load, same bits everywhere
            self.g = cfg.l2 * np.eye(dim)
            if moments.count:
                self.g += (cfg.implicit_weight / moments.count) * moments.gram
            self.g_inv = np.linalg.inv(self.g)
        self.count = moments.count
        self.mean = moments.total / max(moments.count, 1)
        self.mean32 = self.mean.astype(np.float32)  # for centring float32 item vectors
        self.cov = moments.gram / max(moments.count, 1) - np.outer(self.mean, self.mean)

    def head_moments(self, w: npt.NDArray[np.float64]) -> tuple[float, float]:
        """Mean and standard deviation of ``w . e`` over the catalog."""
        if self.count == 0:
            return 0.0, 1.0
        var = float(w @ self.cov @ w)
        return float(w @ self.mean), math.sqrt(var) if var > 1e-12 else 1.0


def solve_head(
    prior: CatalogPrior, x: npt.NDArray[np.float64], conf: np.ndarray, target: np.ndarray
) -> npt.NDArray[np.float64]:
    """w = (G + X^T C X)^-1 X^T C y; by Woodbury (k x k) when there are few observations.
    Called inside ``fit``'s one-thread block."""
    b = x.T @ (conf * target)
    k, dim = x.shape
    if k < dim // 2:
        g_inv_b = prior.g_inv @ b
        g_inv_xt = prior.g_inv @ x.T
        inner = np.diag(1.0 / conf) + x @ g_inv_xt
        return np.asarray(g_inv_b - g_inv_xt @ np.linalg.solve(inner, x @ g_inv_b))
    return np.asarray(np.linalg.solve(prior.g + (x * conf[:, None]).T @ x, b))


def fit(
    events: EventColumns,
    item_vectors: Mapping[str, Vector],
    query_vectors: Mapping[str, Vector],
    prior: CatalogPrior,
    cfg: LearnerConfig,
) -> tuple[PersonalModel | None, list[str]]:
    """Fit the head and interests; items missing from ``item_vectors`` (deleted) are ignored.

    Also returns the catalog items with net-positive feedback (the user's
    contribution to popularity), oldest first."""
    obs = [
        o
        for o in observations(events, cfg)
        if (query_vectors if o.is_query else item_vectors).get(o.ref) is not None
    ]
    if not obs:
        return None, []
    with single_threaded():  # the whole fit: products and solves alike
        x = np.stack([(query_vectors if o.is_query else item_vectors)[o.ref] for o in obs]).astype(
            np.float64
        )
        conf = np.array([abs(o.strength) for o in obs])
        target = np.array([1.0 if o.strength > 0 else cfg.negative_target for o in obs])
        w = solve_head(prior, x, conf, target)
        offset, scale = prior.head_moments(w)
        positives = [o for o in obs if o.liked]
        interests = group_interests(positives[-cfg.interest_items :], item_vectors, cfg)
        model = PersonalModel(w.astype(np.float32), offset, scale, interests)
        return model, [o.ref for o in positives]


def group_interests(
    positives: Sequence[Observation], item_vectors: Mapping[str, Vector], cfg: LearnerConfig
) -> list[tuple[float, list[int]]]:
    if not positives:
        return []
    scaled = np.stack([item_vectors[o.ref] for o in positives]).astype(np.float64)
    scaled *= np.array([o.strength for o in positives])[:, None]
    lengths = np.linalg.norm(scaled, axis=1)
    groups = _Groups(cfg.max_interests + 1, scaled.shape[1])
    for pos, o in enumerate(positives):
        v = scaled[pos]
        k = len(groups.members)
        if k:
            dots = groups.totals[:k] @ v
            cos = dots / (groups.norms[:k] * lengths[pos] + 1e-12)
            best = int(np.argmax(cos))  # first of equals, as a scan would pick
            if cos[best] >= cfg.interest_merge_cosine:
                groups.join(best, v, o.strength, o.last_event, dots[best], lengths[pos])
                continue
        groups.add(v, o.strength, o.last_event, lengths[pos])
        if len(groups.members) > cfg.max_interests:
            groups.merge_closest()
    return list(zip(groups.weights, groups.members, strict=True))


class _Groups:
    """Interest groups being built: each group's vector sum and its norm, weights,
    members, and the cosines between groups (rows refreshed only when needed)."""

    def __init__(self, capacity: int, dim: int) -> None:
        self.totals = np.zeros((capacity, dim))
        self.norms = np.zeros(capacity)
        self.weights: list[float] = []
        self.members: list[list[int]] = []
        self._cos = np.full((capacity, capacity), -np.inf)
        self._below = np.tril(np.ones((capacity, capacity), dtype=bool))  # i >= j: not a pair
        self._stale: set[int] = set()

    def add(self, v: np.ndarray, weight: float, event: int, length: float) -> None:
        k = len(self.members)
        self.totals[k] = v
        self.norms[k] = length
        self.weights.append(weight)
        self.members.append([event])
        self._stale.add(k)

    def join(
        self, g: int, v: np.ndarray, weight: float, event: int, dot: float, length: float
    ) -> None:
        self.totals[g] += v
        # |t + v|^2 = |t|^2 + 2 t.v + |v|^2: no second pass over the vector
        self.norms[g] = math.sqrt(max(self.norms[g] ** 2 + 2.0 * dot + length**2, 0.0))
        self.weights[g] += weight
        self.members[g] = [*self.members[g], event]
        self._stale.add(g)

    def merge_closest(self) -> None:
        """Merge the two most similar groups; the merged group takes the place of the
        first, later groups move up (the first best pair in (i, j) order)."""
        k = len(self.members)
        scale = self.norms[:k] + 1e-12
        for g in self._stale:
            row = (self.totals[:k] @ self.totals[g]) / (scale * scale[g])
            self._cos[g, :k] = row
            self._cos[:k, g] = row
        self._stale.clear()
        sims = np.where(self._below[:k, :k], -np.inf, self._cos[:k, :k])
        i, j = divmod(int(np.argmax(sims)), k)
        self.totals[i] += self.totals[j]
        self.norms[i] = np.linalg.norm(self.totals[i])
        self.weights[i] += self.weights[j]
        self.members[i] = sorted([*self.members[i], *self.members[j]])
        for array in (self.totals, self.norms):
            array[j : k - 1] = array[j + 1 : k]
            array[k - 1] = 0.0
        self._cos[j : k - 1, :] = self._cos[j + 1 : k, :]
        self._cos[:, j : k - 1] = self._cos[:, j + 1 : k]
        del self.weights[j], self.members[j]
        self._stale.add(i)
