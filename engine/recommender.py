"""The ranking pipeline: candidate selector -> scorers -> ranker (as in LensKit).

``rank`` takes a user's record (or none: cold start) and the vectors of their items,
selects candidates (``candidates.py``), has each registered scorer score the
eligible ones (``scorer_*.py``: personal head, neighbours, popularity,
collaborative, dislikes, recency; the score is the sum of the weighted parts; a
part that only lowers scores, the dislikes', is computed only for the candidates
that can still reach the top n, ``scoring.Penalty``) and hands them to the ranker
(``ranker.py``). Ranking reads
only: the one write a recommend may cause is the write path's ``catch_up``,
called by name before ranking.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .blas import blas_threads
from .candidates import NO_ROWS, CandidateSelector, Interest, interest_queries
from .catalog import Catalog, Hit, check_n
from .config import EngineConfig
from .event_columns import EventColumns
from .events import Event
from .item_cache import DecodedItems, ItemOf
from .items import Item
from .personal_model import LearnerConfig, net_feedback
from .ranker import (
    LazyScores,
    Recommendation,
    contributions,
    explain,
    select_live,
)
from .record_store import RecordStore
from .scorer_collaborative import CollaborativeScorer
from .scorer_dislikes import DislikeScorer
from .scorer_neighbours import NeighbourScorer
from .scorer_personal import PersonalScorer
from .scorer_popularity import Popularity
from .scorer_recency import RecencyScorer, recency_rank
from .scoring import Penalty, RankingContext, RatedItems, ScorePart, Scorer
from .shared_stats import SharedStatistics
from .user_record import SeenItems, UserRecord
from .write_path import WritePath

# cold start without popularity shows recent items, spread over topics
COLD_START_DIVERSITY = 0.3
# what a call without a user ranks with (never changed: shared by every such call)
NO_FEEDBACK = net_feedback(EventColumns.from_events([]), LearnerConfig())
NO_FINGERPRINTS = np.zeros(0, np.uint32)


def default_scorers(
    catalog: Catalog, config: EngineConfig, clock: Callable[[], float], popularity: Popularity
) -> list[Scorer]:
    """The scorers of every ranking call, in the order their parts are added."""
    return [
        PersonalScorer(),
        NeighbourScorer(catalog, config),
        popularity,
        CollaborativeScorer(popularity.shared, config, popularity),
        DislikeScorer(catalog, config),
        RecencyScorer(config, clock),
    ]


class Recommender:
    """Recommendations, stateless recommendations and personalized search."""

    def __init__(
        self,
        catalog: Catalog,
        shared: SharedStatistics,
        config: EngineConfig,
        clock: Callable[[], float],
        records: RecordStore,
        writes: WritePath,
    ) -> None:
        self.catalog = catalog
        self.env = catalog.env
        self.config = config
        self.records = records
        self.writes = writes
        self.popularity = Popularity(catalog, shared, config)
        self.candidates = CandidateSelector(catalog, shared, config, self.popularity)
        self.scorers = default_scorers(catalog, config, clock, self.popularity)
        self.recency = next(s for s in self.scorers if isinstance(s, RecencyScorer))
        self.collaborative = next(s for s in self.scorers if isinstance(s, CollaborativeScorer))
        self.neighbour = next(s for s in self.scorers if isinstance(s, NeighbourScorer))
        self.weights = {s.name: s.weight for s in self.scorers}
        # parts computed lazily (a protocol check per call costs ~20 us: once here)
        self.penalties = {s.name: s for s in self.scorers if isinstance(s, Penalty)}
        self.items = DecodedItems()  # the items results name (catalog data)

    def warm_up(self) -> None:
        """Compute what every ranking call shares (the catalog prior, the popularity
        direction, the candidate pools' caches) with a cold-start ranking that reads
        nothing of any user and writes nothing."""
        self.catalog.keeper.warm_up()
        self.catalog.neighbours.catch_up()
        self.catalog.neighbours.lists.hold_all()
        self.catalog.prior()
        with self.env.read() as txn:
            self.popularity.direction(txn)
        if self.catalog.keeper.index.ntotal:
            self.rank(None, {}, 10, None, True, 0.0)

    def recommend(
        self,
        user_id: str,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Items for this user: candidates around the head, interests and popular items,
        re-ranked by the personal model and priors. Unknown users get the cold-start list."""
        check_n(n)
        record = self.records.read(user_id)
        live = None
        if record is not None:
            log = record.columns
            rows = self.candidates.ref_rows(log)
            if (rows[~log.is_query] < 0).any():
                # catalog items the user had events on are gone: the write path drops
                # them (once: the rewrite drops those events)
                record = self.writes.catch_up(user_id)
            else:
                live = (log, rows)
        vectors = self.candidates.lazy_user_vectors(record)
        return self.rank(record, vectors, n, filters, exclude_seen, diversity, live)

    def recommend_from_history(
        self,
        events: Sequence[Event | Mapping[str, Any]],
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
        *,
        exclude_seen: bool = True,
        diversity: float = 0.0,
    ) -> list[Recommendation]:
        """Stateless: the same model built in memory from ``events``; nothing is stored."""
        check_n(n)
        record = self.writes.new_record()
        record.events, _unknown = self.writes.to_stored(events)
        self.writes.compact(record)
        vectors, _positives = self.writes.refit(record, keep_head=False)
        return self.rank(record, vectors, n, filters, exclude_seen, diversity)

    def rank(
        self,
        record: UserRecord | None,
        user_vectors: Mapping[str, np.ndarray],
        n: int,
        filters: Mapping[str, Any] | None,
        exclude_seen: bool,
        diversity: float,
        live: tuple[EventColumns, np.ndarray] | None = None,
    ) -> list[Recommendation]:
        """``live``: the record's events and the live row of each of their refs
        (``CandidateSelector.ref_rows``), if the caller has them. Nothing read or
        derived for the user outlives the call (the collaborative scorer's rows,
        shared by retrieval and scoring, are dropped at its end)."""
        try:
            return self._rank(record, user_vectors, n, filters, exclude_seen, diversity, live)
        finally:
            self.collaborative.end_call()
            self.neighbour.end_call()

    def _rank(
        self,
        record: UserRecord | None,
        user_vectors: Mapping[str, np.ndarray],
        n: int,
        filters: Mapping[str, Any] | None,
        exclude_seen: bool,
        diversity: float,
        live: tuple[EventColumns, np.ndarray] | None,
    ) -> list[Recommendation]:
        if not 0.0 <= diversity <= 1.0:
            raise InvalidInputError("diversity must be between 0 and 1")
        expr = self.catalog.parse_filters(filters)
        cfg = self.config.ranking
        model = record.model if record else None
        candidates = self.candidates

        @functools.cache  # (retrieval and an explanation may both ask: computed once)
        def interests_of() -> list[Interest]:
            if record is None or model is None:
                return []
            return candidates.interest_vectors(record, model, user_vectors)

        ref_rows: np.ndarray
        if record is None:
            feedback, ref_rows = NO_FEEDBACK, NO_ROWS
        else:
            if live is None:
                log = record.columns
                live = log, candidates.ref_rows(log)
            log, ref_rows = live
            feedback = net_feedback(log, self.config.learner)
        # what the user has seen: the log's items by their rows (a query's is -1: none),
        # and the earlier items
        if record is None or not exclude_seen:
            seen_rows, earlier = NO_ROWS, NO_FINGERPRINTS
        else:
            seen_rows, earlier = ref_rows, record.earlier.fingerprints()
        pool = candidates.small_pool(expr)
        if pool is not None:  # few enough to score every one
            why = ["catalog"] * len(pool.ids)
        else:
            # (retrieval filters by id)
            seen = record.seen() if record and exclude_seen else SeenItems.nothing()
            want = max(cfg.candidates, 3 * n)
            with self.env.read() as txn:  # items liked together with, and like, the user's
                also = self.collaborative.candidates(txn, feedback, cfg, want)
                near = self.neighbour.candidates(
                    txn, RatedItems.of(feedback, ref_rows), cfg.neighbour_candidates, ref_rows
                )
            interests = interests_of() if interest_queries(self.config) > 0 else []
            kept = record.head if record and exclude_seen else None
            rows, why = candidates.retrieve(model, interests, expr, seen, n, also, near, kept)
            pool = candidates.pool_of(rows.tolist())
            if len(pool.rows) < len(rows):  # (rows deleted since they were found: dropped)
                found_by = dict(zip(rows.tolist(), why, strict=True))
                why = [found_by[r] for r in pool.rows.tolist()]
        eligible = pool.unseen(seen_rows, earlier)
        if eligible.size == 0:
            return []
        # features over the whole pool (matrix products), then the eligible entries
        ids = pool.ids_at(eligible)
        # the scorers' products on blas_threads (retrieval above makes none)
        with self.env.read() as txn, blas_threads(self.config.blas_threads):
            ctx = RankingContext(
                txn,
                cfg,
                record,
                model,
                user_vectors,
                interests_of,
                pool,
                eligible,
                ids,
                [],
                feedback,
                ref_rows,
            )
            item_of = self._items_of(txn)
            # popularity first: without it (and without a model) the call is a cold start,
            # which ranks by date and so reads every candidate's item
            done: dict[str, ScorePart] = {"popularity": self.popularity.score(ctx)}
            cold_and_bare = model is None and not done["popularity"].values.any()
            if cfg.recency_weight > 0.0 or cold_and_bare:
                ctx.items = [item_of(i) for i in ids]
            if cold_and_bare:  # cold start with no priors: recent first, and diverse
                diversity = max(diversity, COLD_START_DIVERSITY)
            # parts that only lower a score: for the candidates that can reach the top n
            lazy: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
            for scorer in self.scorers:
                if scorer.name in done:
                    continue
                penalty = self.penalties.get(scorer.name)
                if penalty is not None and diversity <= 0.0:
                    lowering, weight = penalty.penalty(ctx), scorer.weight(cfg)
                    if lowering is None or weight == 0.0:
                        done[scorer.name] = ScorePart(np.zeros(len(ids)))
                    else:
                        lazy[scorer.name] = _weighted(lowering, weight)
                    continue
                done[scorer.name] = scorer.score(ctx)
            parts = {name: self.weights[name](cfg) * part.values for name, part in done.items()}
            if cold_and_bare:
                recency = done[self.recency.name].values
                parts["recency"] = recency if recency.any() else recency_rank(ctx.items)
            lazily = LazyScores(sum(parts.values(), start=np.zeros(len(ids))), lazy)
            scores = lazily.top(n) if lazy else lazily.scores
            parts = {
                s.name: parts[s.name] if s.name in parts else lazily.parts[s.name]
                for s in self.scorers
            }
            order, chosen = select_live(
                item_of,
                ids,
                scores,
                lambda at: pool.vectors[eligible[at]],
                n,
                diversity,
                ctx.items,
                lazily.complete if lazy else None,
                lazily.best,
            )
            explainers = {name: part.explain for name, part in done.items()}
            parts_of, reasons = contributions(parts, order)
            _prepare(done, order, reasons)
            # each result's pool position and score, read once for all of them
            at = eligible[order].tolist()
            return [
                Recommendation(
                    pool.ids[p],
                    score,
                    chosen[k],
                    explain(k, pool.vectors[p], parts_k, explainers, why[p], reason),
                )
                for k, p, score, parts_k, reason in zip(
                    order, at, scores[order].tolist(), parts_of, reasons, strict=True
                )
            ]

    def _item_or_none(self, txn: Any, item_id: str) -> Item | None:
        """The item as of ``txn``, or None if it was deleted since the index saw it."""
        item: Item | None = self.catalog.store.get_item_only(txn, item_id)
        return item

    def _items_of(self, txn: Any) -> ItemOf:
        """``_item_or_none`` in ``txn``, each item decoded once per catalog version."""
        version = self.catalog.store.catalog_seq(txn)
        return self.items.reader(version, lambda item_id: self._item_or_none(txn, item_id))

    def search(
        self,
        query: str,
        user_id: str | None = None,
        n: int = 10,
        filters: Mapping[str, Any] | None = None,
    ) -> list[Hit]:
        """Semantic search; with a user, over-fetched candidates re-ranked by the user's model.

        Personalized scores are ``relevance_z + search_personal_weight * taste_z``:
        query relevance and the user's head, each standardized (relevance over the
        candidates, taste over the catalog), so the weight means the same for any
        query.
        """
        check_n(n)
        record = self.records.read(user_id) if user_id is not None else None
        if record is None or record.model is None:
            return self.catalog.search(query, n, filters)
        expr = self.catalog.parse_filters(filters)
        qvec = self.catalog.embed_query(query)
        k = max(self.config.ranking.search_candidates, 10 * n)
        ranked = self.catalog.keeper.search(qvec, k, expr)
        model = record.model
        dim = self.catalog.keeper.dimension
        with self.env.read() as txn, blas_threads(self.config.blas_threads):
            found = [
                (item_id, vec, score)
                for row, score in ranked
                if (hit := self.catalog.store.get_vector(txn, row, dim)) is not None
                for item_id, vec in [hit]
            ]
            if not found:
                return []
            vectors = np.stack([vec for _i, vec, _s in found])
            taste = model.score(vectors)
            relevance = np.array([score for _i, _v, score in found])
            relevance = (relevance - relevance.mean()) / (relevance.std() or 1.0)
            combined = relevance + self.config.ranking.search_personal_weight * taste
            # only the results are decoded into items (a row's vector and its item are
            # deleted in one transaction, so a live row has its item: the check is cheap)
            hits: list[Hit] = []
            item_of = self._items_of(txn)
            for i in np.lexsort((np.arange(len(found)), -combined)):
                item = item_of(found[i][0])
                if item is not None:
                    hits.append(Hit(found[i][0], float(combined[i]), item))
                    if len(hits) == n:
                        break
            return hits


def _prepare(parts: Mapping[str, ScorePart], order: Sequence[int], reasons: list[str]) -> None:
    """Tell each part that has a ``prepare`` which candidates it will explain (those
    whose largest part it is), once, before the explanations."""
    for name, part in parts.items():
        if part.prepare is not None:
            mine = [k for k, reason in zip(order, reasons, strict=True) if reason == name]
            if mine:
                part.prepare(mine)


def _weighted(
    part: Callable[[np.ndarray], np.ndarray], weight: float
) -> Callable[[np.ndarray], np.ndarray]:
    def at(positions: np.ndarray) -> np.ndarray:
        return weight * part(positions)

    return at
