"""Warm-up at open: the first recommend does not pay for loading the index's filter
table and the catalog matrices, the warm-up writes nothing, and the service is
ready only once it is done."""

from __future__ import annotations

from pathlib import Path

from api_support import ADMIN, api_client, sample_items

from conftest import WordHashEncoder, make_engine


def _store(path: Path) -> None:
    with make_engine(path, WordHashEncoder()) as engine:
        engine.catalog.upsert(sample_items(60))
        engine.interact("reader", [{"kind": "like", "item_id": "jazz-0"}])
        engine.interact("other", [{"kind": "like", "item_id": "chess-1"}])


def test_open_warms_up_and_writes_nothing(tmp_path: Path) -> None:
    _store(tmp_path)
    with make_engine(tmp_path, WordHashEncoder(), warm_up_on_open=False) as cold:
        assert cold.warm_up_seconds is None
        assert cold.catalog.keeper.table is None  # built by the first ranking call
        txn_id = cold._env.last_txn_id()
        expected = cold.recommend("reader", 5)
    with make_engine(tmp_path, WordHashEncoder()) as warm:
        assert warm.warm_up_seconds is not None and warm.warm_up_seconds >= 0.0
        assert warm.catalog.keeper.table is not None
        assert warm.catalog._prior is not None
        assert warm._env.last_txn_id() == txn_id  # reads only
        assert warm.recommend("reader", 5) == expected


def test_warm_up_of_an_empty_store(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        assert engine.warm_up() >= 0.0
        assert engine.recommend("nobody", 3) == []


def test_service_is_ready_after_the_warm_up(tmp_path: Path) -> None:
    _store(tmp_path / "data")
    with api_client(tmp_path / "data") as client:
        engine = client.app.state.engine  # type: ignore[attr-defined]
        assert engine.warm_up_seconds is not None
        assert client.get("/ready").status_code == 200
        assert client.post("/users/reader/recommend", headers=ADMIN).status_code == 200
