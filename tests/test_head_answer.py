"""The head's retrieval answer kept in the user's record (``engine/head_answer.py``):
a write keeps it where ranking retrieves, a recommend uses it instead of searching
while it answers the same search at the same catalog version, with the same lists
to the last bit as a search, and searches otherwise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest

from ownrank import Engine
from ownrank.engine import head_answer
from ownrank.engine.head_answer import HeadAnswer, head_query
from ownrank.engine.index_keeper import IndexKeeper
from ownrank.engine.user_record import UserRecord
from ownrank.errors import StoreFormatError

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items

LIKED = ["jazz-0000", "jazz-0006", "chess-0001", "jazz-0012", "chess-0007"]
LIKED_EVENTS = [{"kind": "like", "item_id": i} for i in LIKED]


@pytest.fixture
def retrieving(tmp_path: Path) -> Iterator[Engine]:
    """120 items, ranked by retrieval (above ``full_rank_limit``), one user."""
    with make_engine(tmp_path, WordHashEncoder(), ranking={"full_rank_limit": 40}) as engine:
        engine.catalog.upsert(catalog_items(120))
        engine.interact("ana", LIKED_EVENTS)
        engine.interact("ana", [{"kind": "dislike", "item_id": "chess-0013"}])
        yield engine


def head_searches(monkeypatch: pytest.MonkeyPatch, engine: Engine) -> list[int]:
    """How many rows each index search around the user's head asked for, from now on
    (other searches, such as the popular direction's, are not counted)."""
    sizes: list[int] = []
    search = IndexKeeper.search_many

    def spying(self: IndexKeeper, queries: np.ndarray, found: Any, *a: Any, **k: Any) -> Any:
        record = engine._users.record("ana")
        assert record is not None and record.model is not None
        head = head_query(record.model.weights).astype(np.float32).tobytes()
        if np.asarray(queries[0], np.float32).tobytes() == head:
            sizes.extend(found)
        return search(self, queries, found, *a, **k)

    monkeypatch.setattr(IndexKeeper, "search_many", spying)
    return sizes


def lists(engine: Engine, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
    recs = engine.recommend("ana", *args, **kwargs)
    return [(r.item_id, r.score, r.explanation) for r in recs]


def searched(engine: Engine, monkeypatch: pytest.MonkeyPatch, *args: Any, **kwargs: Any) -> Any:
    """The same recommend with the kept answer ignored: a search every time."""
    with monkeypatch.context() as patched:
        patched.setattr(HeadAnswer, "rows_for", lambda *_a: None)
        return lists(engine, *args, **kwargs)


def test_a_write_keeps_the_answer_and_a_recommend_uses_it_for_the_same_lists(
    retrieving: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = retrieving._users.record("ana")
    assert record is not None and record.head is not None
    assert len(record.head.rows) == 60 + len(LIKED) + 1  # candidates, and the seen items
    expected = searched(retrieving, monkeypatch, 10)
    diverse = searched(retrieving, monkeypatch, 10, diversity=0.4)
    sizes = head_searches(monkeypatch, retrieving)
    assert lists(retrieving, 10) == expected
    assert lists(retrieving, 10, diversity=0.4) == diverse
    assert sizes == []  # no head search


def test_a_catalog_write_retires_every_kept_answer_until_the_next_user_write(
    retrieving: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = head_searches(monkeypatch, retrieving)
    retrieving.catalog.upsert(
        [{"id": "jazz-new", "title": "jazz story new", "properties": {"topic": "jazz"}}]
    )
    assert lists(retrieving, 10) == searched(retrieving, monkeypatch, 10)
    assert sizes == [66, 66]  # both searched: the index is at a newer catalog version
    retrieving.interact("ana", [{"kind": "like", "item_id": "jazz-0018"}])
    sizes.clear()
    lists(retrieving, 10)
    assert sizes == []  # kept again by the write


def test_a_recommend_that_asks_another_search_makes_it(
    retrieving: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More results (a larger head search), a filter, or seen items allowed: the kept
    answer answers none of these, so each call searches."""
    sizes = head_searches(monkeypatch, retrieving)
    lists(retrieving, 30)
    lists(retrieving, 10, {"topic": {"$in": ["jazz", "chess", "garden"]}})  # 60 items
    lists(retrieving, 10, exclude_seen=False)
    assert sizes == [96, 66, 60]


def test_nothing_is_kept_where_the_catalog_is_ranked_whole(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(120))
        engine.interact("ana", [{"kind": "like", "item_id": i} for i in LIKED])
        record = engine._users.record("ana")
        assert record is not None and record.model is not None and record.head is None


def test_a_stateless_recommend_keeps_and_writes_nothing(
    retrieving: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``recommend_from_history`` fits a model it never stores: keeping an answer for it
    would be a search for nothing."""
    before = retrieving._users.record("ana")
    assert before is not None

    def refused(*_a: object) -> None:
        raise AssertionError("a stateless call kept an answer")

    monkeypatch.setattr(head_answer, "search_kept", refused)
    recs = retrieving.recommend_from_history([{"kind": "like", "item_id": i} for i in LIKED])
    after = retrieving._users.record("ana")
    assert recs and after is not None and after.to_bytes() == before.to_bytes()


def test_the_answer_round_trips_in_the_record_and_a_malformed_one_is_refused(
    retrieving: Engine,
) -> None:
    record = retrieving._users.record("ana")
    assert record is not None and record.head is not None
    again = UserRecord.from_bytes(record.to_bytes())
    assert again.to_bytes() == record.to_bytes() and again.head == record.head
    body = msgpack.unpackb(record.to_bytes())
    for bad in (
        {"s": 1, "d": b"x"},
        {"s": "1", "d": b"x", "r": b""},
        {"s": 1, "d": b"", "r": b"abc"},
    ):
        with pytest.raises(StoreFormatError):
            UserRecord.from_bytes(msgpack.packb({**body, "r": bad}))
    del body["r"]  # a record written before: read without one
    assert UserRecord.from_bytes(msgpack.packb(body)).head is None


def test_the_caps_leave_room_for_the_answer(tmp_path: Path) -> None:
    with make_engine(
        tmp_path, WordHashEncoder(), max_record_bytes=4096, ranking={"full_rank_limit": 40}
    ) as engine:
        engine.catalog.upsert(catalog_items(120))
        items = [item["id"] for item in catalog_items(120)]
        for start in range(0, 120, 20):
            engine.interact(
                "ana", [{"kind": "view", "item_id": i} for i in items[start : start + 20]]
            )
        record = engine._users.record("ana")
        assert record is not None and record.head is not None
        assert 0 < len(record.columns.refs) < 120  # the caps dropped events, not all
        assert len(record.to_bytes()) <= 4096


def test_an_export_shows_the_answer_and_an_import_keeps_its_own(retrieving: Engine) -> None:
    record = retrieving._users.record("ana")
    assert record is not None and record.head is not None
    export = retrieving.export("ana")
    assert export["head_answer"] == {
        "catalog_version": record.head.seq,
        "rows": record.head.rows.tolist(),
    }
    retrieving.import_user({**export, "head_answer": {"catalog_version": 0, "rows": [1]}})
    assert retrieving.export("ana")["head_answer"] == export["head_answer"]  # refit, searched


def test_a_bulk_write_keeps_none_and_drops_the_one_its_refit_made_stale(
    retrieving: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``interact_many`` is for throughput: no search per user. The user's model changed,
    so the answer kept before goes; a recommend searches until the next single write."""
    retrieving.interact_many(
        {"ana": [{"kind": "like", "item_id": "jazz-0018"}], "bo": LIKED_EVENTS}
    )
    assert all(retrieving._users.record(u).head is None for u in ("ana", "bo"))  # type: ignore[union-attr]
    sizes = head_searches(monkeypatch, retrieving)
    lists(retrieving, 10)
    assert sizes == [67]


def test_the_examples_in_the_docstrings_run() -> None:
    """HeadAnswer's round trip and over_fetched, as in their docstrings."""
    import doctest

    failed, attempted = doctest.testmod(head_answer)
    assert attempted >= 2 and failed == 0


def test_a_kept_answer_still_answers_after_the_store_is_opened_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog version is the store's (LMDB), not the process's: a reopened engine
    (a restart, another worker) finds its index at the same version and uses the
    answer, for the same lists."""
    with make_engine(tmp_path, WordHashEncoder(), ranking={"full_rank_limit": 40}) as engine:
        engine.catalog.upsert(catalog_items(120))
        engine.interact("ana", LIKED_EVENTS)
        before = lists(engine, 10)
    with make_engine(tmp_path, WordHashEncoder(), ranking={"full_rank_limit": 40}) as engine:
        sizes = head_searches(monkeypatch, engine)
        assert lists(engine, 10) == before
        assert sizes == []
