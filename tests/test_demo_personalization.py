"""Personalization with the real base model on the shipped demo catalog."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ownrank import BaseEncoder, Engine
from ownrank.demo import CATALOG_PATH


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, real_encoder: BaseEncoder) -> Iterator[Engine]:
    engine = Engine(tmp_path_factory.mktemp("demo"), encoder=real_encoder)
    items = [json.loads(line) for line in CATALOG_PATH.read_text().splitlines()]
    engine.catalog.upsert(items)
    yield engine
    engine.close()


def ids_of(demo: Engine, topic: str, count: int) -> list[str]:
    return [h.item_id for h in demo.search(topic, count, filters={"topic": topic})]


def test_two_users_see_different_results_for_an_ambiguous_query(demo: Engine) -> None:
    demo.interact("cook", [{"kind": "like", "item_id": i} for i in ids_of(demo, "cooking", 8)])
    demo.interact("player", [{"kind": "like", "item_id": i} for i in ids_of(demo, "chess", 8)])
    plain = demo.search("opening", 5)
    cook = demo.search("opening", 5, user_id="cook")
    player = demo.search("opening", 5, user_id="player")
    assert [h.item.properties["topic"] for h in cook].count("cooking") >= 3
    assert [h.item.properties["topic"] for h in player].count("chess") >= 3
    assert {h.item_id for h in cook} != {h.item_id for h in player}
    assert {h.item_id for h in cook} - {h.item_id for h in plain}


def test_recommendations_follow_a_topic_and_dislikes_push_it_away(demo: Engine) -> None:
    liked = ids_of(demo, "astronomy", 5)
    demo.interact("stargazer", [{"kind": "like", "item_id": i} for i in liked])
    recs = demo.recommend("stargazer", 10)
    assert [r.item.properties["topic"] for r in recs].count("astronomy") >= 8
    assert all(r.explanation["reason"] in {"personal", "neighbours", "popularity"} for r in recs)
    # a neighbour explanation names the liked item that drove it
    assert all(
        r.explanation["because_of"] in liked
        for r in recs
        if r.explanation["reason"] == "neighbours"
    )
    photo = ids_of(demo, "photography", 5)
    demo.interact("stargazer", [{"kind": "dislike", "item_id": i} for i in photo])
    after = demo.recommend("stargazer", 30)
    before = demo.recommend_from_history([{"kind": "like", "item_id": i} for i in liked], 30)
    assert [r.item.properties["topic"] for r in after].count("photography") <= [
        r.item.properties["topic"] for r in before
    ].count("photography")
