"""The neighbour scorer: how close each candidate is to the items the user rated.

Item-to-item similarity in the frozen base model's space, with the user's own
feedback strengths as weights; reads the user's record, writes nothing.

A sparse sum over the stored content-neighbour lists of the rated items
(``content_neighbours.py``): a call touches rated x k list entries. With the
lists turned off (``EngineConfig.content_neighbours = 0``) every candidate is
compared with every rated item instead (the dense path: slower, kept to measure
against).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..storage.lists_in_memory import ListsInMemory
from .blas import single_threaded
from .candidates import NO_ROWS, CandidatePool, centred_units, contains_rows
from .catalog import Catalog
from .config import EngineConfig, RankingConfig
from .content_neighbours import SIM_SCALE
from .personal_model import Observation, observations
from .scoring import BestEntry, RankingContext, RatedItems, ScorePart
from .user_record import UserRecord

# ``Sums.of`` sums into one array over every row up to the largest it meets while that
# array is at most this many times the entries (else it sorts the entries; at 100k
# items the array took 0.30 ms a call against 0.37 sorted, bench/README.md)
DENSE_SUM_ROWS_PER_ENTRY = 32


@dataclass(frozen=True)
class Sums:
    """The entries of a user's rated items' lists, owner by owner, and their sums by
    row: what a ranking call's retrieval and neighbour score both read.

    >>> sums = Sums.of(np.array([4, 2, 4, -1]), np.array([0.5, 0.25, 1.0, 0.0]), width=2)
    >>> sums.found.tolist(), sums.total.tolist(), sums.at(np.array([2, 3, 4])).tolist()
    ([2, 4], [0.25, 1.5], [0.25, 0.0, 1.5])
    """

    rows: np.ndarray  # each entry's row (-1: padding)
    contribution: np.ndarray  # strength * closeness of each entry
    width: int  # entries per owner
    found: np.ndarray  # the rows with an entry, ascending
    total: np.ndarray  # their sums, each in entry order (as a sum by pool position)
    top_row: int  # the largest row of an entry (-1: none)

    @classmethod
    def of(cls, rows: np.ndarray, contribution: np.ndarray, width: int) -> Sums:
        top_row = int(rows.max(initial=-1))
        if top_row < 0:
            return cls(rows, contribution, width, NO_ROWS, np.zeros(0), top_row)
        if top_row < DENSE_SUM_ROWS_PER_ENTRY * len(rows):  # one array over every row
            slots = np.where(rows >= 0, rows, top_row + 1)  # (padding: a last slot)
            dense = np.bincount(slots, weights=contribution, minlength=top_row + 2)
            present = np.zeros(top_row + 2, bool)
            present[slots] = True
            found = np.flatnonzero(present[:-1])
            total = dense[found]
        else:  # rows far apart (a big catalog): only those present, sorted
            keep = rows >= 0
            found, where = np.unique(rows[keep], return_inverse=True)
            total = np.bincount(where, weights=contribution[keep], minlength=len(found))
        return cls(rows, contribution, width, found, np.asarray(total, np.float64), top_row)

    def at(self, rows: np.ndarray) -> np.ndarray:
        """The sum of each of ``rows`` (0 for a row without an entry)."""
        if not len(self.found):
            return np.zeros(len(rows))
        at = np.minimum(np.searchsorted(self.found, rows), len(self.found) - 1)
        return np.where(self.found[at] == rows, self.total[at], 0.0)


@dataclass(frozen=True)
class Neighbours:
    """The neighbour score of each candidate and the rated item that contributed most."""

    scores: np.ndarray
    because: Callable[[int], str | None]  # candidate -> the rated item that explains it
    prepare: Callable[[Sequence[int]], None] | None = None  # (ScorePart.prepare)

    @staticmethod
    def none(count: int) -> Neighbours:
        return Neighbours(np.zeros(count), lambda _k: None)


class NeighbourScorer:
    name = "neighbours"

    def __init__(self, catalog: Catalog, config: EngineConfig) -> None:
        self.catalog = catalog
        self.config = config
        # the snapshot (LMDB transaction id) at which the lists were last found current
        self._current_at = -1
        # closeness of every entry of the lists in memory, with the lists it is of
        self._kept_closeness: tuple[ListsInMemory, np.ndarray] | None = None
        # the calling user's sums: (their rated items' names, snapshot id, sums);
        # dropped when the ranking call ends (``end_call``)
        self._last_sums: tuple[Any, int, Sums] | None = None

    def weight(self, cfg: RankingConfig) -> float:
        return cfg.neighbour_weight

    def score(self, ctx: RankingContext) -> ScorePart:
        count = len(ctx.ids)
        found = Neighbours.none(count)
        if ctx.model is not None and ctx.record is not None and self.weight(ctx.config) > 0.0:
            if self.config.content_neighbours > 0:
                found = self.from_lists(ctx.txn, ctx.rated, ctx.pool, ctx.eligible)
            else:
                found = self.neighbours(ctx.record, ctx.user_vectors, ctx.pool.units, ctx.eligible)

        def explain(k: int, _vector: np.ndarray) -> dict[str, Any]:
            because = found.because(k)
            return {} if because is None else {"because_of": because}

        return ScorePart(found.scores, explain, found.prepare)

    def rated(self, record: UserRecord, vectors: Mapping[str, np.ndarray]) -> list[Observation]:
        """The newest ``neighbour_items`` rated catalog items, oldest first."""
        obs = [
            o
            for o in observations(record.columns, self.config.learner)
            if not o.is_query and o.ref in vectors
        ]
        return obs[-self.config.ranking.neighbour_items :]

    def end_call(self) -> None:
        """Drop the last user's sums (kept only from retrieval to scoring in one call):
        after an erasure nothing derived from the user stays in memory."""
        self._last_sums = None

    def from_lists(
        self, txn: Any, rated: RatedItems, pool: CandidatePool, eligible: np.ndarray
    ) -> Neighbours:
        """The neighbour score as a sum over the rated items' neighbour lists:
        strength * max(0, cos)^neighbour_power for each candidate in a rated item's
        list, divided by the total absolute strength, standardized over the eligible
        candidates. A candidate in no list scores as if its similarities were 0.

        A kept pool (a catalog ranked whole) sums by pool position from tables over the
        lists in memory; any other pool reads the call's sums by row (``_sums``), which
        retrieval read first. Both add the same entries in the same order: the same
        values, bit for bit."""
        live = self._live(rated)
        if not len(live):  # (the newest rated items still in the catalog)
            return Neighbours.none(len(eligible))
        neighbours = self.catalog.neighbours
        if self._current_at != txn.id():  # (one look per snapshot of the store)
            if neighbours.behind(txn):
                neighbours.start_background()
            else:
                self._current_at = txn.id()
        strengths = rated.strengths[live]
        lists = neighbours.lists.in_memory(txn)
        slots = None if lists is None else pool.list_slots(lists)
        if lists is not None and slots is not None:
            # the rated items' lists as padded blocks (padding: similarity 0), each
            # entry's closeness and its position in the pool (one past the pool for
            # entries outside it, and for the padding): one operation over the blocks
            at = np.minimum(rated.rows[live], len(slots) - 1)  # (the last row: no list)
            position, closeness = slots[at], self._closeness_of(lists)[at]
            contribution = (strengths[:, None] * closeness).ravel()
            position = position.ravel()
            outside = len(pool.rows)
            total = np.bincount(position, weights=contribution, minlength=outside + 1)
            raw = np.asarray(total[eligible], np.float64)  # (bincount of nothing is int64)
            best = BestEntry(position, closeness.shape[1], contribution, eligible, outside + 1)
        else:
            sums = self._sums(txn, rated)
            candidates = pool.rows[eligible]
            raw = sums.at(candidates)
            # the entries by row, the padding in a spare slot past every row
            spare = max(sums.top_row, int(candidates.max(initial=-1))) + 1
            position = np.where(sums.rows >= 0, sums.rows, spare)
            best = BestEntry(position, sums.width, sums.contribution, candidates, spare + 1)
        raw *= 1.0 / float(np.abs(strengths).sum())
        raw -= float(raw.sum()) / len(raw) if len(raw) else 0.0
        spread = math.sqrt(float(raw @ raw) / len(raw)) if len(raw) else 0.0
        scores = raw / spread if spread > 1e-12 else np.zeros(len(raw))

        def because(k: int) -> str | None:
            """The rated item whose entry gave candidate ``k`` the most."""
            found = best.source_of(k)
            return None if found is None else rated.refs[int(live[found])]

        return Neighbours(scores, because, best.prepare)

    def candidates(self, txn: Any, rated: RatedItems, want: int, exclude: np.ndarray) -> np.ndarray:
        """Rows of the ``want`` items with the largest neighbour sums (the score before
        it is scaled and standardized: over the lists of the newest
        ``neighbour_items`` rated items, disliked ones subtracting), best first, ties
        by row; never a row in ``exclude`` (the user's own items) nor one whose sum is
        0 or below. Catalogs too big to rank whole retrieve them as candidates: what
        lies near many liked items, without a vector search."""
        if want <= 0 or self.config.content_neighbours <= 0 or not (rated.rows >= 0).any():
            return NO_ROWS  # (no rated item in the catalog: no list to read)
        sums = self._sums(txn, rated)
        found, total = sums.found, sums.total
        keep = total > 0.0
        if len(exclude):
            keep &= ~contains_rows(np.sort(exclude), found)
        found, total = found[keep], total[keep]
        if len(found) > want:  # the best ``want`` (ties: the smaller rows), then sorted
            cut = -np.partition(-total, want - 1)[want - 1]
            above = np.flatnonzero(total > cut)
            tied = np.flatnonzero(total == cut)[: want - len(above)]  # (found: ascending)
            top = np.concatenate([above, tied])
            found, total = found[top], total[top]
        best: np.ndarray = found[np.lexsort((found, -total))]
        return best

    def _live(self, rated: RatedItems) -> np.ndarray:
        """The newest ``neighbour_items`` rated items still in the catalog (indices)."""
        return np.flatnonzero(rated.rows >= 0)[-self.config.ranking.neighbour_items :]

    def _sums(self, txn: Any, rated: RatedItems) -> Sums:
        """``Sums`` of the rated items' lists; computed once a call (retrieval and the
        score ask for the same user and LMDB snapshot: any write, an erasure's too,
        gives a new snapshot id)."""
        stamp = txn.id()
        last = self._last_sums
        if last is not None and last[0] is rated.names and last[1] == stamp:
            return last[2]
        live = self._live(rated)
        rows, sims = self.catalog.neighbours.lists.get_many(txn, rated.rows[live])
        contribution = (rated.strengths[live][:, None] * self._closeness(sims)).ravel()
        sums = Sums.of(rows.ravel(), contribution, rows.shape[1])
        self._last_sums = (rated.names, stamp, sums)
        return sums

    def _closeness_of(self, lists: ListsInMemory) -> np.ndarray:
        """``_closeness`` of every entry of the lists in memory, and a last row of
        zeros (as ``CandidatePool.list_slots``); kept while they are current."""
        found = self._kept_closeness
        if found is not None and found[0] is lists:
            return found[1]
        table = self._closeness(np.vstack([lists.sims, np.zeros_like(lists.sims[:1])]))
        self._kept_closeness = (lists, table)
        return table

    def _closeness(self, sims: np.ndarray) -> np.ndarray:
        """max(0, cos)^neighbour_power from stored similarities."""
        closeness = sims * (1.0 / SIM_SCALE)
        np.maximum(closeness, 0.0, out=closeness)
        raise_to(closeness, self.config.ranking.neighbour_power)
        return closeness

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
        obs = self.rated(record, vectors)
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
        best = np.argmax(weighted, axis=0)
        return Neighbours(scores.astype(np.float64), lambda k: obs[int(best[k])].ref)


def raise_to(values: np.ndarray, power: float) -> None:
    """values **= power in place; whole powers by repeated products (pow() is slow)."""
    if power == int(power) and 1 <= power <= 8:
        base = values.copy()
        for _ in range(int(power) - 1):
            values *= base
    else:
        values **= power
