"""Device sync of a user's state (engine/user_sync.py, service/routes_sync.py, the
reference client ownrank.DeviceClient): pushes and forgets converge, the checksum
verifies the set, the device's model is the server's bit for bit, and erasure
reaches every copy."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from api_support import ADMIN, api_client, bearer, sample_items, token_for
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ownrank import (
    ClockAheadError,
    DeviceClient,
    DeviceWiped,
    Engine,
    EventIdConflictError,
    InvalidInputError,
    StaleGenerationError,
    UserErasedError,
)
from ownrank.engine.user_sync import set_checksum

from test_catalog import catalog_items

T0 = 1_760_000_000  # 2025-10-09


def it(k: int) -> str:
    return catalog_items(60)[k]["id"]


def ev(k: int, t: int, kind: str = "like") -> dict[str, Any]:
    return {"kind": kind, "item_id": it(k), "timestamp": T0 + t, "id": str(uuid.uuid4())}


@pytest.fixture
def store(engine: Engine) -> Engine:
    engine.catalog.upsert(catalog_items(60))
    return engine


def test_an_exchange_pushes_forgets_and_verifies(store: Engine) -> None:
    pushed = [ev(0, 1), ev(1, 2), ev(2, 3)]
    first = store.sync.exchange("ann", generation=None, push=pushed)
    assert (first.accepted, first.count, first.in_sync) == (3, 3, False)
    assert first.record is not None and [e["id"] for e in first.record["events"]] == [
        e["id"] for e in pushed
    ]
    # the device now holds the server's set: in sync, no copy sent back
    same = store.sync.exchange("ann", generation=0, count=3, checksum=first.checksum)
    assert same.in_sync and same.record is None and same.version == first.version
    # a retry of the push and a forget, in one exchange
    again = store.sync.exchange("ann", generation=0, push=pushed, forget=[pushed[1]["id"]])
    assert (again.accepted, again.duplicates, again.forgotten, again.count) == (0, 3, 1, 2)
    record = store._users.record("ann")
    assert set_checksum("ann", record) == (again.count, again.checksum)
    # the forgotten event stays out, whoever sends it again
    assert store.sync.exchange("ann", generation=0, push=[pushed[1]]).duplicates == 1


def test_bad_pushes_are_refused_whole(store: Engine) -> None:
    store.sync.exchange("ann", generation=None, push=[ev(0, 1)])
    before = store.export("ann")
    no_id = {k: v for k, v in ev(1, 2).items() if k != "id"}
    with pytest.raises(InvalidInputError, match="carries its id and its timestamp"):
        store.sync.exchange("ann", generation=0, push=[ev(3, 3), no_id])
    ahead = {**ev(1, 2), "timestamp": 4_000_000_000}
    with pytest.raises(ClockAheadError):
        store.sync.exchange("ann", generation=0, push=[ev(3, 3), ahead])
    clash = {**ev(4, 4), "id": before["events"][0]["id"]}
    with pytest.raises(EventIdConflictError):
        store.sync.exchange("ann", generation=0, push=[ev(3, 3), clash])
    assert store.export("ann") == before


def test_the_record_is_a_function_of_the_set_not_of_the_order(tmp_path: Path, encoder: Any) -> None:
    events = [ev(k % 9, k // 3) for k in range(30)]  # three events a second
    exports = []
    for seed in range(3):
        order = list(np.random.default_rng(seed).permutation(len(events)))
        with Engine(tmp_path / f"s{seed}", encoder=encoder) as store:
            store.catalog.upsert(catalog_items(60))
            for start in range(0, 30, 7):
                batch = [events[k] for k in order[start : start + 7]]
                store.sync.exchange("ann", generation=None, push=batch)
            exports.append(store.export("ann"))
    for other in exports[1:]:
        assert other["events"] == exports[0]["events"] and other["model"] == exports[0]["model"]


def test_erasure_and_generations(store: Engine) -> None:
    # the audit scans every file for the id's bytes: a 3-byte id like "ann" turned up by
    # chance in the base64 of a freshly generated receipt key in one CI run (the audit's
    # ``chance_matches`` gives the odds for an id's length)
    user = "ann-erased-device-owner"
    store.sync.exchange(user, generation=None, push=[ev(0, 1)])
    store.erase(user)
    stale = [ev(5, 5)]
    with pytest.raises(UserErasedError):
        store.sync.exchange(user, generation=0, push=stale)
    with pytest.raises(UserErasedError):  # a device that never synced cannot either
        store.sync.exchange(user, generation=None, push=stale)
    assert store.audit(user).clean
    store.recreate_user(user)
    with pytest.raises(StaleGenerationError):  # old copies cannot write into the new one
        store.sync.exchange(user, generation=0, push=stale)
    assert store.export(user)["events"] == []
    fresh = store.sync.exchange(user, generation=1, push=stale)
    assert fresh.accepted == 1 and fresh.generation == 1


# -- the reference client over HTTP ------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with api_client(tmp_path / "svc") as test_client:
        assert test_client.post(
            "/items", json={"items": sample_items(30)}, headers=ADMIN
        ).is_success
        yield test_client


def device(client: TestClient, path: Path, user: str = "ann") -> DeviceClient:
    user_token = bearer(token_for(client, user))
    made = client.post(f"/users/{user}/devices", json={"label": path.name}, headers=user_token)
    assert made.status_code == 201, made.text
    tokens = made.json()
    return DeviceClient(
        path,
        "http://testserver",
        user,
        tokens["access_token"],
        tokens["refresh_token"],
        http=client,
    )


def server_model(client: TestClient, user: str = "ann") -> dict[str, Any]:
    exported: dict[str, Any] = client.get(f"/users/{user}/export", headers=ADMIN).json()
    return exported


def test_two_devices_converge_and_rank_offline(client: TestClient, tmp_path: Path) -> None:
    phone, tablet = device(client, tmp_path / "phone"), device(client, tmp_path / "tablet")
    assert phone.sync() == "ok" and tablet.sync() == "ok"
    assert len(phone.catalog) == 30 and phone.recommend() == []
    liked = phone.interact([{"kind": "like", "item_id": f"jazz-{k}"} for k in (0, 3, 6)])
    tablet.interact([{"kind": "dislike", "item_id": "chess-1"}])
    offline = phone.recommend(5)  # offline, from the device's own copy
    assert offline and not {r.item_id for r in offline} & {"jazz-0", "jazz-3", "jazz-6"}
    phone.forget([liked[1]])
    for d in (phone, tablet, phone, tablet):
        assert d.sync() == "ok"
    exported = server_model(client)
    assert [e["item_id"] for e in exported["events"]] == ["jazz-0", "jazz-6", "chess-1"] or (
        sorted(e["item_id"] for e in exported["events"]) == ["chess-1", "jazz-0", "jazz-6"]
    )
    for d in (phone, tablet):
        assert d.checksum() == (exported_count(exported), server_sum(client))
        model = d.model()
        assert model is not None
        assert [float(x) for x in model.weights.astype(np.float16)] == exported["model"]["weights"]
        assert (model.offset, model.scale) == (
            exported["model"]["offset"],
            exported["model"]["scale"],
        )
    # the sealed copy reopens; the lease key opens it
    reopened = DeviceClient(
        tmp_path / "phone", "http://testserver", "ann", phone.access_token, http=client
    )
    assert reopened.checksum() == phone.checksum()
    assert b"jazz-0" not in (tmp_path / "phone" / "user.sealed").read_bytes()


def exported_count(exported: dict[str, Any]) -> int:
    return len(exported["events"])


def server_sum(client: TestClient) -> int:
    answer = client.post("/users/ann/sync", json={"generation": None}, headers=ADMIN).json()
    return int(answer["checksum"], 16)


def test_erasure_reaches_every_copy(client: TestClient, tmp_path: Path) -> None:
    phone, tablet = device(client, tmp_path / "phone"), device(client, tmp_path / "tablet")
    phone.sync(), tablet.sync()
    phone.interact([{"kind": "like", "item_id": "jazz-0"}])
    phone.sync()
    tablet.sync()
    tablet.interact([{"kind": "like", "item_id": "jazz-3"}])  # offline, then erased
    receipt = phone.erase()  # requested from a device
    assert receipt["existed"] is True and not (tmp_path / "phone" / "user.sealed").exists()
    # the stale device replays: refused, wiped, nothing written
    assert tablet.sync() == "erased"
    assert not (tmp_path / "tablet" / "user.sealed").exists()
    assert not (tmp_path / "tablet" / "lease.json").exists()
    assert client.get("/users/ann/audit", headers=ADMIN).json()["clean"] is True
    assert client.get("/users/ann/export", headers=ADMIN).json()["exists"] is False
    # re-created: a new generation; old devices' tokens do not come back
    assert client.post("/users/ann/recreate", json={}, headers=ADMIN).is_success
    assert tablet.sync() == "revoked"


def test_a_revoked_device_is_wiped_and_the_other_keeps_working(
    client: TestClient, tmp_path: Path
) -> None:
    phone, tablet = device(client, tmp_path / "phone"), device(client, tmp_path / "tablet")
    phone.sync(), tablet.sync()
    phone.interact([{"kind": "like", "item_id": "jazz-0"}])
    phone.sync()
    devices = client.get("/users/ann/devices", headers=ADMIN).json()["devices"]
    gone = next(d for d in devices if d["label"] == "tablet")["device_id"]
    assert client.delete(f"/users/ann/devices/{gone}", headers=ADMIN).status_code == 204
    assert tablet.sync() == "revoked" and tablet.events() == []
    assert phone.sync() == "ok" and len(phone.events()) == 1


def test_the_lease_ends_the_copy(client: TestClient, tmp_path: Path) -> None:
    phone = device(client, tmp_path / "phone")
    phone.sync()
    phone.interact([{"kind": "like", "item_id": "jazz-0"}])
    assert (tmp_path / "phone" / "user.sealed").exists()
    later = DeviceClient(
        tmp_path / "phone",
        "http://testserver",
        "ann",
        phone.access_token,
        http=client,
        clock=lambda: 4_000_000_000.0,  # long past the lease
    )
    assert later.state["record"] is None and not (tmp_path / "phone" / "user.sealed").exists()
    assert not (tmp_path / "phone" / "lease.json").exists()
    # a client still running past its lease wipes too, at its next step
    tablet = device(client, tmp_path / "tablet")
    tablet.sync()
    tablet.clock = lambda: 4_000_000_000.0
    with pytest.raises(DeviceWiped, match="lease_expired"):
        tablet.recommend()
    assert not (tmp_path / "tablet" / "lease.json").exists()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["phone", "tablet"]),
            st.sampled_from(["like", "dislike", "forget", "sync", "retry"]),
            st.integers(0, 29),
        ),
        min_size=4,
        max_size=18,
    ),
    erase_at=st.one_of(st.none(), st.integers(0, 17)),
)
def test_any_interleaving_converges(
    tmp_path_factory: pytest.TempPathFactory,
    steps: list[tuple[str, str, int]],
    erase_at: int | None,
) -> None:
    root = tmp_path_factory.mktemp("sync")
    with api_client(root / "svc") as client:
        client.post("/items", json={"items": sample_items(30)}, headers=ADMIN)
        devices = {name: device(client, root / name) for name in ("phone", "tablet")}
        for d in devices.values():
            d.sync()
        erased = False
        for k, (name, action, item) in enumerate(steps):
            d = devices[name]
            if erase_at == k and not erased:
                assert client.delete("/users/ann", headers=ADMIN).is_success
                erased = True
            if erased:
                continue
            if action in ("like", "dislike"):
                d.interact([{"kind": action, "item_id": sample_items(30)[item]["id"]}])
            elif action == "forget" and d.events():
                d.forget([_id_of(d, item)])
            elif action == "retry" and d.state["pending"]:
                pending = list(d.state["pending"])
                d.sync()
                d.state["pending"] = pending  # the answer was lost: the device sends again
            else:
                d.sync()
        # two rounds: the first pushes what each device holds, the second brings all of it
        first = {name: d.sync() for name, d in devices.items()}
        outcomes = {name: [first[name], d.sync()] for name, d in devices.items()}
        if erased:
            assert all(o[0] == "erased" for o in outcomes.values())
            assert client.get("/users/ann/audit", headers=ADMIN).json()["clean"] is True
            return
        exported = client.get("/users/ann/export", headers=ADMIN).json()
        server = client.post("/users/ann/sync", json={}, headers=ADMIN).json()
        for d in devices.values():
            assert d.checksum() == (server["count"], int(server["checksum"], 16))
            model = d.model()
            if exported["model"] is None:
                assert model is None
            else:
                assert model is not None
                weights = [float(x) for x in model.weights.astype(np.float16)]
                assert weights == exported["model"]["weights"]


def _id_of(d: DeviceClient, k: int) -> str:
    from ownrank.engine.event_merge import id_text

    events = d.events()
    return id_text("ann", d.generation or 0, events[k % len(events)].eid)
