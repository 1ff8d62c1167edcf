"""The ranker, the last stage of ranking: exclusions, top-n or maximal marginal
relevance, and the explanation of each result from its score's parts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Required, TypedDict

import numpy as np

from .items import Item
from .scoring import Explain


class Explanation(TypedDict, total=False):
    """Why an item was recommended: its largest score part, what retrieved it, every
    named part of its score (one per scorer: later scorers add parts, not fields),
    and the details the largest part's scorer gives."""

    reason: Required[str]  # the name of the largest part
    # catalog, personal, interest, neighbours, popular, collaborative, recent
    retrieved_by: Required[str]
    parts: Required[dict[str, float]]  # each scorer's weighted part, rounded to 4 places
    because_of: str  # the rated item (neighbours) or interest member (personal) closest
    interest: int  # the index of the user's interest closest (personal)


@dataclass(frozen=True)
class Recommendation:
    item_id: str
    score: float
    item: Item
    explanation: Explanation


@dataclass
class LazyScores:
    """Scores that are ``known`` plus parts that only lower them (``scoring.Penalty``),
    computed lazily: ``top`` computes those parts only for the candidates that can
    still reach the top ``n``, ``complete`` for the rest. Either way the top ``n`` is
    the one of the fully computed scores: a candidate left uncomputed has ``known``
    below the n-th exact score, so it neither enters nor ties.
    """

    known: np.ndarray
    penalties: Mapping[str, Callable[[np.ndarray], np.ndarray]]  # weighted, at positions
    scores: np.ndarray = field(init=False)  # exact where ``done``, else ``known``
    parts: dict[str, np.ndarray] = field(init=False)  # each penalty; 0 where not computed
    done: np.ndarray = field(init=False)
    best: list[int] | None = field(init=False, default=None)  # the top n, once known

    def __post_init__(self) -> None:
        self.scores = self.known.copy()
        self.parts = {name: np.zeros(len(self.known)) for name in self.penalties}
        self.done = np.zeros(len(self.known), bool)

    def top(self, n: int, first: int = 32) -> np.ndarray:
        """Exact wherever it decides the top ``n``; returns the scores. Two rounds: the
        ``max(2n, first)`` best by ``known``, then, unless the n-th exact score found
        is above every other candidate's ``known``, every candidate whose ``known``
        reaches it. ``best`` is then the top ``n`` (``top_n``'s order).

        >>> lazy = LazyScores(np.array([3.0, 2.0, 1.0, 0.5]), {"no": lambda at: -2.0 * (at == 0)})
        >>> lazy.top(1, first=1).tolist(), lazy.done.tolist(), lazy.best
        ([1.0, 2.0, 1.0, 0.5], [True, True, False, False], [1])
        """
        count = len(self.known)
        take = max(2 * n, first)
        if take >= count or n > count:
            scores = self.complete()
            self.best = top_n(scores, n)
            return scores
        computed = np.argpartition(self.scores, count - take)[count - take :]
        self._compute(computed)
        exact = self.scores[computed]
        nth = np.partition(exact, take - n)[take - n]
        # every other candidate's ``known`` (and so its exact score) is at most the
        # least ``known`` computed: when the n-th exact score is above it, done
        if nth <= self.known[computed].min():
            more = np.flatnonzero(~self.done & (self.scores >= nth))
            self._compute(more)
            computed = np.concatenate([computed, more])
        self.best = top_n(self.scores[computed], n, computed)
        return self.scores

    def complete(self) -> np.ndarray:
        """Exact everywhere; returns the scores."""
        self._compute(np.flatnonzero(~self.done))
        return self.scores

    def _compute(self, positions: np.ndarray) -> None:
        if not len(positions):
            return
        total = self.known[positions]
        for name, penalty in self.penalties.items():
            values = penalty(positions)
            self.parts[name][positions] = values
            total = total + values
        self.scores[positions] = total
        self.done[positions] = True


def select_live(
    item_of: Callable[[str], Item | None],
    ids: Sequence[str],
    scores: np.ndarray,
    vectors: Callable[[np.ndarray], np.ndarray],
    n: int,
    diversity: float,
    items: Sequence[Item | None],
    complete: Callable[[], np.ndarray] | None = None,
    best: list[int] | None = None,
) -> tuple[list[int], dict[int, Item]]:
    """The top ``n`` among candidates whose item still exists (``item_of``: the item in
    the call's read snapshot, or None), with those items.

    Candidates come from the in-memory index, which may lag a catalog delete
    committed by another thread or process: such an item simply drops out (and the
    next one takes its place), so no result names an item deleted before the
    snapshot was taken. ``scores`` may be exact only where they decide the top ``n``
    (``LazyScores.top``): ``complete`` then gives them everywhere, for the
    choice without the candidates that are gone; ``best``, the top ``n`` if known
    (``LazyScores.best``), is the choice while none is gone."""
    known: dict[int, Item | None] = dict(enumerate(items)) if items else {}
    gone = np.array([k for k, item in known.items() if item is None], np.int64)
    while True:
        if gone.size:
            if complete is not None:
                scores, complete = complete(), None
            live = np.setdiff1d(np.arange(len(ids)), gone)
            live_vectors = partial(_rows_of, vectors, live)
            order = [int(live[j]) for j in select(scores[live], live_vectors, n, diversity)]
        elif best is not None and diversity <= 0.0:
            order = best
        else:
            order = select(scores, vectors, n, diversity)
        for k in order:
            if k not in known:
                known[k] = item_of(ids[k])
        found = {k: item for k in order if (item := known[k]) is not None}
        if len(found) == len(order):
            return order, found
        gone = np.union1d(gone, np.asarray([k for k in order if k not in found], np.int64))


def _rows_of(
    vectors: Callable[[np.ndarray], np.ndarray], rows: np.ndarray, at: np.ndarray
) -> np.ndarray:
    return vectors(rows[at])


def select(
    scores: np.ndarray, vectors: Callable[[np.ndarray], np.ndarray], n: int, diversity: float
) -> list[int]:
    """Top ``n`` by score (ties: the earlier candidate first), or by maximal marginal
    relevance when ``diversity`` > 0 over the ``max(10n, 50)`` best (``vectors``: the
    vectors of the candidates at given positions, asked for only then, and only
    those of the best).

    >>> unit = np.eye(3)[[0, 0, 1, 2]]  # candidates 0 and 1 alike
    >>> select(np.array([1.0, 0.9, 0.5, 0.1]), lambda at: unit[at], 2, 0.0)
    [0, 1]
    >>> select(np.array([1.0, 0.9, 0.5, 0.1]), lambda at: unit[at], 2, 0.5)
    [0, 2]
    """
    if diversity <= 0.0:
        return top_n(scores, n)
    best = np.asarray(top_n(scores, max(n * 10, 50)), np.intp)  # (a full sort's order)
    vectors_of = vectors(best)
    spread = float(scores.std()) or 1.0
    relevance = ((scores - scores.mean()) / spread)[best]
    chosen: list[int] = []
    best_sim = np.full(len(best), -1.0)
    taken = np.zeros(len(best), bool)
    for _ in range(min(n, len(best))):
        # each value as the scalar expression computes it; argmax: the first of equals
        values = (1 - diversity) * relevance - diversity * 3.0 * best_sim
        values[taken] = -np.inf
        pick = int(np.argmax(values))
        taken[pick] = True
        chosen.append(int(best[pick]))
        best_sim = np.maximum(best_sim, vectors_of @ vectors_of[pick])
    return chosen


# up to this many scores a full sort is cheaper than a partition and a sort of the best
# (the lazy ranking's first round takes 32)
_SORT_WHOLE = 128


def top_n(scores: np.ndarray, n: int, positions: np.ndarray | None = None) -> list[int]:
    """The positions of the ``n`` highest scores, highest first, ties to the lower
    position (a full sort's order, without sorting everything); ``positions``: the
    position of each score, when they are not 0, 1, 2...

    >>> top_n(np.array([0.5, 2.0, 0.5, 1.0]), 3)
    [1, 3, 0]
    >>> top_n(np.array([0.5, 2.0, 0.5]), 2, positions=np.array([9, 4, 7]))
    [4, 7]
    """
    at = np.arange(len(scores)) if positions is None else positions
    if n >= len(scores) or len(scores) <= _SORT_WHOLE:
        order: list[int] = at[np.lexsort((at, -scores))][:n].tolist()
        return order
    floor = np.partition(scores, len(scores) - n)[len(scores) - n]
    near = np.flatnonzero(scores >= floor)  # the top n and any tie with the n-th
    best: list[int] = at[near[np.lexsort((at[near], -scores[near]))][:n]].tolist()
    return best


def contributions(
    parts: Mapping[str, np.ndarray], order: Sequence[int]
) -> tuple[list[dict[str, float]], list[str]]:
    """Each scorer's weighted part of the candidates ``order`` names, rounded to 4
    places, one dict per candidate (each part read once for all of them), and the
    part each candidate's explanation names: its largest rounded part, the first of
    equals.

    >>> contributions({"a": np.array([0.123456, 2.0]), "b": np.array([1.0, -0.5])}, [1, 0])
    ([{'a': 2.0, 'b': -0.5}, {'a': 0.1235, 'b': 1.0}], ['a', 'b'])
    >>> contributions({"p": np.array([0.2]), "q": np.array([0.9]), "r": np.array([0.9])}, [0])
    ([{'p': 0.2, 'q': 0.9, 'r': 0.9}], ['q'])
    """
    names, at = list(parts), np.asarray(order, np.intp)
    # one rounding for the whole table (Python's round, value by value, cost ~1 us
    # each), and one argmax for the reasons (first of equals, as ``max`` picks)
    table = np.round(np.array([parts[name].take(at) for name in names]).T, 4)
    reasons = [names[i] for i in table.argmax(axis=1).tolist()]
    # (each row has one value per name; zip without a keyword: passing ``strict`` costs
    # ~0.3 us a row, a quarter of building the dict)
    return [dict(zip(names, row)) for row in table.tolist()], reasons  # noqa: B905


def explain(
    k: int,
    vector: np.ndarray,
    parts: dict[str, float],
    explainers: Mapping[str, Explain | None],
    retrieved_by: str,
    reason: str,
) -> Explanation:
    """Why candidate ``k`` is there (see ``Explanation``), from its weighted ``parts``
    and the largest of them, ``reason`` (both from ``contributions``)."""
    out = Explanation(reason=reason, retrieved_by=retrieved_by, parts=parts)
    details = explainers.get(reason)
    if details is not None:
        out.update(details(k, vector))  # type: ignore[typeddict-item]
    return out
