"""Device catalog sync (engine/catalog_sync.py, engine/catalog_replica.py, the
/sync/catalog routes): a copy built from a full sync and then deltas holds exactly
the server's catalog (ids, properties, f32 vectors bit for bit), for every slice,
also when writes land between the pages of a sync."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
from api_support import ADMIN, api_client, bearer, sample_items, token_for
from fastapi.testclient import TestClient

from ownrank import CatalogReplica, Engine, InvalidFilterError, InvalidInputError
from ownrank.engine.catalog_wire import decode_vectors, encode_vectors

from conftest import WordHashEncoder, make_engine

DIM = 64
WORDS = ["jazz", "chess", "garden", "bread", "roses", "comet", "river", "piano", "tomato", "orbit"]


def item(k: int, rng: random.Random, **extra: Any) -> dict[str, Any]:
    day = rng.randrange(1, 29)
    published = None if rng.random() < 0.2 else f"2024-03-{day:02d}T{k % 24:02d}:00:00Z"
    return {
        "id": f"it-{k}",
        "title": " ".join(rng.sample(WORDS, 3)) + f" {k}",
        "tags": [rng.choice(WORDS)],
        "properties": {"t": rng.randrange(3), "k": k},
        "published_at": published,
        **extra,
    }


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(tmp_path / "store", WordHashEncoder(DIM), changelog_keep=25)
    yield eng
    eng.close()


def server_copy(engine: Engine) -> dict[int, tuple[str, dict[str, Any], datetime | None, bytes]]:
    """Row -> (id, properties, published_at, f32 vector bytes), read from the store."""
    out = {}
    catalog = engine.catalog
    with catalog.env.read() as txn:
        for row, item_id, vector in catalog.store.iter_vectors(txn, DIM):
            stored = catalog.store.get_item(txn, item_id)
            assert stored is not None and stored.row == row
            props = stored.item.properties
            out[row] = (item_id, props, stored.item.published_at, vector.tobytes())
    return out


def expected(
    engine: Engine, match: Callable[[dict[str, Any]], bool] | None = None, newest: int | None = None
) -> dict[int, tuple[str, dict[str, Any], datetime | None, bytes]]:
    """The server's catalog as a slice holds it: the filter's items, the newest N of
    them by publication time (undated last, ties to the lower row)."""
    full = server_copy(engine)
    rows = [r for r, v in full.items() if match is None or match(v[1])]
    if newest is not None:

        def age(row: int) -> tuple[float, int]:
            when = full[row][2]
            return (-when.timestamp() if when is not None else float("inf"), row)

        rows = sorted(rows, key=age)[:newest]
    return {r: full[r] for r in rows}


def replica_copy(replica: CatalogReplica) -> dict[int, tuple[str, dict[str, Any], Any, bytes]]:
    vectors = replica.vectors
    assert vectors.dtype == np.float32 and len(vectors) == len(replica.ids) == len(replica)
    return {
        int(row): (it.id, replica.properties[it.id], it.published_at, vectors[k].tobytes())
        for k, (row, it) in enumerate(zip(replica.rows, replica.items, strict=True))
    }


def fetch_from(engine: Engine, page_size: int = 7) -> Callable[[dict[str, Any]], Any]:
    return lambda params: engine.catalog.changes(**params, page_size=page_size)


def random_writes(engine: Engine, rng: random.Random, next_id: list[int], count: int) -> None:
    """Adds, deletes, re-embeds (new text: a new row), property and date changes
    (same row), re-adds of deleted ids."""
    ids = [v[0] for v in server_copy(engine).values()]
    for _ in range(count):
        op = rng.random()
        if op < 0.3 or not ids:
            next_id[0] += 1
            engine.catalog.upsert([item(next_id[0], rng)])
        elif op < 0.45:
            engine.catalog.delete([rng.choice(ids)])
        elif op < 0.6:
            engine.catalog.upsert([item(int(rng.choice(ids).split("-")[1]), rng)])
        elif op < 0.8:
            engine.catalog.update_properties(rng.choice(ids), {"t": rng.randrange(3)})
        else:
            victim = engine.catalog.get(rng.choice(ids))
            when = datetime(2024, 3, rng.randrange(1, 29), tzinfo=UTC)
            engine.catalog.upsert([{**victim.model_dump(), "published_at": when}])
        ids = [v[0] for v in server_copy(engine).values()]


# -- the SDK ----------------------------------------------------------------------------


def test_full_sync_then_deltas_hold_the_server_catalog_bit_for_bit(
    store: Engine, tmp_path: Path
) -> None:
    rng = random.Random(7)
    store.catalog.upsert([item(k, rng) for k in range(40)])
    replica = CatalogReplica(tmp_path / "phone")
    assert replica.sync(fetch_from(store)) == 6  # 40 rows, 7 a page
    assert replica_copy(replica) == server_copy(store)
    first = replica.cursor
    assert first is not None and replica.catalog_seq == 1

    store.catalog.delete(["it-3", "it-4"])
    store.catalog.update_properties("it-5", {"x": 1})
    store.catalog.upsert([{**item(6, rng), "title": "a brand new text"}, item(100, rng)])
    store.catalog.upsert([item(3, rng)])  # a deleted id comes back, under a new row
    page = store.catalog.changes(replica.cursor)
    assert (page.full, page.reset, page.next) == (False, False, None)
    assert [i.id for i in page.changed] == ["it-5"] and not page.scales
    assert {i.id for i in page.items} == {"it-6", "it-100", "it-3"}
    assert len(page.removed) == 3  # it-3, it-4 and it-6's old row
    assert replica.apply(page)
    assert replica_copy(replica) == server_copy(store)

    again = CatalogReplica(tmp_path / "phone")  # what was saved
    assert again.cursor == replica.cursor and replica_copy(again) == server_copy(store)
    nothing = store.catalog.changes(again.cursor)
    assert (nothing.items, nothing.changed, nothing.removed) == ([], [], [])
    assert nothing.cursor == again.cursor

    for k in range(30):  # more writes than the change log keeps (25)
        store.catalog.update_properties("it-7", {"v": k})
    page = store.catalog.changes(again.cursor)
    assert (page.full, page.reset, page.reason) == (True, True, "log_trimmed")
    again.sync(fetch_from(store))
    assert replica_copy(again) == server_copy(store)


@pytest.mark.parametrize(
    ("filters", "match", "newest"),
    [
        ({"t": 1}, lambda p: p.get("t") == 1, None),
        (None, None, 9),
        ({"t": {"$in": [0, 2]}}, lambda p: p.get("t") in (0, 2), 6),
    ],
)
def test_a_slice_follows_the_server(
    store: Engine, filters: Any, match: Any, newest: int | None
) -> None:
    rng = random.Random(11)
    next_id = [30]
    store.catalog.upsert([item(k, rng) for k in range(31)])
    replica = CatalogReplica(encoding="f32", filters=filters, newest=newest, titles=False)
    for _round in range(8):
        replica.sync(fetch_from(store, page_size=4))
        assert replica_copy(replica) == expected(store, match, newest)
        assert all(it.title is None and it.body is None for it in replica.items)
        random_writes(store, rng, next_id, 4)


def test_a_newest_slice_fills_up_then_pushes_out_then_lets_back_in(store: Engine) -> None:
    def dated(k: int, day: int | None) -> dict[str, Any]:
        when = None if day is None else f"2024-05-{day:02d}T00:00:00Z"
        return {"id": f"d-{k}", "title": f"dated item {k}", "published_at": when}

    store.catalog.upsert([dated(1, 3), dated(2, None), dated(3, 5)])
    replica = CatalogReplica(newest=4, encoding="f16")
    replica.sync(fetch_from(store))
    assert sorted(replica.ids) == ["d-1", "d-2", "d-3"]  # fewer than 4: all of them
    store.catalog.upsert([dated(4, 9), dated(5, 1), dated(6, 7)])
    replica.sync(fetch_from(store))
    assert sorted(replica.ids) == ["d-1", "d-3", "d-4", "d-6"]  # undated, then oldest out
    store.catalog.delete(["d-4", "d-6"])
    page = store.catalog.changes(**replica.request())
    assert sorted(i.id for i in page.items) == ["d-2", "d-5"]  # back in, unchanged
    assert page.full is False and len(page.removed) == 2
    replica.apply(page)
    assert sorted(replica.ids) == ["d-1", "d-2", "d-3", "d-5"]


@pytest.mark.parametrize("view", [{}, {"filters": {"t": 2}}, {"newest": 8}])
def test_writes_between_pages_are_made_good_by_the_next_delta(
    store: Engine, view: dict[str, Any]
) -> None:
    rng = random.Random(5)
    next_id = [40]
    store.catalog.upsert([item(k, rng) for k in range(41)])
    replica = CatalogReplica(**view)
    match = (lambda p: p.get("t") == 2) if "filters" in view else None
    for _round in range(4):
        while not replica.apply(store.catalog.changes(**replica.request(), page_size=5)):
            random_writes(store, rng, next_id, 1)  # a write between two pages
        replica.sync(fetch_from(store))  # a quiet sync: exact again
        assert replica_copy(replica) == expected(store, match, view.get("newest"))


def test_an_item_added_during_a_sync_and_deleted_after_it_is_removed(store: Engine) -> None:
    """The change log says "added, then removed" after the cursor: the copy read the
    item on a later page, so the delta must name the row, not cancel the two out."""
    rng = random.Random(2)
    store.catalog.upsert([item(k, rng) for k in range(20)])
    replica = CatalogReplica()
    assert not replica.apply(store.catalog.changes(page_size=5))
    store.catalog.upsert([item(99, rng)])  # after the sync's catalog version
    while not replica.apply(store.catalog.changes(**replica.request(), page_size=5)):
        pass
    assert "it-99" in replica and replica.catalog_seq == 1
    store.catalog.delete(["it-99"])
    replica.sync(fetch_from(store))
    assert "it-99" not in replica and replica_copy(replica) == server_copy(store)


def test_encodings_pack_compactly_and_decode_closely(store: Engine) -> None:
    rng = random.Random(3)
    store.catalog.upsert([item(k, rng) for k in range(20)])
    exact = CatalogReplica()
    exact.sync(fetch_from(store))
    for encoding, width, tolerance in (("f16", 2, 1e-3), ("i8", 1, 1e-2)):
        page = store.catalog.changes(encoding=encoding, page_size=20)
        assert len(page.vectors) == 20 * DIM * width
        assert (page.scales is not None) == (encoding == "i8")
        copy = CatalogReplica(encoding=encoding)  # type: ignore[arg-type]
        assert copy.apply(page)
        assert copy.ids == exact.ids
        assert np.abs(copy.vectors - exact.vectors).max() < tolerance
    vectors = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    vectors[2] = 0.0  # a zero vector has scale 0
    packed, scales = encode_vectors(vectors, "i8")
    decoded = decode_vectors(packed, scales, "i8", 5, 16)
    step = np.abs(vectors).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(decoded - vectors) <= step / 2 + 1e-7)
    assert decode_vectors(*encode_vectors(vectors, "f32"), "f32", 5, 16).tobytes() == (
        vectors.tobytes()
    )


def test_cursors_and_page_tokens_that_cannot_be_used_give_a_full_sync(
    store: Engine, tmp_path: Path
) -> None:
    store.catalog.upsert(sample_items(12))
    done = store.catalog.changes()
    assert (done.full, done.reason, done.next) == (True, "no_cursor", None)
    assert done.cursor is not None
    assert store.catalog.changes(done.cursor).full is False
    assert store.catalog.changes("c1.garbage").reason == "unknown_cursor"
    assert store.catalog.changes(done.cursor, encoding="f16").reason == "other_view"
    assert store.catalog.changes(done.cursor, newest=3).reason == "other_view"
    restarted = store.catalog.changes(page="p1.nonsense", page_size=5)
    assert (restarted.reset, restarted.reason, len(restarted.items)) == (True, "page_unusable", 5)
    with make_engine(tmp_path / "other", WordHashEncoder(DIM)) as other:
        other.catalog.upsert(sample_items(2))
        assert other.catalog.changes(done.cursor).reason == "other_store"
        token = store.catalog.changes(page_size=5).next
        assert other.catalog.changes(page=token).reason == "page_unusable"
    with pytest.raises(InvalidInputError, match="encoding"):
        store.catalog.changes(encoding="f64")
    with pytest.raises(InvalidInputError, match="page_size"):
        store.catalog.changes(page_size=0)
    with pytest.raises(InvalidInputError, match="newest"):
        store.catalog.changes(newest=0)
    with pytest.raises(InvalidFilterError):
        store.catalog.changes(filters={"$nope": 1})


def test_the_replica_refuses_pages_that_do_not_fit(store: Engine) -> None:
    store.catalog.upsert(sample_items(6))
    full = store.catalog.changes()
    store.catalog.update_properties("jazz-0", {"minutes": 99})
    delta = store.catalog.changes(full.cursor)
    empty = CatalogReplica()
    with pytest.raises(InvalidInputError, match="no finished sync"):
        empty.apply(delta)
    copy = CatalogReplica()
    copy.apply(full)
    copy.apply(store.catalog.changes(copy.cursor))
    other_view = store.catalog.changes(copy.cursor).to_wire()
    other_view["view"]["encoding"] = "i8"
    with pytest.raises(InvalidInputError, match="another store, view"):
        copy.apply(other_view)
    assert copy.cursor is None  # dropped: the next sync is a full one
    copy.sync(fetch_from(store))
    assert copy.properties["jazz-0"]["minutes"] == 99
    with pytest.raises(InvalidInputError, match="not a catalog sync page"):
        copy.apply({"format": 1, "view": {}, "dimension": DIM, "reset": False})


# -- HTTP ---------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with api_client(tmp_path / "data") as c:
        assert c.post("/items", json={"items": sample_items()}, headers=ADMIN).status_code == 200
        yield c


def http_fetch(client: TestClient, headers: dict[str, str]) -> Callable[[dict[str, Any]], Any]:
    def fetch(params: dict[str, Any]) -> Any:
        response = client.post("/sync/catalog", json={**params, "page_size": 8}, headers=headers)
        assert response.status_code == 200, response.text
        return response.json()

    return fetch


def test_a_device_syncs_the_catalog_over_http(client: TestClient) -> None:
    user = token_for(client, "reader")
    device = client.post("/users/reader/devices", json={}, headers=bearer(user)).json()
    for credential in (ADMIN, bearer(user), bearer(device["access_token"])):
        replica = CatalogReplica()
        assert replica.sync(http_fetch(client, credential)) == 4  # 30 items, 8 a page
        assert sorted(replica.ids) == sorted(i["id"] for i in sample_items())
    assert replica.properties["jazz-3"] == {"topic": "jazz", "minutes": 3}
    got = client.get("/items/jazz-3", headers=ADMIN).json()
    assert replica.items[replica.ids.index("jazz-3")].title == got["title"]

    client.post("/items/delete", json={"ids": ["jazz-3"]}, headers=ADMIN)
    client.patch("/items/chess-1/properties", json={"properties": {"minutes": 9}}, headers=ADMIN)
    page = client.get("/sync/catalog", params={"since": replica.cursor}, headers=ADMIN).json()
    assert (page["full"], len(page["removed"]), [c["id"] for c in page["changed"]]) == (
        False,
        1,
        ["chess-1"],
    )
    assert replica.apply(page) and "jazz-3" not in replica
    assert replica.properties["chess-1"]["minutes"] == 9

    sliced = CatalogReplica(encoding="i8", filters={"topic": "garden"}, newest=4, body=True)
    sliced.sync(http_fetch(client, ADMIN))
    assert len(sliced) == 4 and all(i.id.startswith("garden") and i.body for i in sliced.items)

    packed = client.get(
        "/sync/catalog",
        params={"encoding": "f16", "titles": "false"},
        headers={**ADMIN, "Accept": "application/msgpack"},
    )
    assert packed.headers["content-type"] == "application/msgpack"
    raw = msgpack.unpackb(packed.content)
    assert isinstance(raw["vectors"], bytes) and len(raw["vectors"]) == 29 * 64 * 2
    assert CatalogReplica(encoding="f16", titles=False).apply(raw)


def test_the_routes_refuse_what_they_cannot_serve(client: TestClient) -> None:
    assert client.get("/sync/catalog").status_code == 401
    assert client.post("/sync/catalog", json={}).status_code == 401
    for params in ({"encoding": "f64"}, {"page_size": 0}, {"newest": 0}, {"titles": "maybe"}):
        answer = client.get("/sync/catalog", params=params, headers=ADMIN)
        assert (answer.status_code, answer.json()["code"]) == (422, "validation_error"), params
    bad = client.post("/sync/catalog", json={"filters": {"$nope": 1}}, headers=ADMIN)
    assert (bad.status_code, bad.json()["code"]) == (400, "invalid_filter")
    extra = client.post("/sync/catalog", json={"since": None, "what": 1}, headers=ADMIN)
    assert extra.status_code == 422
    odd = client.get("/sync/catalog", params={"since": "42", "page_size": 5}, headers=ADMIN)
    assert (odd.json()["full"], odd.json()["reason"]) == (True, "unknown_cursor")
    schema = client.get("/openapi.json").json()
    assert "CatalogSyncPage" in schema["components"]["schemas"]
