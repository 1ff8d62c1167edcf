"""The OpenAPI schema and the server agree, case by case.

Each row is one request: its status, and whether the request body is valid under the
operation's schema in ``/openapi.json``. A 2xx must be schema-valid and a 422 schema-invalid,
so each row fails on its own when the server and the schema say different things:
coercions (``0`` for a boolean, ``false`` for a number, a number for a date-time),
inputs the server refuses that the schema must state (blank item text, an empty forget,
a token TTL over the maximum, inconsistent events), inputs the schema allows that the
server must accept (``filters: {}``), and the ``Allow`` header of a 405.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import Any

import jsonschema_rs
import pytest
from api_support import ADMIN, api_client, sample_items
from fastapi.testclient import TestClient

from ownrank.service.schemas import NON_BLANK
from ownrank.service.settings import ServiceSettings

MAX_TTL = ServiceSettings().token_max_ttl_seconds
USER = "reader-1"
ITEM = "jazz-0"


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(tmp_path_factory.mktemp("strict") / "data") as client:
        response = client.post("/items", json={"items": sample_items()}, headers=ADMIN)
        assert response.status_code == 200, response.text
        events = [{"kind": "like", "item_id": ITEM}, {"kind": "view", "item_id": "chess-1"}]
        response = client.post(
            f"/users/{USER}/interactions", json={"events": events}, headers=ADMIN
        )
        assert response.status_code == 200, response.text
        yield client


@pytest.fixture(scope="module")
def openapi(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = client.get("/openapi.json").json()
    return document


def body_is_valid(openapi: dict[str, Any], method: str, template: str, body: Any) -> bool:
    """Whether ``body`` is valid under the operation's request body schema (JSON Schema
    2020-12, as OpenAPI 3.1 reads it; formats are annotations)."""
    operation = openapi["paths"][template][method]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    root = {**schema, "components": openapi["components"]}
    return bool(jsonschema_rs.Draft202012Validator(root).is_valid(body))


def event(**fields: Any) -> dict[str, Any]:
    return {"events": [fields]}


def item(**fields: Any) -> dict[str, Any]:
    return {"items": [{"id": "strict-item", **fields}]}


OK, INVALID = 200, 422
CONSENT = "/users/{user_id}/consent"
RECREATE = "/users/{user_id}/recreate"
RECOMMEND = "/users/{user_id}/recommend"
PERSONAL_SEARCH = "/users/{user_id}/search"
FORGET = "/users/{user_id}/forget"
INTERACT = "/users/{user_id}/interactions"
PROPERTIES = "/items/{item_id}/properties"
SIMILAR = "/items/{item_id}/similar"
HISTORY = "/recommend/from-history"

# (method, path template, body, status)
CASES: dict[str, tuple[str, str, Any, int]] = {
    # -- booleans are booleans
    "consent 0": ("put", CONSENT, {"shared_statistics": 0}, INVALID),
    "consent 'true'": ("put", CONSENT, {"shared_statistics": "true"}, INVALID),
    "consent true": ("put", CONSENT, {"shared_statistics": True}, OK),
    "recreate 0": ("post", RECREATE, {"shared_statistics": 0}, INVALID),
    "recreate 1": ("post", RECREATE, {"shared_statistics": 1}, INVALID),
    "recreate true": ("post", RECREATE, {"shared_statistics": True}, OK),
    "recommend exclude_seen 0": ("post", RECOMMEND, {"exclude_seen": 0}, INVALID),
    "properties replace 0": ("patch", PROPERTIES, {"properties": {}, "replace": 0}, INVALID),
    "properties replace false": (
        "patch",
        PROPERTIES,
        {"properties": {"topic": "jazz"}, "replace": False},
        OK,
    ),
    # -- numbers are numbers: not booleans, not strings; a JSON integer is a number
    "recommend diversity false": ("post", RECOMMEND, {"diversity": False}, INVALID),
    "recommend diversity true": ("post", RECOMMEND, {"diversity": True}, INVALID),
    "recommend diversity '0.5'": ("post", RECOMMEND, {"diversity": "0.5"}, INVALID),
    "recommend diversity 1": ("post", RECOMMEND, {"diversity": 1}, OK),
    "recommend diversity 0.5": ("post", RECOMMEND, {"diversity": 0.5}, OK),
    "search n true": ("post", "/search", {"query": "jazz", "n": True}, INVALID),
    "search n '5'": ("post", "/search", {"query": "jazz", "n": "5"}, INVALID),
    "search n 5.0": ("post", "/search", {"query": "jazz", "n": 5.0}, OK),
    "event weight true": ("post", INTERACT, event(kind="view", item_id=ITEM, weight=True), INVALID),
    "token ttl '120'": ("post", "/tokens", {"user_id": USER, "ttl_seconds": "120"}, INVALID),
    # -- date-times are ISO 8601 strings, never seconds since the epoch
    "forget after 0": ("post", FORGET, {"after": 0}, INVALID),
    "forget after '1700000000'": ("post", FORGET, {"after": "1700000000"}, INVALID),
    "forget after ISO": ("post", FORGET, {"after": "2100-01-01T00:00:00Z"}, OK),
    "event timestamp number": (
        "post",
        INTERACT,
        event(kind="view", item_id=ITEM, timestamp=1_700_000_000),
        INVALID,
    ),
    "item published_at number": ("post", "/items", item(title="t", published_at=0), INVALID),
    # -- filters: {} is no filter, like null
    "search filters {}": ("post", "/search", {"query": "jazz", "filters": {}}, OK),
    "search filters null": ("post", "/search", {"query": "jazz", "filters": None}, OK),
    "personal search filters {}": ("post", PERSONAL_SEARCH, {"query": "j", "filters": {}}, OK),
    "similar filters {}": ("post", SIMILAR, {"filters": {}}, OK),
    "recommend filters {}": ("post", RECOMMEND, {"filters": {}}, OK),
    "from-history filters {}": ("post", HISTORY, {"events": [], "filters": {}}, OK),
    "search filters nested": (
        "post",
        "/search",
        {"query": "j", "filters": {"$or": [{"topic": "jazz"}, {"minutes": {"$lte": 3}}]}},
        OK,
    ),
    "search filters nested {}": ("post", "/search", {"query": "j", "filters": {"$not": {}}}, 400),
    "search filters list": ("post", "/search", {"query": "jazz", "filters": []}, INVALID),
    # -- forget needs a criterion
    "forget {}": ("post", FORGET, {}, INVALID),
    "forget all null": ("post", FORGET, {"item_ids": None, "before": None, "after": None}, INVALID),
    "forget item_ids": ("post", FORGET, {"item_ids": ["chess-1"]}, OK),
    # -- an item needs a non-blank title or body
    "item without text": ("post", "/items", item(), INVALID),
    "item blank title": ("post", "/items", item(title=" \t"), INVALID),
    "item blank title and body": ("post", "/items", item(title=" ", body="\u3000\n"), INVALID),
    "item blank title, body": ("post", "/items", item(title=" ", body="a body"), OK),
    # -- the token TTL has a maximum (the server's setting; its default in the schema)
    "token ttl over the maximum": (
        "post",
        "/tokens",
        {"user_id": USER, "ttl_seconds": MAX_TTL + 1},
        INVALID,
    ),
    "token ttl at the maximum": ("post", "/tokens", {"user_id": USER, "ttl_seconds": MAX_TTL}, OK),
    "token ttl under the minimum": (
        "post",
        "/tokens",
        {"user_id": USER, "ttl_seconds": 59},
        INVALID,
    ),
    # -- each event kind its own fields
    "like with query ''": ("post", INTERACT, event(kind="like", item_id=ITEM, query=""), INVALID),
    "like with blank query": (
        "post",
        INTERACT,
        event(kind="like", item_id=ITEM, query="  "),
        INVALID,
    ),
    "like with value": ("post", INTERACT, event(kind="like", item_id=ITEM, value=1), INVALID),
    "like without item": ("post", INTERACT, event(kind="like"), INVALID),
    "like": ("post", INTERACT, event(kind="like", item_id=ITEM, query=None, value=None), OK),
    "rating without value": ("post", INTERACT, event(kind="rating", item_id=ITEM), INVALID),
    "rating 0": ("post", INTERACT, event(kind="rating", item_id=ITEM, value=0), INVALID),
    "rating 6": ("post", INTERACT, event(kind="rating", item_id=ITEM, value=6), INVALID),
    "rating 4.5": ("post", INTERACT, event(kind="rating", item_id=ITEM, value=4.5), OK),
    "dwell without value": ("post", INTERACT, event(kind="dwell", item_id=ITEM), INVALID),
    "dwell 30": ("post", INTERACT, event(kind="dwell", item_id=ITEM, value=30), OK),
    "search event blank query": ("post", INTERACT, event(kind="search", query=" \n"), INVALID),
    "search event with item": (
        "post",
        INTERACT,
        event(kind="search", query="jazz", item_id=ITEM),
        INVALID,
    ),
    "search event": ("post", INTERACT, event(kind="search", query="jazz"), OK),
    "history with a rating without value": (
        "post",
        HISTORY,
        event(kind="rating", item_id=ITEM),
        INVALID,
    ),
    # -- a blank search
    "blank search": ("post", "/search", {"query": " \u2003"}, INVALID),
}


@pytest.mark.parametrize("name", list(CASES))
def test_server_and_schema_agree(client: TestClient, openapi: dict[str, Any], name: str) -> None:
    method, template, body, status = CASES[name]
    path = template.replace("{user_id}", USER).replace("{item_id}", ITEM)
    response = client.request(method, path, json=body, headers=ADMIN)
    assert response.status_code == status, response.text
    if status == INVALID:
        assert response.json()["code"] == "validation_error", response.text
    if status in (OK, INVALID):
        # a 400 is a rule beyond JSON Schema (nesting of filters); the rest it states
        assert body_is_valid(openapi, method, template, body) == (status == OK)


def test_the_schema_states_the_rules(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    ttl = schemas["TokenRequest"]["properties"]["ttl_seconds"]["anyOf"][0]
    assert ttl["maximum"] == MAX_TTL and ttl["minimum"] == 60
    assert schemas["ConsentRequest"]["properties"]["shared_statistics"]["type"] == "boolean"
    assert schemas["ForgetRequest"]["minProperties"] == 1
    assert len(schemas["ForgetRequest"]["anyOf"]) == 3
    assert {b["required"][0] for b in schemas["ItemIn"]["anyOf"]} == {"title", "body"}
    assert len(schemas["EventIn"]["anyOf"]) == 4
    assert "PropertyFilter" in schemas


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/search", "POST"),
        ("PUT", "/search", "POST"),
        ("OPTIONS", f"/users/{USER}", "DELETE, PUT"),
        ("GET", f"/users/{USER}", "DELETE, PUT"),
        ("TRACE", f"/items/{ITEM}", "DELETE, GET"),
        ("OPTIONS", "/health", "GET"),
    ],
)
def test_a_405_lists_the_allowed_methods(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path, headers=ADMIN)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json()["code"] == "method_not_allowed"


def test_non_blank_pattern_is_what_strip_keeps() -> None:
    """The schema's NON_BLANK pattern and the server's ``str.strip()`` see the same
    characters as blank (JSON Schema's ``\\s`` differs: \\x1c-\\x1f, \\x85, \\ufeff)."""
    pattern = re.compile(NON_BLANK)
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        assert bool(pattern.search(char)) == bool(char.strip()), hex(code)


def test_non_blank_pattern_reads_the_same_in_json_schema() -> None:
    root = {"type": "string", "pattern": NON_BLANK}
    validator = jsonschema_rs.Draft202012Validator(root)
    for blank in (" ", "\t\n", "\u3000", "\x1c", "\x85"):
        assert not validator.is_valid(blank), repr(blank)
    for text in ("a", " a ", "\ufeff"):
        assert validator.is_valid(text), repr(text)
