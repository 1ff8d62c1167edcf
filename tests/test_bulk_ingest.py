"""Bulk ingest: many users' feedback in one group commit, with the guarantees of one."""

from __future__ import annotations

from pathlib import Path

import pytest

from ownrank import BatchTooLargeError, Engine, EngineConfig, InvalidInputError

from conftest import WordHashEncoder
from test_catalog import catalog_items
from test_shared_invariant import check_invariant

ITEMS = [i["id"] for i in catalog_items(60)]


def open_store(path: Path, **config: object) -> Engine:
    engine = Engine(
        path,
        EngineConfig(**config),  # type: ignore[arg-type]
        encoder=WordHashEncoder(),
        clock=lambda: 1_770_000_000.0,
    )
    engine.catalog.upsert(catalog_items(60))
    return engine


def history(first: int) -> list[dict[str, object]]:
    return [
        {"kind": "like", "item_id": ITEMS[first]},
        {"kind": "rating", "item_id": ITEMS[first + 1], "value": 2},
        {"kind": "click", "item_id": ITEMS[first + 2], "timestamp": 1_769_000_000},
    ]


def test_a_bulk_write_equals_one_write_per_user(tmp_path: Path) -> None:
    batches = {f"u{k}": history(k) for k in range(6)}
    with open_store(tmp_path / "bulk") as bulk, open_store(tmp_path / "one") as one:
        one.interact("u0", history(0))  # an existing user is extended, not replaced
        bulk.interact("u0", history(0))
        report = bulk.interact_many(batches)
        for user, events in batches.items():
            one.interact(user, events)
        assert report.erased == [] and report.reports["u0"].version == 2
        for user in batches:
            assert bulk.export(user) == one.export(user)
            assert [r.item_id for r in bulk.recommend(user, 5)] == [
                r.item_id for r in one.recommend(user, 5)
            ]
        with bulk._env.read() as a, one._env.read() as b:
            assert bulk._shared.totals(a) == one._shared.totals(b)
        check_invariant(bulk, list(batches))


def test_one_malformed_event_stores_nothing_for_anyone(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as engine:
        bad = {"u1": history(0), "u2": [{"kind": "rating", "item_id": ITEMS[3]}]}  # no value
        with pytest.raises(InvalidInputError):
            engine.interact_many(bad)
        assert engine._users.record("u1") is None and engine._keystore.count() == 0
        with pytest.raises(InvalidInputError):
            engine.interact_many({"bad id!": history(0)})
        with pytest.raises(BatchTooLargeError):
            engine.interact_many({f"u{k}": history(0) for k in range(1_001)})


def test_erased_users_are_reported_and_the_rest_written(tmp_path: Path) -> None:
    with open_store(tmp_path / "s") as engine:
        engine.interact("gone", history(0))
        engine.erase("gone")
        report = engine.interact_many(
            {"gone": history(3), "kept": history(6), "idle": [{"kind": "like", "item_id": "nope"}]}
        )
        assert report.erased == ["gone"]
        assert engine._users.record("gone") is None
        assert engine._keystore.wrapped(engine._users.key("gone")) is None  # no stray key
        assert report.reports["kept"].accepted == 3
        assert report.reports["idle"].accepted == 0
        assert report.reports["idle"].unknown_items == ["nope"]
        assert engine._keystore.count() == 1


def test_bulk_ingest_over_http(tmp_path: Path) -> None:
    from api_support import ADMIN, api_client, bearer, sample_items, token_for

    with api_client(tmp_path / "data") as client:
        assert client.post("/items", json={"items": sample_items(12)}, headers=ADMIN).is_success
        like = [{"kind": "like", "item_id": "jazz-0"}]
        body = {"batches": [{"user_id": "a", "events": like}, {"user_id": "b", "events": like}]}
        user_token = bearer(token_for(client, "a"))
        assert client.post("/interactions", json=body, headers=user_token).status_code == 403
        response = client.post("/interactions", json=body, headers=ADMIN)
        assert response.status_code == 200
        answer = response.json()
        for result in answer["results"].values():
            assert len(result.pop("event_ids")) == 1  # the id ownrank assigned
        same = {"accepted": 1, "unknown_items": [], "version": 1, "generation": 0, "duplicates": 0}
        assert answer == {"results": {"a": same, "b": same}, "erased": [], "conflicts": {}}
        assert client.delete("/users/b", headers=ADMIN).is_success
        again = client.post("/interactions", json=body, headers=ADMIN).json()
        assert again["erased"] == ["b"] and again["results"]["a"]["version"] == 2
        twice = {"batches": [{"user_id": "a", "events": like}] * 2}
        response = client.post("/interactions", json=twice, headers=ADMIN)
        assert response.status_code == 400 and response.json()["code"] == "duplicate_user"
