"""Faults of the service itself: an unexpected error is logged where it happened (and
nothing private with it), and the routes open without a credential are exactly the
documented ones."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import ADMIN, ADMIN_KEY, api_client, bearer, sample_items, settings_for, token_for
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ownrank.service.app import create_app
from ownrank.service.logs import JsonFormatter

from conftest import WordHashEncoder

README = Path(__file__).resolve().parents[1] / "README.md"
# what answers without a credential: operations, the docs, the receipt public keys, and
# a device's refresh (its credential, the refresh token, is the body)
OPEN_ROUTES = {
    "/devices/refresh",
    "/health",
    "/ready",
    "/metrics",
    "/receipts/public-keys",
    "/openapi.json",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
}
DOC_ROUTES = {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"}
BODY_CREDENTIAL_ROUTES = {"/devices/refresh"}  # open, but a bare request lacks the body: 422
# with ``ownrank serve --demo`` only (docs/demo.md): the page, a fresh visitor's token,
# the catalog's topics, and a receipt check (422 without a receipt)
DEMO_ROUTES = {"/", "/demo/visitor", "/demo/catalog", "/demo/verify-receipt"}
DEMO_BODY_ROUTES = {"/demo/verify-receipt"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with api_client(tmp_path / "data") as c:
        assert c.post("/items", json={"items": sample_items()}, headers=ADMIN).status_code == 200
        yield c


@pytest.fixture
def server_log() -> Iterator[io.StringIO]:
    """What the service logs, as its JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("ownrank")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _explode_with(secrets: list[str]) -> Any:
    def recommend_that_fails(*_args: Any, **_kwargs: Any) -> Any:
        try:
            raise KeyError(secrets[0])
        except KeyError as inner:
            raise RuntimeError(" ".join(secrets)) from inner

    return recommend_that_fails


def test_unexpected_error_logs_its_traceback_and_request_id_but_nothing_private(
    client: TestClient, server_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = "very-private-person"
    token = token_for(client, user)
    body_marker = "body-only-marker-4711"
    engine = client.app.state.engine  # type: ignore[attr-defined]
    monkeypatch.setattr(engine, "recommend", _explode_with([user, token, body_marker]))
    response = client.post(
        f"/users/{user}/recommend",
        json={"n": 3, "filters": {"topic": body_marker}},
        headers={**bearer(token), "X-Request-ID": "fault-1"},
    )
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert response.json()["request_id"] == "fault-1"
    records = [json.loads(line) for line in server_log.getvalue().splitlines()]
    errors = [r for r in records if r["level"] == "error"]
    assert len(errors) == 1, records
    error = errors[0]
    assert error["request_id"] == "fault-1"
    trace = error["traceback"]
    # the location: the failing function and its cause, by file and line
    assert "recommend_that_fails" in trace and "test_api_faults.py" in trace
    assert re.search(r'File ".*test_api_faults\.py", line \d+', trace)
    assert "builtins.RuntimeError" in trace and "builtins.KeyError" in trace
    text = server_log.getvalue()
    for leak in (user, token, body_marker, ADMIN_KEY):
        assert leak not in text, leak


def _routes(routes: list[Any]) -> list[tuple[str, str]]:
    """(method, path) of every route, those of included routers too (no prefixes here)."""
    out = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            out.extend(_routes(included.routes))
            continue
        methods = getattr(route, "methods", None) or set()
        for method in sorted(methods - {"HEAD"}):
            out.append((method, route.path))
    return out


def _check_open_routes(client: TestClient, open_routes: set[str], body_routes: set[str]) -> None:
    routes = _routes(client.app.routes)  # type: ignore[attr-defined]
    assert {path for _m, path in routes} >= open_routes
    for method, path in routes:
        concrete = re.sub(r"\{[^}]+\}", "jazz-0", path)
        response = client.request(method, concrete)
        if path in body_routes:
            assert response.status_code == 422, (method, path, response.status_code)
        elif path in open_routes:
            assert response.status_code == 200, (method, path, response.status_code)
        else:
            assert response.status_code == 401, (method, path, response.status_code)
            assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")


def test_only_documented_routes_answer_without_a_credential(client: TestClient) -> None:
    _check_open_routes(client, OPEN_ROUTES, BODY_CREDENTIAL_ROUTES)
    assert not {path for _m, path in _routes(client.app.routes)} & DEMO_ROUTES  # type: ignore[attr-defined]


def test_in_demo_mode_the_demo_routes_are_open_too(tmp_path: Path) -> None:
    app = create_app(
        settings_for(tmp_path / "data"), encoder_factory=lambda _s: WordHashEncoder(), demo=True
    )
    with TestClient(app, raise_server_exceptions=False) as demo:
        _check_open_routes(
            demo, OPEN_ROUTES | DEMO_ROUTES, BODY_CREDENTIAL_ROUTES | DEMO_BODY_ROUTES
        )


def test_readme_names_every_open_route() -> None:
    text = README.read_text()
    sentence = re.search(r"\*\*Auth\.\*\* Every call except (.+?) sends", text, re.S)
    assert sentence is not None
    named = set(re.findall(r"`(/[^`]*)`", sentence.group(1)))
    assert named == OPEN_ROUTES - DOC_ROUTES
    assert "and the docs" in sentence.group(1)


def test_public_keys_verify_a_receipt_without_a_credential(client: TestClient) -> None:
    token = token_for(client, "leaving-user")
    receipt = client.delete("/users/leaving-user", headers=bearer(token)).json()
    keys = client.get("/receipts/public-keys").json()["keys"]
    assert receipt["key_id"] in keys


def test_api_routes_are_all_checked() -> None:
    """The open set above names real routes (a renamed route fails here, not silently)."""
    from ownrank.service import routes_catalog, routes_devices, routes_ops, routes_users

    paths = {
        r.path
        for router in (
            routes_catalog.router,
            routes_users.router,
            routes_devices.router,
            routes_ops.router,
        )
        for r in router.routes
        if isinstance(r, APIRoute)
    }
    assert paths >= OPEN_ROUTES - DOC_ROUTES


def test_the_docs_routes_are_counted_under_their_own_path(client: TestClient) -> None:
    for path in ("/docs", "/openapi.json"):
        assert client.get(path).status_code == 200
    client.get("/users/some-person/nothing-here")  # unmatched: never the raw path
    text = client.get("/metrics").text
    assert 'route="/docs",status="200"' in text
    assert 'route="/openapi.json",status="200"' in text
    assert "some-person" not in text and 'route="<unmatched>",status="404"' in text
