"""The demo page's routes (``service/demo_page.py``) and the offline docs, without a
browser: the routes exist only in demo mode, a visitor token is minted only for a fresh
id and acts for that id alone, the page loads nothing from another origin, and /docs
and /redoc take their assets from the package. ``test_demo_browser.py`` drives the page
itself in Chromium."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from api_support import ADMIN, bearer, sample_items, settings_for, token_for
from fastapi.testclient import TestClient

from ownrank.service.app import create_app
from ownrank.service.demo_page import (
    DEMO_ENV,
    STATIC_DIR,
    VISITOR_BURST,
    VISITOR_TTL_SECONDS,
    demo_enabled,
)

from conftest import WordHashEncoder

VISITOR_ID = re.compile(r"^visitor-[0-9a-f]{16}$")


@contextmanager
def demo_client(data_dir: Path, *, demo: bool = True) -> Iterator[TestClient]:
    app = create_app(
        settings_for(data_dir), encoder_factory=lambda _s: WordHashEncoder(), demo=demo
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/items", json={"items": sample_items()}, headers=ADMIN).is_success
        yield client


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with demo_client(tmp_path / "data") as c:
        yield c


def visitor(client: TestClient, **kwargs: Any) -> dict[str, Any]:
    response = client.post("/demo/visitor", **kwargs)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_without_the_demo_there_is_no_page_and_no_visitor_route(tmp_path: Path) -> None:
    with demo_client(tmp_path / "data", demo=False) as plain:
        for method, path in [
            ("GET", "/"),
            ("POST", "/demo/visitor"),
            ("GET", "/demo/catalog"),
            ("POST", "/demo/verify-receipt"),
            ("GET", "/demo/static/demo.js"),
        ]:
            assert plain.request(method, path).status_code == 404, path
        assert "/demo/visitor" not in plain.get("/openapi.json").json()["paths"]


def test_demo_mode_is_read_from_the_environment() -> None:
    assert demo_enabled({DEMO_ENV: "true"}) and demo_enabled({DEMO_ENV: "1"})
    assert not demo_enabled({DEMO_ENV: "false"}) and not demo_enabled({})


def test_each_visitor_is_a_fresh_id_with_a_short_token(client: TestClient) -> None:
    first, second = visitor(client), visitor(client)
    assert VISITOR_ID.match(first["user_id"]) and VISITOR_ID.match(second["user_id"])
    assert first["user_id"] != second["user_id"]
    # whatever the caller sends, the id is new: never one the caller chose
    chosen = visitor(client, json={"user_id": "demo-reader"}, params={"user_id": "demo-reader"})
    assert VISITOR_ID.match(chosen["user_id"])
    claims = client.app.state.signer.verify(first["token"])  # type: ignore[attr-defined]
    assert claims.user_id == first["user_id"]
    assert claims.expires_at - claims.issued_at == VISITOR_TTL_SECONDS


def test_a_visitor_token_acts_for_that_visitor_only(client: TestClient) -> None:
    me = visitor(client)
    mine = bearer(me["token"])
    path = f"/users/{me['user_id']}"
    like = {"events": [{"kind": "like", "item_id": "jazz-0"}]}
    assert client.post(f"{path}/interactions", json=like, headers=mine).status_code == 200
    assert client.post(f"{path}/recommend", headers=mine).status_code == 200
    assert client.get(f"{path}/export", headers=mine).json()["exists"]
    # another user, an admin route
    assert client.post("/users/demo-reader/recommend", headers=mine).status_code == 403
    minted = client.post("/tokens", json={"user_id": "demo-reader"}, headers=mine)
    assert minted.status_code == 403 and minted.json()["code"] == "admin_required"
    assert client.get("/catalog", headers=mine).status_code == 403


def test_new_visitors_are_rate_limited_per_address(client: TestClient) -> None:
    statuses = [client.post("/demo/visitor").status_code for _ in range(VISITOR_BURST + 3)]
    assert statuses[:VISITOR_BURST] == [200] * VISITOR_BURST
    assert statuses[-1] == 429
    limited = client.post("/demo/visitor")
    assert limited.json()["code"] == "rate_limited" and int(limited.headers["Retry-After"]) >= 1


def test_the_catalog_topics_are_the_demo_catalogs(client: TestClient) -> None:
    catalog = client.get("/demo/catalog").json()
    assert catalog["items"] == 480
    assert len(catalog["topics"]) == 12
    assert {"topic": "astronomy", "items": 40} in catalog["topics"]


def test_the_server_verifies_a_receipt_for_browsers_without_ed25519(client: TestClient) -> None:
    me = visitor(client)
    receipt = client.delete(f"/users/{me['user_id']}", headers=bearer(me["token"])).json()
    check = client.post("/demo/verify-receipt", json=receipt).json()
    assert check == {"valid": True, "key_id": receipt["key_id"]}
    tampered = {**receipt, "events_removed": receipt["events_removed"] + 1}
    assert client.post("/demo/verify-receipt", json=tampered).json()["valid"] is False
    assert client.post("/demo/verify-receipt", json=[1, 2]).status_code == 422


def test_the_page_and_its_files_come_from_this_origin_only(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("demo.js", "demo.css"):
        asset = client.get(f"/demo/static/{name}")
        assert asset.status_code == 200 and asset.text == (STATIC_DIR / name).read_text()
    for path in STATIC_DIR.iterdir():
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", path.read_text()), path
    # no admin key ever reaches the browser: the page knows only the visitor route
    assert "/tokens" not in (STATIC_DIR / "demo.js").read_text()


PLACEHOLDER_CHECKSUM = "0" * 16


def test_the_device_pane_flow_works_with_a_visitor_token(client: TestClient) -> None:
    """What the page's device pane does (demo.js), through the ordinary routes: the
    visitor registers a device, which syncs with a placeholder checksum (so the server
    always sends its copy), pushes an offline event, is in sync when it sends the
    server's checksum back, and is refused once the visitor is erased."""
    me = visitor(client)
    mine, path = bearer(me["token"]), f"/users/{me['user_id']}"
    like = {"events": [{"kind": "like", "item_id": "jazz-0"}]}
    assert client.post(f"{path}/interactions", json=like, headers=mine).status_code == 200
    registered = client.post(f"{path}/devices", json={"label": "demo pane"}, headers=mine)
    assert registered.status_code == 201, registered.text
    device = bearer(registered.json()["access_token"])
    catalog = client.get("/sync/catalog", params={"encoding": "i8"}, headers=device).json()
    assert {i["id"] for i in catalog["items"]} >= {"jazz-0", "chess-1"} and catalog["cursor"]

    first = {"generation": None, "count": 0, "checksum": PLACEHOLDER_CHECKSUM}
    answer = client.post(f"{path}/sync", json=first, headers=device).json()
    assert [e["item_id"] for e in answer["record"]["events"]] == ["jazz-0"]
    assert answer["lease"]["key"]  # a device's token gets the lease key
    offline = {"id": str(uuid.uuid4()), "kind": "like", "item_id": "chess-1"}
    offline["timestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    push = {"generation": 0, "count": 2, "checksum": PLACEHOLDER_CHECKSUM, "push": [offline]}
    answer = client.post(f"{path}/sync", json=push, headers=device).json()
    assert (answer["accepted"], answer["in_sync"], answer["count"]) == (1, False, 2)
    assert offline["id"] in {e["id"] for e in answer["record"]["events"]}
    same = {"generation": 0, "count": 2, "checksum": answer["checksum"]}
    again = client.post(f"{path}/sync", json=same, headers=device).json()
    assert again["in_sync"] and again["record"] is None
    exported = client.get(f"{path}/export", headers=mine).json()
    assert offline["id"] in {e["id"] for e in exported["events"]}  # the main page sees it

    assert client.delete(path, headers=mine).status_code == 200
    erased = client.post(f"{path}/sync", json=same, headers=device)
    assert (erased.status_code, erased.json()["code"]) == (409, "user_erased")


def test_a_revoked_device_is_refused_at_its_next_sync(client: TestClient) -> None:
    me = visitor(client)
    mine, path = bearer(me["token"]), f"/users/{me['user_id']}"
    registered = client.post(f"{path}/devices", json={"label": "demo pane"}, headers=mine).json()
    device = bearer(registered["access_token"])
    revoked = client.delete(f"{path}/devices/{registered['device_id']}", headers=mine)
    assert revoked.status_code == 204
    refused = client.post(f"{path}/sync", json={"generation": None}, headers=device)
    assert (refused.status_code, refused.json()["code"]) == (401, "device_revoked")


def test_the_page_keeps_the_device_in_memory_only() -> None:
    script = (STATIC_DIR / "demo.js").read_text()
    assert "localStorage" not in script and "indexedDB" not in script
    # sessionStorage holds the visitor alone (each tab is a visitor), never a device
    assert script.count("sessionStorage.setItem(") == 1
    assert "sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.visitor))" in script


def test_requests_for_the_page_are_counted_under_route_templates(client: TestClient) -> None:
    client.get("/")
    client.get("/demo/static/demo.js")
    me = visitor(client)
    token_for(client, "someone")
    text = client.get("/metrics").text
    assert 'method="GET",route="/",status="200"' in text
    assert 'method="GET",route="/demo/static",status="200"' in text
    assert 'method="POST",route="/demo/visitor",status="200"' in text
    assert me["user_id"] not in text and "demo.js" not in text


@pytest.mark.parametrize("demo", [True, False])
def test_the_docs_load_their_assets_from_the_package(tmp_path: Path, demo: bool) -> None:
    with demo_client(tmp_path / "data", demo=demo) as c:
        for page in ("/docs", "/redoc"):
            html = c.get(page).text
            assets = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', html)
            assert assets, html
            for asset in assets:
                assert asset.startswith("/"), asset  # this server, no CDN
                response = c.get(asset)
                assert response.status_code == 200 and len(response.content) > 10_000, asset
        metrics = c.get("/metrics").text
        assert 'route="/static-offline-docs",status="200"' in metrics
        assert "swagger-ui" not in metrics
