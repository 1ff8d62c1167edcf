"""Taste before popularity: a user's own "no" outweighs what everybody else liked.

On the shipped demo catalog with the real base model: 40 users like the same six
football items, which makes them the six most popular items of the store; a
newcomer is offered them, but a user who disliked three (other) football items
gets at most one football item in their top 10, with popularity alone and with
the collaborative layer on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest

from ownrank import BaseEncoder, Engine, EngineConfig
from ownrank.demo import CATALOG_PATH

pytestmark = pytest.mark.slow  # the real model embeds the demo catalog


@pytest.fixture(scope="module", params=["popularity", "collaborative"])
def crowd(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    real_encoder: BaseEncoder,
) -> Iterator[tuple[Engine, list[str], list[str]]]:
    """The demo catalog, 40 football fans and 20 users with assorted other likes."""
    config = EngineConfig(shared_statistics=request.param, lmdb_sync=False)
    engine = Engine(tmp_path_factory.mktemp(request.param), config, encoder=real_encoder)
    items = [json.loads(line) for line in CATALOG_PATH.read_text().splitlines()]
    engine.catalog.upsert(items)
    football = [i["id"] for i in items if i["properties"]["topic"] == "football"]
    others = [i["id"] for i in items if i["properties"]["topic"] != "football"]
    popular = football[:6]
    engine.interact_many(
        {f"fan-{k}": [{"kind": "like", "item_id": i} for i in popular] for k in range(40)}
    )
    engine.interact_many(
        {
            f"reader-{k}": [
                {"kind": "like", "item_id": others[(7 * k + j) % len(others)]} for j in range(5)
            ]
            for k in range(20)
        }
    )
    yield engine, football, popular
    engine.close()


def topic_count(recs: list, topic: str) -> int:  # type: ignore[type-arg]
    return [r.item.properties["topic"] for r in recs].count(topic)


def test_the_six_liked_football_items_are_the_most_popular(
    crowd: tuple[Engine, list[str], list[str]],
) -> None:
    engine, _football, popular = crowd
    with engine._env.read() as txn:
        assert sorted(engine._shared.top(txn, 6)) == sorted(popular)
    # somebody the engine knows nothing about is offered what the crowd likes
    assert topic_count(engine.recommend("newcomer", 10), "football") >= 5


def test_three_dislikes_in_a_topic_leave_at_most_one_of_it_in_the_top_10(
    crowd: tuple[Engine, list[str], list[str]],
) -> None:
    engine, football, popular = crowd
    disliked = [i for i in football if i not in popular][:3]
    engine.interact("grumpy", [{"kind": "dislike", "item_id": i} for i in disliked])
    recs = engine.recommend("grumpy", 10)
    assert len(recs) == 10
    assert topic_count(recs, "football") <= 1
    # the dislike part is what pushed the crowd's favourites down: among football
    # items alone, each of them carries a negative dislike part
    football_only = engine.recommend("grumpy", 20, filters={"topic": "football"})
    favourites = [r for r in football_only if r.item_id in popular]
    assert len(favourites) == len(popular)
    assert all(r.explanation["parts"]["dislikes"] < 0 for r in favourites)


def test_the_dislike_part_computed_lazily_ranks_as_when_computed_for_every_candidate(
    crowd: tuple[Engine, list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without diversity the dislike part is computed only for the candidates that can
    reach the top n (``ranker.LazyScores``); the lists equal the ones of the part
    computed for every candidate (the path with diversity)."""
    engine, football, popular = crowd
    disliked = [i for i in football if i not in popular]
    engine.interact("mixed", [{"kind": "dislike", "item_id": i} for i in disliked[:2]])
    engine.interact("mixed", [{"kind": "like", "item_id": disliked[3]}])
    users = ["grumpy", "mixed", "fan-0", "reader-3", "newcomer"]
    engine.interact("grumpy", [{"kind": "dislike", "item_id": i} for i in disliked[:3]])
    lazy = {(u, n): engine.recommend(u, n) for u in users for n in (1, 5, 10, 40)}
    monkeypatch.setattr(engine._users.ranking, "penalties", {})
    for (user, n), recs in lazy.items():
        full = engine.recommend(user, n)
        assert [r.item_id for r in recs] == [r.item_id for r in full], (user, n)
        assert [r.score for r in recs] == pytest.approx([r.score for r in full], abs=1e-9)
        assert [r.explanation for r in recs] == [r.explanation for r in full]


def test_the_dislike_part_is_the_same_when_the_pool_lacks_the_rated_items(
    crowd: tuple[Engine, list[str], list[str]],
) -> None:
    """The disliked and liked centres come from the pool's vectors when it holds every
    rated item, else each group from the index: a filter that leaves the liked item
    (or the disliked ones) out of the pool gives each candidate the dislike part it
    gets unfiltered."""
    engine, football, popular = crowd
    disliked = [i for i in football if i not in popular][:3]
    lines = CATALOG_PATH.read_text().splitlines()
    items = [{"id": i["id"], "topic": i["properties"]["topic"]} for i in map(json.loads, lines)]
    liked = next(i["id"] for i in items if i["topic"] == "jazz")
    user = "torn"
    engine.interact(user, [{"kind": "dislike", "item_id": i} for i in disliked])
    engine.interact(user, [{"kind": "like", "item_id": liked}])

    def dislike_parts(among: list[str]) -> dict[str, float]:
        recs = engine.recommend(user, 100, filters={"id": {"$in": among}})
        return {r.item_id: r.explanation["parts"]["dislikes"] for r in recs}

    topic_of = {i["id"]: i["topic"] for i in items}
    pushed = [topic_of[i] for i, part in dislike_parts(list(topic_of)).items() if part < 0]
    other = max((t for t in set(pushed) if t not in ("football", "jazz")), key=pushed.count)
    rated = [*disliked, liked]
    for topic, left_out in (("football", [liked]), (other, disliked)):
        ranked = [i for i, t in topic_of.items() if t == topic and i not in rated]
        held = dislike_parts([*rated, *ranked])  # the pool holds every rated item
        narrowed = dislike_parts([i for i in [*rated, *ranked] if i not in left_out])
        assert set(narrowed) == set(held) == set(ranked)
        assert any(part < 0 for part in held.values())
        for item_id, part in narrowed.items():
            assert part == pytest.approx(held[item_id], abs=2e-4)


def test_a_rated_item_deleted_during_the_call_leaves_the_dislike_part_as_if_never_rated(
    crowd: tuple[Engine, list[str], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog delete committed by another thread between the call's lookup of the
    user's rows and the dislike part's read of their vectors (by row from the index,
    which has caught up with the delete, then by id): the item is left out of its
    centre, as for a user who never rated it (no error)."""
    engine, football, popular = crowd
    disliked = [i for i in football if i not in popular][:3]
    engine.interact("racing", [{"kind": "dislike", "item_id": i} for i in disliked])
    engine.interact("steady", [{"kind": "dislike", "item_id": i} for i in disliked[1:]])
    ranked = [i for i in football if i not in disliked]  # the pool lacks the rated items
    keeper = engine._users.ranking.catalog.keeper
    read = keeper.item_vectors

    def without_the_first(item_ids: list[str]) -> dict[str, np.ndarray] | None:
        found = read(item_ids)
        return None if found is None else {i: v for i, v in found.items() if i != disliked[0]}

    monkeypatch.setattr(keeper, "item_vectors", without_the_first)
    # the index's own view by row: the row tombstoned (the index caught up meanwhile)
    rows_of, gone = keeper.indexed_items, int(keeper.live_rows([disliked[0]])[0])

    def tombstoned(rows: list[int]) -> tuple[np.ndarray, list[str], np.ndarray]:
        known, ids, vectors = rows_of(rows)
        hit = np.asarray(rows) == gone
        keep = ~hit[known]
        return known & ~hit, [i for i, k in zip(ids, keep, strict=True) if k], vectors[keep]

    monkeypatch.setattr(keeper, "indexed_items", tombstoned)

    def dislike_parts(user: str) -> dict[str, float]:
        recs = engine.recommend(user, 100, filters={"id": {"$in": ranked}})
        return {r.item_id: r.explanation["parts"]["dislikes"] for r in recs}

    racing, steady = dislike_parts("racing"), dislike_parts("steady")
    assert set(racing) == set(steady) == set(ranked)
    assert any(part < 0 for part in steady.values())
    for item_id, part in racing.items():
        assert part == pytest.approx(steady[item_id], abs=1e-9)
