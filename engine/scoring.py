"""What a scorer is: one named part of a candidate's score, and what explains it.

The ranking pipeline (``recommender.py``) runs each registered scorer over the
eligible candidates of a call; a candidate's score is the sum of the weighted
parts, in registration order, and its explanation names the largest part, with
that scorer's own details (``ScorePart.explain``). A new scorer is one module with a
class like the ones in ``scorer_*.py`` plus one line in ``default_scorers``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from .config import RankingConfig
from .personal_model import NetFeedback
from .user_record import PersonalModel, UserRecord

if TYPE_CHECKING:
    from .candidates import CandidatePool, Interest


@dataclass
class RankingContext:
    """Everything a scorer may read about one ranking call (it writes nothing)."""

    txn: Any  # the read snapshot of the call
    config: RankingConfig
    record: UserRecord | None
    model: PersonalModel | None
    user_vectors: Mapping[str, np.ndarray]  # the vectors of the user's items (read lazily)
    interests_of: Callable[[], list[Interest]]
    pool: CandidatePool
    eligible: np.ndarray  # positions in the pool of the candidates being scored
    ids: Sequence[str]  # their item ids (looked up on demand)
    items: list[Any | None]  # their items, when the call read them (else empty)
    # the net feedback on each of the user's items and queries (computed once a call:
    # candidate retrieval and several scorers read it)
    feedback: NetFeedback
    # the live row in the index of each ref of ``feedback.log`` (-1: a query, or an
    # item not in the catalog now)
    ref_rows: np.ndarray

    @cached_property
    def interests(self) -> list[Interest]:
        """The user's interests (computed by the first scorer or explanation that asks)."""
        return self.interests_of()

    @cached_property
    def rated(self) -> RatedItems:
        """The items the user has feedback on, as arrays (built once a call for the
        scorers that read them)."""
        return RatedItems.of(self.feedback, self.ref_rows)


@dataclass(frozen=True)
class RatedItems:
    """The items (not queries) the user has net feedback on, oldest first by their
    newest event (``personal_model.observations``): ids, signed strengths, and live
    rows in the index (-1: not in the catalog now).

    >>> strengths, rows = np.array([1.0, -1.0]), np.array([5, 7])
    >>> rated = RatedItems(["a", "q", "b"], np.array([2, 0]), strengths, rows)
    >>> rated.refs
    ['b', 'a']
    """

    names: Sequence[str]  # every ref of the log (items and queries)
    items: np.ndarray  # which of them are these items, in this order
    strengths: np.ndarray  # float64
    rows: np.ndarray  # int64

    @classmethod
    def of(cls, feedback: NetFeedback, ref_rows: np.ndarray) -> RatedItems:
        """The items of ``feedback`` with their live rows (``ref_rows``: of every ref)."""
        items = feedback.items
        return cls(feedback.log.refs, items, feedback.net[items], ref_rows[items])

    @cached_property
    def refs(self) -> list[str]:
        """The items' ids (built when first asked for: scoring reads rows and
        strengths; only explanations and vectors not in the pool need ids)."""
        names = self.names
        return [names[i] for i in self.items.tolist()]


Explain = Callable[[int, np.ndarray], dict[str, Any]]


@dataclass(frozen=True)
class ScorePart:
    """A scorer's values for the candidates (before its weight), and the details it
    adds to an explanation when its part is the largest (candidate index, vector).
    ``prepare``, if given, is called once with the candidates a call will explain,
    before any ``explain``."""

    values: np.ndarray
    explain: Explain | None = None
    prepare: Callable[[Sequence[int]], None] | None = None


class BestEntry:
    """Which source gave a candidate its largest entry, among the entries of a sparse
    sum (``position``: each entry's pool position; ``source``: what it came from, e.g. a
    liked item, or an int w: entry i came from source i // w, as the rows of padded
    blocks do; ``contribution``: its value; ``pool_size``: one past the largest
    position, which may be a spare one for entries outside the pool, never a
    candidate's), found for the candidates a call explains in one pass over the
    entries (``prepare``); another candidate's by a scan of every entry.

    >>> best = BestEntry(np.array([3, 1, 3]), np.array([0, 1, 2]), np.array([0.5, 0.2, 0.9]),
    ...                  eligible=np.array([1, 3]), pool_size=4)
    >>> best.prepare([1])
    >>> best.source_of(1), best.source_of(0)  # candidate 1 is pool row 3: entries 0 and 2
    (2, 1)
    >>> blocks = BestEntry(np.array([3, 1, 3, 4]), 2, np.array([0.5, 0.2, 0.9, 0.0]),
    ...                    eligible=np.array([1, 3]), pool_size=5)
    >>> blocks.source_of(1), blocks.source_of(0)  # entry 2 is in the second block
    (1, 0)
    """

    def __init__(
        self,
        position: np.ndarray,
        source: np.ndarray | int,
        contribution: np.ndarray,
        eligible: np.ndarray,
        pool_size: int,
    ) -> None:
        self.entries = (position, contribution)
        self.source = source
        self.eligible = eligible
        self.pool_size = pool_size
        self.best: dict[int, int] = {}  # pool position -> source, for those prepared
        self.prepared = np.zeros(0, bool)

    def _sources(self, entries: np.ndarray) -> np.ndarray:
        """The source of each of these entries."""
        if isinstance(self.source, int):
            return entries // self.source
        return np.asarray(self.source[entries])

    def prepare(self, candidates: Sequence[int]) -> None:
        marked = np.zeros(self.pool_size, bool)
        marked[self.eligible[list(candidates)]] = True
        position, contribution = self.entries
        keep = np.flatnonzero(marked[position])
        at = position[keep]
        # by position, then the largest contribution, then the first entry: the first
        # of each position's run is its best (as ``source_of``'s argmax picks)
        order = np.lexsort((keep, -contribution[keep], at))
        at = at[order]
        first = np.flatnonzero(np.diff(at, prepend=-1))
        sources = self._sources(keep[order[first]])
        self.best = dict(zip(at[first].tolist(), sources.tolist(), strict=True))
        self.prepared = marked

    def source_of(self, k: int) -> int | None:
        """The source of candidate ``k``'s largest entry (the first of equals), or None
        when it has no entry."""
        row = int(self.eligible[k])
        if row < len(self.prepared) and self.prepared[row]:
            return self.best.get(row)
        position, contribution = self.entries
        mine = np.flatnonzero(position == row)
        if not len(mine):
            return None
        return int(self._sources(mine[np.argmax(contribution[mine])][None])[0])


class Scorer(Protocol):
    name: str

    def weight(self, cfg: RankingConfig) -> float: ...

    def score(self, ctx: RankingContext) -> ScorePart: ...


@runtime_checkable
class Penalty(Scorer, Protocol):
    """A scorer whose part only lowers a score (values <= 0, weight >= 0). Without
    diversity the ranker asks it only for the candidates that can still reach the top
    n (``ranker.LazyScores``): a few rows, not a pass over the whole pool."""

    def penalty(self, ctx: RankingContext) -> Callable[[np.ndarray], np.ndarray] | None:
        """The (unweighted) part of the eligible candidates at the given positions;
        None: 0 for every candidate."""
        ...
