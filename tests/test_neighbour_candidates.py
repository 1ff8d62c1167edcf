"""Candidates from the content-neighbour lists (``NeighbourScorer.candidates``): the
items nearest the user's liked items, retrieved without a vector search when the
catalog is too big to rank whole."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownrank.engine import scorer_neighbours
from ownrank.engine.config import EngineConfig, RankingConfig
from ownrank.engine.content_neighbours import SIM_SCALE
from ownrank.engine.scorer_neighbours import NeighbourScorer
from ownrank.engine.scoring import RatedItems

from conftest import WordHashEncoder, make_engine

K = 4  # list length


class Lists:
    """Stored lists by owner row, as ``NeighbourLists.get_many`` pads them."""

    def __init__(self, lists: dict[int, list[tuple[int, int]]]) -> None:
        self.lists = lists

    def get_many(self, _txn: Any, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = np.full((len(owners), K), -1, np.int64)
        sims = np.zeros((len(owners), K), np.int32)
        for i, owner in enumerate(owners.tolist()):
            for j, (row, sim) in enumerate(self.lists.get(owner, [])):
                rows[i, j], sims[i, j] = row, sim
        return rows, sims


class Txn:
    def id(self) -> int:
        return 1


def scorer_over(lists: Lists, power: float) -> NeighbourScorer:
    catalog: Any = SimpleNamespace(neighbours=SimpleNamespace(lists=lists))
    config = EngineConfig(content_neighbours=K, ranking=RankingConfig(neighbour_power=power))
    return NeighbourScorer(catalog, config)


def by_hand(
    lists: Lists, rated: RatedItems, want: int, exclude: set[int], power: float
) -> list[int]:
    """The same, one entry at a time: the newest ``neighbour_items`` rated items still
    in the catalog, their lists summed by row (a disliked item's subtracting)."""
    live = [k for k in range(len(rated.rows)) if rated.rows[k] >= 0][-256:]
    total: dict[int, float] = {}
    for k in live:
        for row, sim in lists.lists.get(int(rated.rows[k]), []):
            closeness = max(0.0, sim / SIM_SCALE) ** power
            total[row] = total.get(row, 0.0) + float(rated.strengths[k]) * closeness
    kept = [(-t, row) for row, t in total.items() if t > 0.0 and row not in exclude]
    return [row for _t, row in sorted(kept)[:want]]


entries = st.lists(
    st.tuples(st.integers(0, 60), st.sampled_from([-200, 0, 300, 500, 500, 1000])),
    max_size=K,
    unique_by=lambda e: e[0],
)


@settings(max_examples=120, deadline=None)
@given(
    lists=st.dictionaries(st.integers(0, 60), entries, max_size=12),
    rated=st.lists(
        st.tuples(st.integers(-1, 60), st.sampled_from([-1.0, 0.5, 1.0, 1.0, 2.0])), max_size=10
    ),
    want=st.integers(1, 12),
    exclude=st.sets(st.integers(-1, 60), max_size=5),
    dense=st.booleans(),
)
def test_candidates_are_the_best_sums_ties_by_row(
    lists: dict[int, list[tuple[int, int]]],
    rated: list[tuple[int, float]],
    want: int,
    exclude: set[int],
    dense: bool,
) -> None:
    """Both ways of summing (one array over every row; sorting the entries) give the
    best ``want`` sums, ties by the smaller row, never an excluded row or a row whose
    sum is 0 or below (disliked items subtract). Similarities repeat, so sums tie."""
    stored = Lists(lists)
    items = RatedItems(
        [f"r{k}" for k in range(len(rated))],
        np.arange(len(rated)),
        np.array([s for _r, s in rated], np.float64),
        np.array([r for r, _s in rated], np.int64),
    )
    power = 1.0  # (integer sums: ties are exact)
    scorer = scorer_over(stored, power)
    old = scorer_neighbours.DENSE_SUM_ROWS_PER_ENTRY
    scorer_neighbours.DENSE_SUM_ROWS_PER_ENTRY = 10_000 if dense else 0
    try:
        found = scorer.candidates(Txn(), items, want, np.array(sorted(exclude), np.int64))
    finally:
        scorer_neighbours.DENSE_SUM_ROWS_PER_ENTRY = old
    assert found.tolist() == by_hand(stored, items, want, exclude, power)


def _catalog(n: int) -> list[dict[str, str]]:
    words = ["red", "blue", "green", "fast", "slow", "tall", "short", "warm", "cold", "dry"]
    rng = np.random.default_rng(3)
    return [{"id": f"i{i}", "title": " ".join(rng.choice(words, 3))} for i in range(n)]


def _likes(items: list[str]) -> list[dict[str, Any]]:
    return [{"kind": "like", "item_id": i} for i in items]


def _retrieving(engine: Any, near: int) -> dict[int, str]:
    """The rows (and what retrieved each) of one recommend for "me"."""
    seen: list[tuple[Any, list[str]]] = []
    selector = engine._users.ranking.candidates
    retrieve = selector.retrieve
    selector.retrieve = lambda *a, **k: seen.append(retrieve(*a, **k)) or seen[-1]
    try:
        engine.recommend("me", 5)
    finally:
        selector.retrieve = retrieve
    rows, why = seen[0]
    assert len(set(rows.tolist())) == len(rows) == len(why)  # each row once
    return dict(zip(rows.tolist(), why, strict=True))


@pytest.mark.parametrize("interest_queries", [0, 3])
def test_a_big_catalog_retrieves_the_liked_items_neighbours(
    tmp_path: Path, interest_queries: int
) -> None:
    """With retrieval (``full_rank_limit`` below the catalog) the liked items' lists
    come in as candidates (those no other source found: ``retrieved_by: neighbours``),
    never the user's own items; a filter holds."""
    liked = ["i7", "i40", "i77", "i120"]

    def engine_with(path: Path, near: int) -> Any:
        ranking = RankingConfig(
            full_rank_limit=10,
            candidates=10,
            neighbour_candidates=near,
            interest_queries=interest_queries,
        )
        engine = make_engine(path, WordHashEncoder(), content_neighbours=4, ranking=ranking)
        engine.catalog.upsert(_catalog(150))
        for u in range(20):  # a crowd that makes other items the popular ones
            engine.interact(f"crowd{u}", _likes([f"i{i}" for i in range(100, 110)]))
        engine.interact("me", _likes(liked))
        return engine

    with engine_with(tmp_path / "near", 16) as engine:
        with engine._env.read() as txn:
            mine = engine.catalog.keeper.live_rows(liked)
            listed = {
                int(r)
                for found in engine.catalog.neighbours.of_rows(txn, mine.tolist())
                if found is not None
                for r in found[0]
            } - set(mine.tolist())
        made: list[int] = []  # (counted: one sum a call, for retrieval and the score)
        of = scorer_neighbours.Sums.of
        counted = staticmethod(lambda *a: made.append(1) or of(*a))
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(scorer_neighbours.Sums, "of", counted)
            rows = _retrieving(engine, 16)
        scorer = engine._users.ranking.neighbour
        assert made == [1] and scorer._last_sums is None  # shared, then dropped
        assert listed <= set(rows)  # every entry of the lists (at most 16 of them)
        near = {row for row, why in rows.items() if why == "neighbours"}
        assert near and not near & set(mine.tolist())  # (other sources may find them)
        # a filter that admits none of the lists: none retrieved by them
        others = [
            f"i{i}"
            for i in range(150)
            if engine.catalog.keeper.live_rows([f"i{i}"])[0] not in listed
        ]
        recs = engine.recommend("me", 5, filters={"id": {"$in": others}})
        assert recs and all(r.item_id in others for r in recs)
        assert all(r.explanation["retrieved_by"] != "neighbours" for r in recs)
    with engine_with(tmp_path / "none", 0) as engine:  # without: some are missed
        assert not listed <= set(_retrieving(engine, 0))


@pytest.mark.parametrize(("lists", "searches"), [(4, 1), (0, 4)])
def test_without_lists_retrieval_searches_around_the_interests(
    tmp_path: Path, lists: int, searches: int
) -> None:
    """``interest_queries`` unset: no search around the interests while the lists give
    candidates; with the lists off, the head's and three interests' searches."""
    ranking = RankingConfig(full_rank_limit=10, candidates=10)
    with make_engine(
        tmp_path, WordHashEncoder(), content_neighbours=lists, ranking=ranking
    ) as engine:
        engine.catalog.upsert(_catalog(150))
        engine.interact("me", _likes([f"i{i}" for i in range(0, 150, 5)]))
        keeper = engine.catalog.keeper
        asked: list[int] = []
        search_many = keeper.search_many
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                keeper,
                "search_many",
                lambda q, *a, **k: asked.append(len(q)) or search_many(q, *a, **k),
            )
            assert engine.recommend("me", 5)
        assert asked[0] == searches  # (then the popular direction's, kept for all)
