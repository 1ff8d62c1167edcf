"""Event ids: retries are no-ops bit for bit, reused ids are refused, forgotten and
dropped events stay out, versioned imports refuse stale copies, and a store of the
previous record format is migrated on open without changing a ranking."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgpack
import pytest

from ownrank import (
    Engine,
    EventIdConflictError,
    InvalidInputError,
    ResetRequiredError,
    VersionConflictError,
)
from ownrank.engine.user_record import RECORD_FORMAT, UserRecord

from conftest import WordHashEncoder, make_engine
from test_catalog import TOPICS, catalog_items


def it(k: int) -> str:
    """The id of catalog item ``k`` (``catalog_items``)."""
    return f"{TOPICS[k % len(TOPICS)]}-{k:04d}"


def ev(item: str, kind: str = "like", eid: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": kind, "item_id": item, **extra}
    if eid is not None:
        out["id"] = eid
    return out


def new_id() -> str:
    return str(uuid.uuid4())


def stored_bytes(engine: Engine, user_id: str) -> bytes | None:
    users = engine._users
    with users.env.read() as txn:
        return users.records.raw(txn, users.key(user_id))


@pytest.fixture
def store(engine: Engine) -> Engine:
    engine.catalog.upsert(catalog_items(60))
    return engine


def test_a_retry_with_the_same_id_changes_nothing_bit_for_bit(store: Engine) -> None:
    a, b = new_id(), new_id()
    when = "2026-11-01T10:00:00Z"
    first = store.interact("ann", [ev(it(0), eid=a, timestamp=when), ev(it(1), eid=b)])
    assert (first.accepted, first.duplicates, first.event_ids) == (2, 0, [a, b])
    before, export = stored_bytes(store, "ann"), store.export("ann")
    recs = [(r.item_id, r.score) for r in store.recommend("ann", 5)]
    # the same events again: same id, same content (a retry may leave the time out)
    again = store.interact("ann", [ev(it(0), eid=a, timestamp=when), ev(it(1), eid=b)])
    assert (again.accepted, again.duplicates, again.version) == (0, 2, first.version)
    assert store.interact("ann", [ev(it(0), eid=a)]).duplicates == 1
    assert stored_bytes(store, "ann") == before and store.export("ann") == export
    assert [(r.item_id, r.score) for r in store.recommend("ann", 5)] == recs


def test_the_same_id_with_other_content_is_refused_and_nothing_is_stored(store: Engine) -> None:
    a = new_id()
    store.interact("ann", [ev(it(0), eid=a, timestamp="2026-11-01T10:00:00Z")])
    before = stored_bytes(store, "ann")
    for changed in (
        ev(it(1), eid=a),  # another item
        ev(it(0), kind="dislike", eid=a),  # another kind
        ev(it(0), eid=a, weight=2.0),  # another weight
        ev(it(0), eid=a, timestamp="2026-11-02T10:00:00Z"),  # another time
    ):
        with pytest.raises(EventIdConflictError) as caught:
            store.interact("ann", [ev(it(2)), changed])  # a new event beside it
        assert caught.value.code == "event_id_conflict" and a in caught.value.message
    assert stored_bytes(store, "ann") == before
    # within one call: the same id twice is one event; with two contents, refused
    b = new_id()
    report = store.interact("ann", [ev(it(3), eid=b), ev(it(3), eid=b)])
    assert (report.accepted, report.duplicates) == (1, 1)
    with pytest.raises(EventIdConflictError):
        store.interact("bo", [ev(it(3), eid=b), ev(it(4), eid=b)])
    assert store.export("bo")["exists"] is False


def test_ids_the_engine_assigns_are_returned_and_make_retries_no_ops(store: Engine) -> None:
    report = store.interact("ann", [ev(it(0)), ev("no-such-item"), ev(it(1))])
    ids = report.event_ids
    assert ids[1] is None and len({ids[0], ids[2]}) == 2
    assert all(uuid.UUID(str(i)).version == 8 for i in (ids[0], ids[2]))
    assert [e["id"] for e in store.export("ann")["events"]] == [ids[0], ids[2]]
    before = stored_bytes(store, "ann")
    assert store.interact("ann", [ev(it(0), eid=ids[0])]).duplicates == 1
    assert stored_bytes(store, "ann") == before
    # ids are per user: the same position of another user is another id
    other = store.interact("bo", [ev(it(0))]).event_ids[0]
    assert other != ids[0]
    with pytest.raises(InvalidInputError):
        store.interact("ann", [ev(it(0), eid="not-a-uuid")])


def test_forgotten_events_stay_forgotten(store: Engine) -> None:
    a, b = new_id(), new_id()
    store.interact("ann", [ev(it(0), eid=a), ev(it(1), eid=b)])
    store.forget("ann", [it(0)])
    # a client that still holds the forgotten event sends it again: nothing comes back
    report = store.interact("ann", [ev(it(0), eid=a)])
    assert (report.accepted, report.duplicates) == (0, 1)
    assert [e["item_id"] for e in store.export("ann")["events"]] == [it(1)]
    # the record keeps the forgotten id's digest and time, nothing about the item
    exported = store.export("ann")
    assert len(exported["retired_event_ids"]) == 1
    assert it(0) not in str(exported["retired_event_ids"])


def test_dropped_ids_are_remembered_then_a_horizon_refuses_older_ones(
    tmp_path: Path, encoder: WordHashEncoder
) -> None:
    with make_engine(tmp_path / "s", encoder, max_events=4, retired_event_ids=3) as store:
        store.catalog.upsert(catalog_items(30))
        ids = [new_id() for _ in range(10)]
        times = [f"2026-01-{day:02d}T00:00:00Z" for day in range(1, 11)]
        for k in range(6):  # six events, four kept: two dropped, their ids retired
            store.interact("ann", [ev(it(k), eid=ids[k], timestamp=times[k])])
        data = store.export("ann")
        assert len(data["events"]) == 4 and len(data["retired_event_ids"]) == 2
        assert data["event_id_horizon"] is None
        before = stored_bytes(store, "ann")
        assert store.interact("ann", [ev(it(0), eid=ids[0], timestamp=times[0])]).duplicates
        assert stored_bytes(store, "ann") == before
        for k in range(6, 8):  # two more dropped: the oldest retired id is let go
            store.interact("ann", [ev(it(k), eid=ids[k], timestamp=times[k])])
        data = store.export("ann")
        assert len(data["retired_event_ids"]) == 3
        assert data["event_id_horizon"] == "2026-01-01T00:00:00Z"
        # the let-go id comes back: it might be a retry, and cannot be told: refused
        with pytest.raises(ResetRequiredError):
            store.interact("ann", [ev(it(0), eid=ids[0], timestamp=times[0])])
        # so is any unknown id dated at or before the horizon; later ones are stored
        with pytest.raises(ResetRequiredError):
            store.interact("ann", [ev(it(1), eid=new_id(), timestamp=times[0])])
        assert store.interact("ann", [ev(it(1), eid=new_id(), timestamp=times[1])]).accepted
        # events without an id are never refused (bulk history without ids)
        assert store.interact("ann", [ev(it(2), timestamp=times[0])]).accepted == 1
        assert stored_bytes(store, "ann") != before


def test_bulk_ingest_retries_are_no_ops_and_conflicts_are_listed(store: Engine) -> None:
    a, b = new_id(), new_id()
    first = store.interact_many({"ann": [ev(it(0), eid=a)], "bo": [ev(it(1), eid=b)]})
    assert first.reports["ann"].event_ids == [a] and first.conflicts == {}
    ann = stored_bytes(store, "ann")
    again = store.interact_many(
        {
            "ann": [ev(it(0), eid=a)],  # a retry
            "bo": [ev(it(2), eid=b)],  # a conflict
            "cy": [ev(it(3))],  # new
        }
    )
    assert (again.reports["ann"].accepted, again.reports["ann"].duplicates) == (0, 1)
    assert stored_bytes(store, "ann") == ann
    assert list(again.conflicts) == ["bo"] and "event_id_conflict" in again.conflicts["bo"]
    assert "bo" not in again.reports
    assert [e["item_id"] for e in store.export("bo")["events"]] == [it(1)]
    assert again.reports["cy"].accepted == 1


def test_export_import_keeps_ids_and_retired_ids(
    store: Engine, tmp_path: Path, encoder: WordHashEncoder
) -> None:
    a = new_id()
    store.interact("ann", [ev(it(0), eid=a), ev(it(1)), ev(it(2))])
    store.forget("ann", [it(2)])
    data = store.export("ann")
    with make_engine(tmp_path / "restored", encoder) as other:
        other.catalog.upsert(catalog_items(60))
        assert other.import_user(data, expected_version=0) == data["version"]
        assert other.export("ann") == data
        assert stored_bytes(other, "ann") is not None
        # every id still works there: retries of kept and forgotten events are no-ops
        by_item = {e["item_id"]: e["id"] for e in data["events"]}
        retry = [ev(it(0), eid=a), ev(it(1), eid=by_item[it(1)])]
        assert other.interact("ann", retry).duplicates == 2
        # a new event never reuses a sequence number
        new = other.interact("ann", [ev(it(5))]).event_ids[0]
        assert new not in {e["id"] for e in data["events"]}


def test_a_stale_import_is_refused(store: Engine) -> None:
    store.interact("ann", [ev(it(0))])
    copy = store.export("ann")  # a device's copy, version 1
    store.interact("ann", [ev(it(1))])  # the server moves on: version 2
    before = stored_bytes(store, "ann")
    with pytest.raises(VersionConflictError) as caught:
        store.import_user(copy, expected_version=copy["version"])
    assert (caught.value.expected, caught.value.current) == (1, 2)
    with pytest.raises(VersionConflictError):
        store.import_user(copy, expected_version=0)  # "must not exist"
    with pytest.raises(VersionConflictError):  # nor may a stale copy erase the user
        store.import_user({**copy, "exists": False}, expected_version=1)
    assert stored_bytes(store, "ann") == before
    # unconditional imports still work, and versions never go back
    assert store.import_user(copy) == 3
    assert store.export("ann")["version"] == 3


def _downgrade(engine: Engine, version: int) -> int:
    """Rewrite every record as format ``version`` (2 or 3) wrote it: events as rows,
    with ids from format 3 on."""
    users = engine._users
    count = 0
    with users.env.write() as txn:
        for key, raw in list(users.records.scan(txn)):
            plain, data_key = users.records.plaintext(key, raw)
            body = msgpack.unpackb(plain, raw=False)
            events = UserRecord.from_bytes(plain).events
            body["v"] = version
            body["e"] = [e.pack()[: 6 if version >= 3 else 5] for e in events]
            if version == 2:
                for name in ("q", "x", "h", "d"):
                    body.pop(name, None)
            record = UserRecord.from_bytes(msgpack.packb(body, use_bin_type=True))
            assert record.events == (
                events if version >= 3 else [e._replace(eid=k) for k, e in enumerate(events)]
            )
            if version == 2:
                assert record.next_seq == len(record.events)  # numbered on reading
            sealed = msgpack.packb(body, use_bin_type=True)
            if data_key is not None:
                from ownrank.engine.record_cipher import seal

                sealed = seal(data_key, key, sealed)
            users.records.put(txn, key, sealed)
            count += 1
        engine.catalog.store.put_meta(txn, "ledger_settings", ["popularity", 64, version])
    return count


@pytest.mark.parametrize("version", [2, 3])
def test_a_store_of_a_previous_format_is_migrated_on_open(
    tmp_path: Path, encoder: WordHashEncoder, version: int
) -> None:
    path = tmp_path / "old"
    users = [f"u{k}" for k in range(12)]
    with make_engine(path, encoder) as store:
        store.catalog.upsert(catalog_items(60))
        for k, user in enumerate(users):
            store.interact(user, [ev(it((k + j) % 20)) for j in range(1 + k % 5)])
        store.interact("u1", [{"kind": "search", "query": "chess openings"}])
        ranked = {u: [(r.item_id, r.score) for r in store.recommend(u, 10)] for u in users}
        assert _downgrade(store, version) == len(users)
    with make_engine(path, encoder) as store:  # migrated on open
        assert store.ledgers_upgraded == len(users)
        before = {u: [(r.item_id, r.score) for r in store.recommend(u, 10)] for u in users}
        assert before == ranked  # what the store ranked before it was downgraded
        exports = {u: store.export(u) for u in users}
        with store._users.env.read() as txn:
            for _key, raw in store._users.records.scan(txn):
                plain = store._users.records.plaintext(_key, raw)[0]
                assert msgpack.unpackb(plain, raw=False)["v"] == RECORD_FORMAT
    with make_engine(path, encoder) as store:  # reopened: nothing more to do, same answers
        assert store.ledgers_upgraded == 0
        after = {u: [(r.item_id, r.score) for r in store.recommend(u, 10)] for u in users}
        assert after == before and {u: store.export(u) for u in users} == exports
        # the ids the migration assigned hold: a retry is a no-op
        first = exports["u3"]["events"][0]
        assert store.interact("u3", [ev(first["item_id"], eid=first["id"])]).duplicates == 1


def test_a_record_at_every_cap_with_client_ids_stays_under_the_hard_cap(
    tmp_path: Path, encoder: WordHashEncoder
) -> None:
    with make_engine(tmp_path / "s", encoder) as store:
        store.catalog.upsert(catalog_items(600))
        day = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
        for batch in range(6):  # 6,000 events, every one with a client id
            events = [
                ev(
                    it((batch * 1000 + k) % 600),
                    eid=new_id(),
                    timestamp=datetime.fromtimestamp(day + batch * 1000 + k, UTC).isoformat(),
                )
                for k in range(1000)
            ]
            store.interact("heavy", events)
        data = store.export("heavy")
        size = len(stored_bytes(store, "heavy") or b"")
        assert len(data["events"]) == 256 and len(data["retired_event_ids"]) == 256
        assert size <= store.config.max_record_bytes, size


@pytest.mark.parametrize("module", ["event_ids", "event_merge"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    found = importlib.import_module(f"ownrank.engine.{module}")
    failed, attempted = doctest.testmod(found)
    assert attempted >= 3 and failed == 0


def test_http_retries_conflicts_and_bulk(tmp_path: Path) -> None:
    import doctest

    from api_support import ADMIN, api_client, sample_items

    from ownrank.service import conditional

    assert doctest.testmod(conditional)[0] == 0
    with api_client(tmp_path / "svc") as client:
        assert client.post("/items", json={"items": sample_items(9)}, headers=ADMIN).is_success
        a = new_id()
        events = [ev("jazz-0", eid=a), ev("chess-1"), ev("nothing-here")]
        first = client.post("/users/ann/interactions", json={"events": events}, headers=ADMIN)
        body = first.json()
        assert first.status_code == 200 and body["accepted"] == 2 and body["duplicates"] == 0
        assert body["event_ids"][0] == a and body["event_ids"][2] is None
        assigned = body["event_ids"][1]
        retry = [ev("jazz-0", eid=a), ev("chess-1", eid=assigned)]
        again = client.post("/users/ann/interactions", json={"events": retry}, headers=ADMIN)
        assert again.json()["duplicates"] == 2 and again.json()["version"] == body["version"]
        clash = [ev("garden-2", eid=a)]
        refused = client.post("/users/ann/interactions", json={"events": clash}, headers=ADMIN)
        assert refused.status_code == 409 and refused.json()["code"] == "event_id_conflict"
        bad = client.post(
            "/users/ann/interactions", json={"events": [ev("jazz-0", eid="nope")]}, headers=ADMIN
        )
        assert bad.status_code == 422
        bulk = client.post(
            "/interactions",
            json={
                "batches": [
                    {"user_id": "ann", "events": clash},
                    {"user_id": "bo", "events": [ev("jazz-0", eid=a)]},
                ]
            },
            headers=ADMIN,
        ).json()
        assert list(bulk["conflicts"]) == ["ann"] and bulk["results"]["bo"]["accepted"] == 1
        exported = client.get("/users/ann/export", headers=ADMIN)
        assert exported.headers["ETag"] == f'"{body["version"]}"'
        # one second, two events: the engine's own first, then client ids (event_order)
        assert [e["id"] for e in exported.json()["events"]] == [assigned, a]
