"""Property nesting: a limit at validation, and items stored before it still served.

A property value nested ~280 levels deep used to be accepted and then fail every
response naming the item (the serializer recursed); ~400 levels failed the upsert
itself. Values deeper than ``MAX_PROPERTY_DEPTH`` are now refused up front (422 /
``InvalidItemError``) by a check that does not recurse, and items written by older
versions are served without the offending property and listed by ``ownrank info``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from api_support import ADMIN, api_client, sample_items
from typer.testing import CliRunner

from ownrank import Engine
from ownrank.engine import engine as engine_module
from ownrank.engine.items import MAX_PROPERTY_DEPTH, Item, nests_deeper_than
from ownrank.errors import InvalidItemError
from ownrank.service.cli import app
from ownrank.storage.catalog_store import CatalogChange, StoredItem

from conftest import WordHashEncoder

JSON = {**ADMIN, "Content-Type": "application/json"}
# depths the engine must refuse, from just over the limit to far past any recursion limit
TOO_DEEP = [MAX_PROPERTY_DEPTH + 1, 280, 400, 1_000, 100_000]


def nested(depth: int) -> Any:
    value: Any = 1
    for k in range(depth):
        value = [value] if k % 2 else {"k": value}
    return value


def nested_json(depth: int) -> str:
    """The JSON text of a list nested ``depth`` deep (built as text: no encoder recursion)."""
    return "[" * depth + "1" + "]" * depth


def test_depth_check_does_not_recurse() -> None:
    assert not nests_deeper_than(nested(MAX_PROPERTY_DEPTH), MAX_PROPERTY_DEPTH)
    assert nests_deeper_than(nested(MAX_PROPERTY_DEPTH + 1), MAX_PROPERTY_DEPTH)
    assert nests_deeper_than(nested(100_000), MAX_PROPERTY_DEPTH)
    loop: dict[str, Any] = {}
    loop["self"] = loop
    assert nests_deeper_than(loop, MAX_PROPERTY_DEPTH)
    assert not nests_deeper_than({"a": [1, 2, {"b": "c"}], "d": "e"}, 3)


@pytest.mark.parametrize("depth", TOO_DEEP)
def test_sdk_refuses_too_deep_properties(engine: Engine, depth: int) -> None:
    engine.catalog.upsert([{"id": "a", "title": "jazz", "properties": {"x": 1}}])
    with pytest.raises(InvalidItemError, match="nested deeper than 16 levels in 'p'"):
        engine.catalog.upsert([{"id": "deep", "title": "deep", "properties": {"p": nested(depth)}}])
    assert "deep" not in engine.catalog
    with pytest.raises(InvalidItemError, match="nested deeper than 16 levels"):
        engine.catalog.update_properties("a", {"p": nested(depth)})
    with pytest.raises(InvalidItemError, match="nested deeper than 16 levels"):
        engine.catalog.update_properties("a", {"p": nested(depth)}, replace=True)
    assert engine.catalog.get("a").properties == {"x": 1}


def test_sdk_accepts_properties_at_the_limit(engine: Engine) -> None:
    props = {"p": nested(MAX_PROPERTY_DEPTH)}
    engine.catalog.upsert([{"id": "a", "title": "jazz", "properties": props}])
    assert engine.catalog.get("a").properties == props


def test_service_refuses_too_deep_properties(tmp_path: Path) -> None:
    with api_client(tmp_path / "data") as client:
        assert client.post("/items", json={"items": sample_items(3)}, headers=ADMIN).is_success
        before = client.get("/items/jazz-0", headers=ADMIN).json()
        for depth in TOO_DEEP:
            deep = nested_json(depth)
            upsert = (
                '{"items": [{"id": "deep", "title": "deep", "properties": {"p": ' + deep + "}}]}"
            )
            patch = '{"properties": {"p": ' + deep + "}}"
            for response in (
                client.post("/items", content=upsert, headers=JSON),
                client.patch("/items/jazz-0/properties", content=patch, headers=JSON),
            ):
                if depth <= 400:
                    assert response.status_code == 422, (depth, response.text)
                    assert response.json()["code"] == "validation_error"
                    assert "nested deeper than 16 levels" in response.text
                else:
                    # deeper than Python's JSON parser goes: the body is refused before
                    # any model sees it, with the same status
                    assert response.status_code == 422, (depth, response.text)
                    assert response.json()["code"] == "validation_error"
                    assert "nests lists/objects too deeply" in response.text
        assert client.get("/items/deep", headers=ADMIN).status_code == 404
        assert client.get("/items/jazz-0", headers=ADMIN).json() == before


def _write_legacy_properties(engine: Engine, item_id: str, props: dict[str, Any]) -> None:
    """Store ``props`` on an item as an older version could: no validation at all."""
    store = engine.catalog.store
    with engine._env.write() as txn:
        old = store.get_item(txn, item_id)
        assert old is not None
        item = Item.model_construct(**{**old.item.__dict__, "properties": props})
        store.put_item(txn, StoredItem(item, old.content_hash, old.row, old.created_at, 1.0))
        store.record_change(txn, CatalogChange(properties=[old.row]), 100)


def test_items_stored_too_deep_are_served_without_the_property(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with Engine(data, encoder=WordHashEncoder()) as engine:
        engine.catalog.upsert(sample_items(6))
        _write_legacy_properties(engine, "jazz-0", {"topic": "jazz", "deep": nested(300)})
    expected = {"topic": "jazz"}
    with api_client(data) as client:
        got = client.get("/items/jazz-0", headers=ADMIN)
        assert got.status_code == 200, got.text
        assert got.json()["properties"] == expected
        found = client.post("/search", json={"query": "jazz story", "n": 6}, headers=ADMIN)
        assert found.status_code == 200, found.text
        hits = {h["item_id"]: h["item"]["properties"] for h in found.json()["results"]}
        assert hits["jazz-0"] == expected
        filtered = client.post(
            "/search", json={"query": "jazz", "filters": {"topic": "jazz"}}, headers=ADMIN
        )
        assert filtered.status_code == 200 and "jazz-0" in filtered.text
        for path, body in (
            ("/users/reader/recommend", {"n": 6, "exclude_seen": False}),
            ("/users/fresh/recommend", {"n": 6}),
            (
                "/recommend/from-history",
                {"n": 6, "events": [{"kind": "like", "item_id": "jazz-3"}]},
            ),
        ):
            if path == "/users/reader/recommend":
                liked = {"events": [{"kind": "like", "item_id": "jazz-0"}]}
                stored = client.post("/users/reader/interactions", json=liked, headers=ADMIN)
                assert stored.status_code == 200, stored.text
            answer = client.post(path, json=body, headers=ADMIN)
            assert answer.status_code == 200, (path, answer.text)
            recs = {r["item_id"]: r["item"]["properties"] for r in answer.json()["results"]}
            assert recs["jazz-0"] == expected, path
        similar = client.post("/items/jazz-3/similar", json={"n": 6}, headers=ADMIN)
        assert similar.status_code == 200 and "jazz-0" in similar.text


def test_info_lists_items_stored_too_deep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    with Engine(data, encoder=WordHashEncoder()) as engine:
        engine.catalog.upsert(sample_items(6))
        assert engine.info()["nonconforming_items"]["count"] == 0
        _write_legacy_properties(engine, "jazz-0", {"topic": "jazz", "deep": nested(300)})
        _write_legacy_properties(engine, "chess-1", {"deep": nested(17), "ok": [[1]]})
        facts = engine.info()["nonconforming_items"]
        assert (facts["count"], sorted(facts["ids"])) == (2, ["chess-1", "jazz-0"])

    # the command line opens the store with the configured model: the test's instead
    monkeypatch.setattr(engine_module, "load_encoder", lambda *_a, **_k: WordHashEncoder())
    runner = CliRunner()
    result = runner.invoke(app, ["info", "--data-dir", str(data), "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)["nonconforming_items"]
    assert (listed["count"], sorted(listed["ids"])) == (2, ["chess-1", "jazz-0"])
    result = runner.invoke(app, ["info", "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    assert "items with properties over the nesting limit" in result.output
    assert "jazz-0" in result.output and "chess-1" in result.output

    # rewriting the item drops the bad property for good: a property update, or an
    # upsert of the item as it is served (not "unchanged": the record is rewritten)
    with Engine(data, encoder=WordHashEncoder()) as engine:
        engine.catalog.update_properties("chess-1", {"fixed": True})
        assert engine.catalog.get("chess-1").properties == {"ok": [[1]], "fixed": True}
        assert engine.info()["nonconforming_items"]["ids"] == ["jazz-0"]
        report = engine.catalog.upsert([engine.catalog.get("jazz-0")])
        assert (report.updated, report.embedded) == (["jazz-0"], 0)
        assert engine.info()["nonconforming_items"] == {**facts, "count": 0, "ids": []}
        assert engine.catalog.upsert([engine.catalog.get("jazz-0")]).unchanged == ["jazz-0"]
