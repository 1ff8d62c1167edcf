"""The HTTP API end to end over httpx (Starlette's TestClient), with the fast fake encoder:
every endpoint, error codes, limits, request ids, logs and metrics."""

from __future__ import annotations

import inspect
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from api_support import ADMIN, ADMIN_KEY, api_client, bearer, sample_items, token_for
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ownrank.service import routes_catalog, routes_ops, routes_users
from ownrank.service.logs import JsonFormatter


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with api_client(tmp_path / "data") as c:
        response = c.post("/items", json={"items": sample_items()}, headers=ADMIN)
        assert response.status_code == 200, response.text
        yield c


PARTS = {"personal", "neighbours", "popularity", "collaborative", "dislikes", "recency"}


def error_code(response: object) -> str:
    body = response.json()  # type: ignore[attr-defined]
    assert set(body) == {"code", "message", "details", "request_id"}, body
    return str(body["code"])


# -- operations -------------------------------------------------------------------------


def test_health_ready_docs_and_openapi(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready").json()
    assert ready["status"] == "ready" and ready["items"] == 30 and ready["index"] == "flat"
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {
        "/items",
        "/items/delete",
        "/items/{item_id}",
        "/items/{item_id}/properties",
        "/items/{item_id}/similar",
        "/catalog",
        "/search",
        "/users/{user_id}/interactions",
        "/users/{user_id}/recommend",
        "/users/{user_id}/search",
        "/users/{user_id}/export",
        "/users/{user_id}/forget",
        "/users/{user_id}/consent",
        "/users/{user_id}",
        "/recommend/from-history",
        "/tokens",
        "/health",
        "/ready",
        "/metrics",
    } <= paths
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def test_every_engine_route_runs_in_the_threadpool() -> None:
    """Sync endpoints run in Starlette's threadpool: inference never blocks the event loop."""
    routes = [
        r
        for router in (routes_catalog.router, routes_users.router, routes_ops.router)
        for r in router.routes
        if isinstance(r, APIRoute)
    ]
    assert len(routes) >= 19
    coroutines = {r.path for r in routes if inspect.iscoroutinefunction(r.endpoint)}
    assert coroutines == {"/health"}


# -- catalog ----------------------------------------------------------------------------


def test_upsert_is_idempotent_and_reports_what_changed(client: TestClient) -> None:
    items = sample_items(3)
    again = client.post("/items", json={"items": items}, headers=ADMIN).json()
    assert again == {
        "added": [],
        "updated": [],
        "unchanged": [i["id"] for i in items],
        "embedded": 0,
    }
    items[0]["title"] = "a new title about jazz"
    items[1]["properties"] = {"topic": "chess", "minutes": 99}
    changed = client.post("/items", json={"items": items[:2]}, headers=ADMIN).json()
    assert changed["updated"] == [items[0]["id"], items[1]["id"]]
    assert changed["embedded"] == 1  # a property change does not re-embed


def test_get_update_and_delete_items(client: TestClient) -> None:
    item = client.get("/items/jazz-0", headers=ADMIN).json()
    assert item["title"] == "jazz story number 0"
    assert item["tags"] == ["jazz"] and item["published_at"] is None

    merged = client.patch(
        "/items/jazz-0/properties", json={"properties": {"featured": True}}, headers=ADMIN
    ).json()
    assert merged["properties"] == {"topic": "jazz", "minutes": 0, "featured": True}
    replaced = client.patch(
        "/items/jazz-0/properties",
        json={"properties": {"topic": "rock"}, "replace": True},
        headers=ADMIN,
    ).json()
    assert replaced["properties"] == {"topic": "rock"}

    response = client.patch("/items/nope/properties", json={"properties": {}}, headers=ADMIN)
    assert response.status_code == 404 and error_code(response) == "item_not_found"

    assert client.delete("/items/jazz-0", headers=ADMIN).json() == {
        "deleted": ["jazz-0"],
        "missing": [],
    }
    response = client.delete("/items/jazz-0", headers=ADMIN)
    assert response.status_code == 404 and error_code(response) == "item_not_found"
    response = client.get("/items/jazz-0", headers=ADMIN)
    assert response.status_code == 404 and error_code(response) == "item_not_found"

    batch = client.post(
        "/items/delete", json={"ids": ["chess-1", "jazz-0", "garden-2"]}, headers=ADMIN
    ).json()
    assert batch == {"deleted": ["chess-1", "garden-2"], "missing": ["jazz-0"]}
    info = client.get("/catalog", headers=ADMIN).json()
    assert info["items"] == 27 and info["dimension"] == 64 and info["index"]["type"] == "flat"


def test_search_and_similar(client: TestClient) -> None:
    hits = client.post("/search", json={"query": "chess story", "n": 5}, headers=ADMIN).json()
    assert len(hits["results"]) == 5
    assert all(h["item_id"].startswith("chess") for h in hits["results"][:3])
    assert hits["results"][0]["item"]["id"] == hits["results"][0]["item_id"]

    filtered = client.post(
        "/search",
        json={"query": "story", "n": 20, "filters": {"minutes": {"$lte": 1}}},
        headers=ADMIN,
    ).json()
    assert {h["item"]["properties"]["minutes"] for h in filtered["results"]} <= {0, 1}
    assert len(filtered["results"]) == 6

    similar = client.post("/items/jazz-0/similar", headers=ADMIN).json()
    assert len(similar["results"]) == 10
    assert "jazz-0" not in {h["item_id"] for h in similar["results"]}
    only_garden = client.post(
        "/items/jazz-0/similar", json={"n": 3, "filters": {"topic": "garden"}}, headers=ADMIN
    ).json()
    assert [h["item"]["properties"]["topic"] for h in only_garden["results"]] == ["garden"] * 3
    response = client.post("/items/missing/similar", headers=ADMIN)
    assert response.status_code == 404 and error_code(response) == "item_not_found"


# -- users ------------------------------------------------------------------------------


def test_user_lifecycle(client: TestClient) -> None:
    me = bearer(token_for(client, "reader-1"))
    events = [
        {"kind": "like", "item_id": "jazz-0"},
        {"kind": "rating", "item_id": "jazz-3", "value": 5},
        {"kind": "dwell", "item_id": "jazz-6", "value": 30, "timestamp": "2026-01-02T03:04:05Z"},
        {"kind": "skip", "item_id": "chess-1"},
        {"kind": "search", "query": "jazz records"},
        {"kind": "like", "item_id": "not-in-catalog"},
    ]
    report = client.post("/users/reader-1/interactions", json={"events": events}, headers=me)
    body = report.json()
    ids = body.pop("event_ids")
    assert body == {
        "accepted": 5,
        "unknown_items": ["not-in-catalog"],
        "version": 1,
        "generation": 0,
        "duplicates": 0,
    }
    assert len(set(ids[:5])) == 5 and ids[5] is None  # one id per stored event

    recs = client.post("/users/reader-1/recommend", json={"n": 5}, headers=me).json()["results"]
    assert len(recs) == 5
    seen = {"jazz-0", "jazz-3", "jazz-6", "chess-1"}
    assert not seen & {r["item_id"] for r in recs}  # exclude_seen by default
    assert all({"reason", "retrieved_by", "parts"} <= set(r["explanation"]) for r in recs)
    assert all(set(r["explanation"]["parts"]) == PARTS for r in recs)
    assert recs[0]["item_id"].startswith("jazz")
    with_seen = client.post(
        "/users/reader-1/recommend", json={"n": 30, "exclude_seen": False}, headers=me
    ).json()["results"]
    assert seen <= {r["item_id"] for r in with_seen}
    diverse = client.post(
        "/users/reader-1/recommend",
        json={"n": 5, "diversity": 0.9, "filters": {"topic": {"$in": ["jazz", "chess"]}}},
        headers=me,
    ).json()["results"]
    assert {r["item"]["properties"]["topic"] for r in diverse} <= {"jazz", "chess"}
    default_body = client.post("/users/reader-1/recommend", headers=me)
    assert len(default_body.json()["results"]) == 10

    personal = client.post(
        "/users/reader-1/search", json={"query": "story", "n": 3}, headers=me
    ).json()
    assert len(personal["results"]) == 3

    exported = client.get("/users/reader-1/export", headers=me).json()
    assert exported["exists"] is True and exported["user_id"] == "reader-1"
    assert len(exported["events"]) == 5 and exported["version"] == 1

    forgot = client.post("/users/reader-1/forget", json={"item_ids": ["jazz-0"]}, headers=me).json()
    assert forgot["events_removed"] == 1 and forgot["version"] == 2
    forgot = client.post(
        "/users/reader-1/forget", json={"before": "2026-06-01T00:00:00Z"}, headers=me
    ).json()
    assert forgot["events_removed"] == 1  # the dated dwell event
    response = client.post("/users/reader-1/forget", json={}, headers=me)
    assert response.status_code == 422 and error_code(response) == "validation_error"

    consent = client.put(
        "/users/reader-1/consent", json={"shared_statistics": False}, headers=me
    ).json()
    assert consent == {"version": 4}

    # import (admin only, conditional on the version read) round-trips the export;
    # the version only grows
    read = client.get("/users/reader-1/export", headers=me)
    exported, etag = read.json(), read.headers["ETag"]
    assert etag == '"4"'
    response = client.put("/users/reader-1", json=exported, headers={**me, "If-Match": etag})
    assert response.status_code == 403 and error_code(response) == "admin_required"
    response = client.put("/users/reader-1", json=exported, headers=ADMIN)
    assert response.status_code == 428 and error_code(response) == "precondition_required"
    response = client.put("/users/reader-1", json=exported, headers={**ADMIN, "If-Match": etag})
    assert response.json() == {"version": 5} and response.headers["ETag"] == '"5"'
    assert client.get("/users/reader-1/export", headers=me).json() == {**exported, "version": 5}
    # a stale copy (read at version 4) is refused, nothing written
    response = client.put("/users/reader-1", json=exported, headers={**ADMIN, "If-Match": etag})
    assert response.status_code == 412 and error_code(response) == "version_conflict"
    assert client.get("/users/reader-1/export", headers=me).json()["version"] == 5
    response = client.put("/users/reader-1", json=exported, headers={**ADMIN, "If-Match": "5"})
    assert response.status_code == 400 and error_code(response) == "invalid_if_match"
    response = client.put("/users/someone-else", json=exported, headers={**ADMIN, "If-Match": "*"})
    assert response.status_code == 400 and error_code(response) == "user_id_mismatch"

    receipt = client.delete("/users/reader-1", headers=me).json()
    assert receipt["existed"] is True and receipt["events_removed"] == 3
    assert len(receipt["user_key"]) == 32 and "reader-1" not in json.dumps(receipt)
    assert client.get("/users/reader-1/export", headers=me).json() == {
        "format": 1,
        "user_id": "reader-1",
        "exists": False,
    }
    again = client.delete("/users/reader-1", headers=me).json()
    assert again["existed"] is False


def test_cold_start_and_stateless_recommendations(client: TestClient) -> None:
    stranger = bearer(token_for(client, "new-user"))
    cold = client.post("/users/new-user/recommend", json={"n": 4}, headers=stranger).json()
    assert len(cold["results"]) == 4
    history = {
        "events": [
            {"kind": "like", "item_id": "garden-2"},
            {"kind": "like", "item_id": "garden-5"},
        ],
        "n": 3,
    }
    recs = client.post("/recommend/from-history", json=history, headers=stranger).json()
    assert [r["item_id"].split("-")[0] for r in recs["results"]] == ["garden"] * 3
    # nothing was stored
    assert client.get("/users/new-user/export", headers=stranger).json()["exists"] is False


def test_a_malformed_event_rejects_the_whole_batch(client: TestClient) -> None:
    me = bearer(token_for(client, "u-1"))
    bad = [{"kind": "like", "item_id": "jazz-0"}, {"kind": "rating", "item_id": "jazz-3"}]
    response = client.post("/users/u-1/interactions", json={"events": bad}, headers=me)
    # the rating has no value: the schema says so (anyOf per kind), so a 422
    assert response.status_code == 422 and error_code(response) == "validation_error"
    assert client.get("/users/u-1/export", headers=me).json()["exists"] is False
    response = client.post(
        "/users/u-1/interactions", json={"events": [{"kind": "teleport"}]}, headers=me
    )
    assert response.status_code == 422 and error_code(response) == "validation_error"


# -- errors and limits ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("post", "/items", {"items": [{"id": "x", "title": "  "}]}, 422, "validation_error"),
        ("post", "/items", {"items": [{"id": "bad id", "title": "t"}]}, 422, "validation_error"),
        (
            "post",
            "/items",
            {"items": [{"id": "x", "title": "t", "color": 1}]},
            422,
            "validation_error",
        ),
        (
            "post",
            "/items",
            {"items": [{"id": "x", "title": "t", "properties": {"$x": 1}}]},
            422,
            "invalid_item",
        ),
        ("post", "/search", {"query": "x", "n": 101}, 422, "validation_error"),
        ("post", "/search", {"query": "x", "n": 0}, 422, "validation_error"),
        ("post", "/search", {"query": ""}, 422, "validation_error"),
        ("post", "/search", {"query": "   "}, 422, "validation_error"),
        ("post", "/search", {"query": "x", "filters": {"a": {"$near": 1}}}, 400, "invalid_filter"),
        ("post", "/search", {"query": "x", "filters": {"$or": "no"}}, 400, "invalid_filter"),
        ("post", "/users/u/recommend", {"diversity": 2}, 422, "validation_error"),
        ("post", "/users/u/recommend", {"filters": {"$and": 3}}, 400, "invalid_filter"),
        ("get", "/items/" + "x" * 257, None, 422, "validation_error"),
        ("get", "/nowhere", None, 404, "not_found"),
        ("put", "/search", None, 405, "method_not_allowed"),
        ("post", "/tokens", {"user_id": "u", "ttl_seconds": 10**9}, 422, "validation_error"),
        ("post", "/tokens", {"user_id": "no spaces"}, 422, "validation_error"),
    ],
)
def test_bad_input_gets_a_json_error_with_a_stable_code(
    client: TestClient, method: str, path: str, body: object, status: int, code: str
) -> None:
    response = client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    assert response.headers["content-type"] == "application/json"


def test_malformed_json_is_a_400(client: TestClient) -> None:
    for raw in (b"{not json", b"", b"[1, 2"):
        response = client.post(
            "/search", content=raw, headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert response.status_code in (400, 422), raw
        assert error_code(response) in ("invalid_json", "validation_error")
    response = client.post(
        "/search", content=b"{nope", headers={**ADMIN, "Content-Type": "application/json"}
    )
    assert (response.status_code, error_code(response)) == (400, "invalid_json")


def test_body_and_batch_limits(tmp_path: Path) -> None:
    with api_client(tmp_path / "d", max_body_bytes=4096, max_batch_items=5) as client:
        too_many = {"items": sample_items(6)}
        response = client.post("/items", json=too_many, headers=ADMIN)
        assert response.status_code == 413 and error_code(response) == "batch_too_large"
        response = client.post("/items/delete", json={"ids": ["a"] * 6}, headers=ADMIN)
        assert response.status_code == 413 and error_code(response) == "batch_too_large"

        big = {"items": [{"id": "x", "title": "t" * 5000}]}
        response = client.post("/items", json=big, headers=ADMIN)
        assert response.status_code == 413 and error_code(response) == "body_too_large"

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted while streaming
            yield b'{"items": [{"id": "x", "title": "'
            for _ in range(10):
                yield b"t" * 1000
            yield b'"}]}'

        response = client.post(
            "/items", content=chunks(), headers={**ADMIN, "Content-Type": "application/json"}
        )
        assert response.status_code == 413 and error_code(response) == "body_too_large"
        assert client.get("/catalog", headers=ADMIN).json()["items"] == 0

    with api_client(tmp_path / "e", max_batch_events=3) as client:
        events = [{"kind": "view", "item_id": "a"}] * 4
        response = client.post("/users/u/interactions", json={"events": events}, headers=ADMIN)
        assert response.status_code == 413 and error_code(response) == "batch_too_large"


def test_rate_limit_per_credential(tmp_path: Path) -> None:
    with api_client(tmp_path / "d", rate_limit_per_second=0.5, rate_limit_burst=2) as client:
        one = bearer(token_for(client, "one"))
        statuses = [client.post("/users/one/recommend", headers=one).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        response = client.post("/users/one/recommend", headers=one)
        assert error_code(response) == "rate_limited"
        assert int(response.headers["Retry-After"]) >= 1
        two = bearer(token_for(client, "two"))  # the admin key has its own bucket too
        assert client.post("/users/two/recommend", headers=two).status_code == 200


# -- request ids, logs, metrics ---------------------------------------------------------


def test_request_ids(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    generated = client.get("/health", headers={"X-Request-ID": "bad id!" * 20})
    assert len(generated.headers["X-Request-ID"]) == 32
    response = client.get("/items/nope", headers={**ADMIN, "X-Request-ID": "req-9"})
    assert response.json()["request_id"] == "req-9"


def test_logs_hold_no_token_and_no_event_content(client: TestClient) -> None:
    token = token_for(client, "private-person")
    secret_query = "embarrassing midnight query"
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    server_logger = logging.getLogger("ownrank")  # the service's and the engine's loggers
    server_logger.addHandler(handler)
    previous = server_logger.level
    server_logger.setLevel(logging.DEBUG)
    try:
        client.post(
            "/users/private-person/interactions",
            json={"events": [{"kind": "search", "query": secret_query}]},
            headers={**bearer(token), "X-Request-ID": "r-1"},
        )
        client.post(
            "/users/private-person/search", json={"query": secret_query}, headers=bearer(token)
        )
        client.post("/users/private-person/recommend", headers=bearer("ort1.forged.token"))
    finally:
        server_logger.removeHandler(handler)
        server_logger.setLevel(previous)
    lines = stream.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) >= 3
    assert {"ts", "level", "logger", "message", "request_id"} <= set(records[0])
    assert records[0]["request_id"] == "r-1"
    assert records[0]["route"] == "/users/{user_id}/interactions"
    text = stream.getvalue()
    leaks = (token, secret_query, "midnight", "ort1.forged", "private-person", ADMIN_KEY)
    for leak in leaks:
        assert leak not in text


def test_metrics_use_route_templates_only(client: TestClient) -> None:
    me = bearer(token_for(client, "metric-user-77"))
    client.post("/users/metric-user-77/recommend", headers=me)
    client.post("/users/metric-user-77/search", json={"query": "jazz"}, headers=me)
    client.post("/users/metric-user-77/search", json={"query": "jazz"}, headers=me)
    client.delete("/users/metric-user-77", headers=me)
    client.get("/items/jazz-0", headers=ADMIN)
    text = client.get("/metrics").text
    assert "metric-user-77" not in text and "jazz-0" not in text
    assert 'route="/users/{user_id}/recommend"' in text
    assert 'route="/items/{item_id}"' in text
    assert "ownrank_erasures_total 1.0" in text
    assert 'ownrank_recommend_duration_seconds_count{kind="user"} 1.0' in text
    assert 'ownrank_query_embedding_cache_total{result="hit"}' in text
    assert "ownrank_http_request_duration_seconds_bucket" in text
