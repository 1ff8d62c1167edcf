"""Device sync end to end: ``ownrank serve`` on 127.0.0.1 (started here, stopped after)
and two reference device clients over real HTTP: offline edits, concurrent pushes,
retries, forget, a bad push, revocation, erasure while a device is offline, the
stale replay after it (409, nothing written, audit clean), and re-creation."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_support import sample_items
from live_server import running_service

from ownrank import DeviceClient

ADMIN_KEY = "sync-e2e-admin-key-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("sync-e2e")
    env = {**os.environ, "OWNRANK_ADMIN_KEYS": ADMIN_KEY}
    with running_service(root / "data", root / "server.log", env=env) as url:
        items = httpx.post(f"{url}/items", json={"items": sample_items(30)}, headers=ADMIN)
        assert items.status_code == 200, items.text
        yield url


def new_device(url: str, user: str, path: Path) -> DeviceClient:
    token = httpx.post(f"{url}/tokens", json={"user_id": user}, headers=ADMIN).json()["token"]
    made = httpx.post(
        f"{url}/users/{user}/devices",
        json={"label": path.name},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert made.status_code == 201, made.text
    tokens = made.json()
    return DeviceClient(path, url, user, tokens["access_token"], tokens["refresh_token"])


def server_state(url: str, user: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.post(f"{url}/users/{user}/sync", json={}, headers=ADMIN).json()
    return answer


def like(item: str) -> dict[str, Any]:
    return {"kind": "like", "item_id": item}


def test_two_devices_against_the_real_service(server: str, tmp_path: Path) -> None:
    phone = new_device(server, "ann", tmp_path / "phone")
    tablet = new_device(server, "ann", tmp_path / "tablet")
    assert phone.sync() == "ok" and tablet.sync() == "ok"
    # offline edits on both, then concurrent pushes
    phone.interact([like("jazz-0"), like("jazz-3"), {"kind": "dislike", "item_id": "chess-1"}])
    tablet.interact([like("garden-2"), like("jazz-6")])
    results: list[str] = []
    pushes = [
        threading.Thread(target=lambda d=d: results.append(d.sync())) for d in (phone, tablet)
    ]
    for thread in pushes:
        thread.start()
    for thread in pushes:
        thread.join()
    assert results == ["ok", "ok"]
    # a retry of a push whose answer was lost changes nothing
    version = server_state(server, "ann")["version"]
    again = httpx.post(
        f"{server}/users/ann/sync",
        json={"generation": 0, "push": [_with_id_and_time(like("jazz-0"), phone)]},
        headers=ADMIN,
    ).json()
    assert again["duplicates"] == 1 and again["version"] == version
    # a forget on one device reaches the other
    phone.forget([_id_of(phone, "jazz-3")])
    for d in (phone, tablet, phone):
        assert d.sync() == "ok"
    state = server_state(server, "ann")
    assert state["count"] == 4
    for d in (phone, tablet):
        assert d.checksum() == (state["count"], int(state["checksum"], 16))
        assert "jazz-3" not in {e.ref for e in d.events()}
    assert phone.recommend(3) and phone.recommend_online(3)
    # a malformed and an oversized push are refused whole, nothing stored
    bad = httpx.post(
        f"{server}/users/ann/sync",
        json={"generation": 0, "push": [{"kind": "like", "item_id": "jazz-9"}]},
        headers=ADMIN,
    )
    assert bad.status_code == 422 and server_state(server, "ann")["version"] == state["version"]
    huge = [_with_id_and_time(like("jazz-9"), phone) for _ in range(1001)]
    too_big = httpx.post(
        f"{server}/users/ann/sync", json={"generation": 0, "push": huge}, headers=ADMIN
    )
    assert too_big.status_code == 413 and server_state(server, "ann")["version"] == state["version"]


def test_erasure_while_a_device_is_offline(server: str, tmp_path: Path) -> None:
    phone = new_device(server, "bo", tmp_path / "phone")
    tablet = new_device(server, "bo", tmp_path / "tablet")
    spare = new_device(server, "bo", tmp_path / "spare")
    for d in (phone, tablet, spare):
        assert d.sync() == "ok"
    phone.interact([like("jazz-0")])
    assert phone.sync() == "ok" and tablet.sync() == "ok"
    # the spare device is revoked alone; the others keep working
    devices = httpx.get(f"{server}/users/bo/devices", headers=ADMIN).json()["devices"]
    spare_id = next(d["device_id"] for d in devices if d["label"] == "spare")
    assert httpx.delete(f"{server}/users/bo/devices/{spare_id}", headers=ADMIN).status_code == 204
    assert spare.sync() == "revoked" and phone.sync() == "ok"
    # the tablet goes offline with new events; the user is erased meanwhile
    tablet.interact([like("garden-2")])
    assert httpx.delete(f"{server}/users/bo", headers=ADMIN).json()["existed"] is True
    assert tablet.sync() == "erased"  # the stale replay: refused, wiped
    assert not (tmp_path / "tablet" / "user.sealed").exists()
    audit = httpx.get(f"{server}/users/bo/audit", headers=ADMIN).json()
    assert audit["clean"] is True and audit["record_present"] is False
    assert phone.sync() == "erased"
    # re-created: a new generation, which the old devices cannot write into
    assert httpx.post(f"{server}/users/bo/recreate", json={}, headers=ADMIN).status_code == 200
    assert tablet.sync() == "revoked"
    fresh = new_device(server, "bo", tmp_path / "new-phone")
    assert fresh.sync() == "ok" and fresh.generation == 1 and fresh.events() == []


def _with_id_and_time(event: dict[str, Any], device: DeviceClient) -> dict[str, Any]:
    pending = [e for e in device.state["record"]["events"] if e.get("item_id") == event["item_id"]]
    if pending:  # the stored event: its id and time (a retry)
        return {**event, "id": pending[0]["id"], "timestamp": pending[0]["timestamp"]}
    return {**event, "id": str(uuid.uuid4()), "timestamp": "2026-01-01T00:00:00Z"}


def _id_of(device: DeviceClient, item: str) -> str:
    from ownrank.engine.event_merge import id_text

    event = next(e for e in device.events() if e.ref == item)
    return id_text(device.user_id, device.generation or 0, event.eid)
