"""Devices as clients of a user (engine/devices.py, service/routes_devices.py): register,
rotate refresh tokens, revoke one device alone, an offline maximum, and erasure that
takes every device with the user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import ADMIN, bearer, sample_items, settings_for, token_for
from fastapi.testclient import TestClient

from ownrank import (
    Device,
    DeviceRevokedError,
    Engine,
    EngineConfig,
    InvalidInputError,
    TooManyDevicesError,
    UserErasedError,
)
from ownrank.service.app import create_app
from ownrank.service.auth import TokenSigner

from conftest import WordHashEncoder

DAY = 86_400.0
START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def open_engine(path: Path, clock: Clock, **config: Any) -> Engine:
    return Engine(path, EngineConfig(**config), encoder=WordHashEncoder(), clock=clock)


@pytest.fixture
def eng(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    with open_engine(tmp_path / "store", clock, max_devices=3, device_max_offline_days=30) as e:
        e.catalog.upsert(sample_items(6))
        yield e


# -- the SDK ------------------------------------------------------------------------------


def test_register_and_list_in_device_id_order(eng: Engine) -> None:
    made = [eng.register_device("ann", "phone"), eng.register_device("ann", None)]
    assert isinstance(made[0], Device)
    assert made[0].label == "phone" and made[1].label == ""
    assert all(d.counter == 0 and d.registered_at == "2023-11-14T22:13:20Z" for d in made)
    assert made[0].refreshed_at == made[0].registered_at
    listed = eng.devices("ann")
    assert listed == sorted(made, key=lambda d: d.device_id)
    assert eng.devices("nobody") == []
    assert all(eng.device_active("ann", d.device_id) for d in made)
    assert not eng.device_active("bob", made[0].device_id)  # another user's device


def test_devices_leave_events_model_and_ledger_alone(eng: Engine) -> None:
    eng.interact("ann", [{"kind": "like", "item_id": "jazz-0"}])
    before = eng.export("ann")
    phone = eng.register_device("ann", "phone")
    eng.refresh_device("ann", phone.device_id, 0)
    after = eng.export("ann")
    assert after["version"] == before["version"] + 2
    for key in ("events", "ledger", "model"):
        assert after.get(key) == before.get(key), key


def test_refresh_rotates_and_a_replayed_count_revokes(eng: Engine, clock: Clock) -> None:
    phone = eng.register_device("ann", "phone")
    tablet = eng.register_device("ann", "tablet")
    clock.now += 3600
    moved = eng.refresh_device("ann", phone.device_id, 0)
    assert moved.counter == 1 and moved.refreshed_at == "2023-11-14T23:13:20Z"
    assert moved.registered_at == phone.registered_at
    assert eng.refresh_device("ann", phone.device_id, 1).counter == 2
    # the answer was lost and the client retries at once: the same state again
    version = eng.export("ann")["version"]
    assert eng.refresh_device("ann", phone.device_id, 1).counter == 2
    assert eng.export("ann")["version"] == version  # nothing written
    clock.now += 61  # past the grace period, the same count is a replay
    with pytest.raises(DeviceRevokedError, match="already used") as replay:
        eng.refresh_device("ann", phone.device_id, 1)  # an old refresh token, again
    assert replay.value.code == "device_revoked"
    assert not eng.device_active("ann", phone.device_id)
    with pytest.raises(DeviceRevokedError, match="not registered"):
        eng.refresh_device("ann", phone.device_id, 2)  # even the current count: it is gone
    assert [d.device_id for d in eng.devices("ann")] == [tablet.device_id]
    assert eng.refresh_device("ann", tablet.device_id, 0).counter == 1


def test_offline_maximum(eng: Engine, clock: Clock) -> None:
    phone = eng.register_device("ann", "phone")
    tablet = eng.register_device("ann", "tablet")
    clock.now += 29.9 * DAY  # a long offline period, within the 30 days
    assert eng.refresh_device("ann", phone.device_id, 0).counter == 1
    clock.now += 29.9 * DAY  # the tablet has now been offline 59.8 days
    assert not eng.device_active("ann", tablet.device_id)
    assert [d.device_id for d in eng.devices("ann")] == [phone.device_id]
    with pytest.raises(DeviceRevokedError, match="offline longer than the maximum of 30 days"):
        eng.refresh_device("ann", tablet.device_id, 0)
    with pytest.raises(DeviceRevokedError, match="not registered"):
        eng.refresh_device("ann", tablet.device_id, 0)  # removed by the refusal
    assert eng.refresh_device("ann", phone.device_id, 1).counter == 2


def test_revoke_one_device_alone(eng: Engine) -> None:
    phone = eng.register_device("ann", "phone")
    tablet = eng.register_device("ann", "tablet")
    version = eng.export("ann")["version"]
    assert eng.revoke_device("ann", phone.device_id) is True
    assert not eng.device_active("ann", phone.device_id)
    assert eng.device_active("ann", tablet.device_id)
    assert eng.export("ann")["version"] == version + 1
    assert eng.revoke_device("ann", phone.device_id) is False  # nothing written
    assert eng.revoke_device("nobody", phone.device_id) is False
    assert eng.export("ann")["version"] == version + 1
    with pytest.raises(InvalidInputError):
        eng.revoke_device("ann", "not-a-uuid")
    with pytest.raises(InvalidInputError):
        eng.refresh_device("ann", tablet.device_id, -1)
    assert not eng.device_active("ann", "not-a-uuid")


def test_device_cap_and_stale_devices_make_room(eng: Engine, clock: Clock) -> None:
    first = [eng.register_device("ann", f"d{k}") for k in range(3)]
    with pytest.raises(TooManyDevicesError) as full:
        eng.register_device("ann", "one too many")
    assert full.value.code == "too_many_devices"
    assert eng.revoke_device("ann", first[0].device_id)
    eng.register_device("ann", "fits again")
    clock.now += 31 * DAY  # every device is past the offline maximum
    eng.register_device("ann", "after a long time")
    assert [d.label for d in eng.devices("ann")] == ["after a long time"]


def test_labels(eng: Engine) -> None:
    assert eng.register_device("ann", "x" * 64).label == "x" * 64
    assert eng.register_device("ann", "Ann's phone 📱").label == "Ann's phone 📱"
    for bad in ("x" * 65, "line\nbreak", "nul\x00", "\x85"):
        with pytest.raises(InvalidInputError):
            eng.register_device("bob", bad)
    assert eng.devices("bob") == []


def test_erasure_takes_every_device_and_recreation_brings_none_back(eng: Engine) -> None:
    phone = eng.register_device("ann", "phone")
    eng.erase("ann")
    assert not eng.device_active("ann", phone.device_id)
    assert eng.devices("ann") == []
    with pytest.raises(DeviceRevokedError):
        eng.refresh_device("ann", phone.device_id, 0)
    assert eng.revoke_device("ann", phone.device_id) is False
    with pytest.raises(UserErasedError):
        eng.register_device("ann", "phone")
    eng.recreate_user("ann")
    assert not eng.device_active("ann", phone.device_id)
    with pytest.raises(DeviceRevokedError):
        eng.refresh_device("ann", phone.device_id, 0)
    assert eng.register_device("ann", "new phone").device_id != phone.device_id


def test_devices_survive_reopening(tmp_path: Path, clock: Clock) -> None:
    with open_engine(tmp_path / "s", clock) as first:
        phone = first.register_device("ann", "phone")
        first.refresh_device("ann", phone.device_id, 0)
    with open_engine(tmp_path / "s", clock) as again:
        (kept,) = again.devices("ann")
        assert kept.device_id == phone.device_id and kept.counter == 1


# -- the service --------------------------------------------------------------------------

MAX_OFFLINE_DAYS = 30


@pytest.fixture
def client(tmp_path: Path, clock: Clock) -> Iterator[TestClient]:
    data = tmp_path / "data"
    with open_engine(data, clock, device_max_offline_days=MAX_OFFLINE_DAYS) as engine:
        engine.catalog.upsert(sample_items(9))
        app = create_app(settings_for(data), engine=engine)
        app.state.signer.clock = clock  # the tokens live on the engine's time
        with TestClient(app, raise_server_exceptions=False) as c:
            yield c


def register(client: TestClient, user: str, credential: dict[str, str], **body: Any) -> Any:
    response = client.post(f"/users/{user}/devices", json=body, headers=credential)
    assert response.status_code == 201, response.text
    return response.json()


def recommend(client: TestClient, user: str, access_token: str) -> Any:
    return client.post(f"/users/{user}/recommend", json={"n": 2}, headers=bearer(access_token))


def refresh(client: TestClient, refresh_token: str) -> Any:
    return client.post("/devices/refresh", json={"refresh_token": refresh_token})


def code(response: Any) -> str:
    return str(response.json()["code"])


def test_register_answers_a_device_and_its_tokens(client: TestClient, clock: Clock) -> None:
    user = bearer(token_for(client, "ann"))
    phone = register(client, "ann", user, label="phone")
    assert phone["label"] == "phone" and phone["token_type"] == "bearer"
    assert phone["registered_at"] == "2023-11-14T22:13:20Z"
    assert phone["access_expires_at"] == "2023-11-14T23:13:20Z"  # an hour
    assert phone["refresh_expires_at"] == "2023-12-14T22:13:20Z"  # the offline maximum
    by_admin = client.post("/users/ann/devices", headers=ADMIN)  # no body: no label
    assert by_admin.status_code == 201 and by_admin.json()["label"] == ""
    listed = client.get("/users/ann/devices", headers=bearer(phone["access_token"])).json()
    assert sorted(d["device_id"] for d in listed["devices"]) == sorted(
        [phone["device_id"], by_admin.json()["device_id"]]
    )
    assert recommend(client, "ann", phone["access_token"]).status_code == 200
    bad = client.post("/users/ann/devices", json={"label": "tab\there"}, headers=user)
    assert bad.status_code == 422 and code(bad) == "validation_error"


def test_device_tokens_act_only_for_their_user_and_add_no_devices(client: TestClient) -> None:
    phone = register(client, "ann", bearer(token_for(client, "ann")))
    device = bearer(phone["access_token"])
    response = client.post("/users/ann/devices", json={}, headers=device)
    assert response.status_code == 403 and code(response) == "device_token_not_allowed"
    for method, path in [("post", "/users/bob/recommend"), ("post", "/users/bob/devices")]:
        response = client.request(method, path, json={}, headers=device)
        assert response.status_code == 403 and code(response) == "forbidden", path
    response = client.post("/users/ann/devices", headers=bearer(token_for(client, "bob")))
    assert response.status_code == 403 and code(response) == "forbidden"
    response = client.post("/items", json={"items": sample_items(1)}, headers=device)
    assert response.status_code == 403 and code(response) == "admin_required"


def test_revoking_one_device_kills_its_tokens_only(client: TestClient) -> None:
    user = bearer(token_for(client, "ann"))
    phone = register(client, "ann", user, label="phone")
    tablet = register(client, "ann", user, label="tablet")
    assert recommend(client, "ann", phone["access_token"]).status_code == 200
    gone = client.delete(f"/users/ann/devices/{phone['device_id']}", headers=user)
    assert gone.status_code == 204 and gone.content == b""
    response = recommend(client, "ann", phone["access_token"])
    assert response.status_code == 401 and code(response) == "device_revoked"
    assert response.headers["WWW-Authenticate"] == "Bearer"
    response = refresh(client, phone["refresh_token"])
    assert response.status_code == 401 and code(response) == "device_revoked"
    assert recommend(client, "ann", tablet["access_token"]).status_code == 200
    assert refresh(client, tablet["refresh_token"]).status_code == 200
    again = client.delete(f"/users/ann/devices/{phone['device_id']}", headers=ADMIN)
    assert again.status_code == 404 and code(again) == "device_not_found"
    nil = client.delete(f"/users/ann/devices/{'0' * 8}-{'0000-' * 3}{'0' * 12}", headers=ADMIN)
    assert nil.status_code == 404
    malformed = client.delete("/users/ann/devices/not-a-uuid", headers=ADMIN)
    assert malformed.status_code == 422


def test_a_device_may_revoke_itself_and_no_other(client: TestClient) -> None:
    user = bearer(token_for(client, "ann"))
    phone = register(client, "ann", user)
    tablet = register(client, "ann", user)
    own = bearer(phone["access_token"])
    response = client.delete(f"/users/ann/devices/{tablet['device_id']}", headers=own)
    assert response.status_code == 403 and code(response) == "device_token_not_allowed"
    response = client.delete(f"/users/ann/devices/{phone['device_id'].upper()}", headers=own)
    assert response.status_code == 204
    assert recommend(client, "ann", phone["access_token"]).status_code == 401
    assert recommend(client, "ann", tablet["access_token"]).status_code == 200


def test_refresh_rotates_and_a_replayed_refresh_token_revokes(client: TestClient) -> None:
    phone = register(client, "ann", bearer(token_for(client, "ann")))
    first = refresh(client, phone["refresh_token"])
    assert first.status_code == 200, first.text
    pair = first.json()
    assert pair["device_id"] == phone["device_id"]
    assert pair["refresh_token"] != phone["refresh_token"]
    assert recommend(client, "ann", pair["access_token"]).status_code == 200
    second = refresh(client, pair["refresh_token"])
    assert second.status_code == 200
    # a retry of a refresh whose answer was lost (within a minute): the same count
    retried = refresh(client, pair["refresh_token"])
    assert retried.status_code == 200, retried.text
    assert retried.json()["refresh_token"] == second.json()["refresh_token"] or (
        retried.json()["refresh_expires_at"] >= second.json()["refresh_expires_at"]
    )
    replayed = refresh(client, phone["refresh_token"])  # two refreshes old: a copy
    assert replayed.status_code == 401 and code(replayed) == "device_revoked"
    assert "already used" in replayed.json()["message"]
    latest = second.json()
    assert recommend(client, "ann", latest["access_token"]).status_code == 401
    assert refresh(client, latest["refresh_token"]).status_code == 401


def test_refresh_after_a_long_offline_period(client: TestClient, clock: Clock) -> None:
    phone = register(client, "ann", bearer(token_for(client, "ann")))
    tablet = register(client, "ann", bearer(token_for(client, "ann")))
    clock.now += (MAX_OFFLINE_DAYS - 1) * DAY
    stale = recommend(client, "ann", phone["access_token"])
    assert stale.status_code == 401 and code(stale) == "token_expired"
    response = refresh(client, phone["refresh_token"])
    assert response.status_code == 200, response.text
    assert recommend(client, "ann", response.json()["access_token"]).status_code == 200
    clock.now += 2 * DAY  # the tablet: offline past the maximum
    late = refresh(client, tablet["refresh_token"])
    assert late.status_code == 401 and code(late) == "token_expired"
    assert "offline longer than the maximum" in late.json()["message"]
    listed = client.get("/users/ann/devices", headers=ADMIN).json()["devices"]
    assert [d["device_id"] for d in listed] == [phone["device_id"]]
    assert listed[0]["counter"] == 1


def test_refresh_and_access_tokens_are_not_interchangeable(client: TestClient) -> None:
    phone = register(client, "ann", bearer(token_for(client, "ann")))
    response = recommend(client, "ann", phone["refresh_token"])
    assert response.status_code == 401 and code(response) == "invalid_token"
    for wrong in (phone["access_token"], token_for(client, "ann"), "ort1.x.y", "garbage"):
        response = refresh(client, wrong)
        assert response.status_code == 401 and code(response) == "invalid_token", wrong
    forged, _ = TokenSigner(b"k" * 32).mint(
        "ann", 3600, device_id=phone["device_id"], refresh_counter=0
    )
    assert code(refresh(client, forged)) == "invalid_token"
    missing = client.post("/devices/refresh", json={})
    assert missing.status_code == 422


def test_erasing_the_user_kills_every_device_token(client: TestClient) -> None:
    phone = register(client, "ann", bearer(token_for(client, "ann")))
    erased = client.delete("/users/ann", headers=bearer(phone["access_token"]))
    assert erased.status_code == 200, erased.text
    # while the user stays erased, the device is told so: wipe the copy (docs/sync.md)
    response = recommend(client, "ann", phone["access_token"])
    assert response.status_code == 409 and code(response) == "user_erased"
    assert code(refresh(client, phone["refresh_token"])) == "device_revoked"
    recreated = client.post("/users/ann/recreate", json={"shared_statistics": False}, headers=ADMIN)
    assert recreated.status_code == 200, recreated.text
    assert recommend(client, "ann", phone["access_token"]).status_code == 401
    assert code(refresh(client, phone["refresh_token"])) == "device_revoked"
    fresh = register(client, "ann", bearer(token_for(client, "ann")))
    assert recommend(client, "ann", fresh["access_token"]).status_code == 200


def test_device_cap_is_a_409(tmp_path: Path, clock: Clock) -> None:
    data = tmp_path / "data"
    with open_engine(data, clock, max_devices=1) as engine:
        app = create_app(settings_for(data), engine=engine)
        with TestClient(app, raise_server_exceptions=False) as c:
            register(c, "ann", ADMIN)
            response = c.post("/users/ann/devices", headers=ADMIN)
            assert response.status_code == 409 and code(response) == "too_many_devices"


def test_signer_device_claims_round_trip() -> None:
    signer = TokenSigner(b"s" * 32, clock=lambda: START)
    device = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
    token, claims = signer.mint("ann", 60, device_id=device)
    assert signer.verify(token) == claims and claims.kind == "access"
    token, claims = signer.mint("ann", 60, device_id=device, refresh_counter=7)
    assert signer.verify(token, refresh=True) == claims and claims.counter == 7
    for bad in [{"device_id": device.upper()}, {"refresh_counter": 1}, {"device_id": "x"}]:
        with pytest.raises(ValueError):
            signer.mint("ann", 60, **bad)  # type: ignore[arg-type]
