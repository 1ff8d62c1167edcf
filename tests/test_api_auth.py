"""Auth: the matrix of credentials x routes, token mechanics, and secrets that persist."""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import (
    ADMIN,
    SECOND_ADMIN_KEY,
    api_client,
    bearer,
    sample_items,
    settings_for,
    token_for,
)
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from ownrank.service.auth import (
    SECRET_FILE,
    TokenError,
    TokenSigner,
    admin_keys,
    load_signer,
)
from ownrank.service.cli import app as cli_app
from ownrank.service.settings import ServiceSettings
from ownrank.storage import secret_files

OWNER = "alice"
OTHER = "bob"

# (method, path, body) of every route that acts on one user
USER_ROUTES: list[tuple[str, str, Any]] = [
    ("post", "/users/{u}/interactions", {"events": [{"kind": "like", "item_id": "jazz-0"}]}),
    ("post", "/users/{u}/recommend", {"n": 3}),
    ("post", "/users/{u}/search", {"query": "jazz"}),
    ("get", "/users/{u}/export", None),
    ("post", "/users/{u}/forget", {"item_ids": ["jazz-0"]}),
    ("put", "/users/{u}/consent", {"shared_statistics": True}),
    ("delete", "/users/{u}", None),
]
ADMIN_ROUTES: list[tuple[str, str, Any]] = [
    ("post", "/items", {"items": sample_items(2)}),
    ("post", "/items/delete", {"ids": ["nothing-here"]}),
    ("delete", "/items/nothing-here", None),
    ("patch", "/items/jazz-0/properties", {"properties": {"x": 1}}),
    ("get", "/catalog", None),
    ("post", "/tokens", {"user_id": OWNER}),
    ("put", "/users/{u}", {"format": 1, "user_id": OWNER, "exists": False}),
]
ANY_CALLER_ROUTES: list[tuple[str, str, Any]] = [
    ("get", "/items/jazz-0", None),
    ("post", "/search", {"query": "jazz"}),
    ("post", "/items/jazz-0/similar", {"n": 2}),
    ("post", "/recommend/from-history", {"events": [{"kind": "like", "item_id": "jazz-0"}]}),
]
ALL_ROUTES = USER_ROUTES + ADMIN_ROUTES + ANY_CALLER_ROUTES


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with api_client(tmp_path_factory.mktemp("auth") / "data") as c:
        assert c.post("/items", json={"items": sample_items()}, headers=ADMIN).status_code == 200
        yield c


@pytest.fixture(scope="module")
def credentials(client: TestClient) -> dict[str, dict[str, str]]:
    """Every kind of credential the matrix tries."""
    data_dir: Path = client.app.state.settings.data_dir  # type: ignore[attr-defined]
    secret = (data_dir / "service" / SECRET_FILE).read_bytes()
    expired, _ = TokenSigner(secret, clock=lambda: time.time() - 7200).mint(OWNER, 3600)
    own = token_for(client, OWNER)
    head, payload, signature = own.split(".")
    other_payload = token_for(client, OTHER).split(".")[1]
    forged_by_other_key, _ = TokenSigner(b"k" * 32).mint(OWNER, 3600)
    return {
        "admin": ADMIN,
        "rotated_admin": bearer(SECOND_ADMIN_KEY),
        "own": bearer(own),
        "other": bearer(token_for(client, OTHER)),
        "expired": bearer(expired),
        "forged_signature": bearer(f"{head}.{payload}.{signature[:-2]}AA"),
        "swapped_payload": bearer(f"{head}.{other_payload}.{signature}"),
        "foreign_secret": bearer(forged_by_other_key),
        "garbage": bearer("not-a-key"),
        "missing": {},
        "basic_scheme": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    }


def call(client: TestClient, route: tuple[str, str, Any], headers: dict[str, str]) -> Any:
    method, path, body = route
    if (method, path) == ("put", "/users/{u}"):
        headers = {**headers, "If-Match": "*"}  # a conditional write (service/conditional.py)
    return client.request(method, path.format(u=OWNER), json=body, headers=headers)


def ids(routes: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{m.upper()} {p}" for m, p, _b in routes]


UNAUTHENTICATED = {
    "expired": "token_expired",
    "forged_signature": "invalid_token",
    "swapped_payload": "invalid_token",
    "foreign_secret": "invalid_token",
    "garbage": "invalid_credentials",
    "missing": "missing_credentials",
    "basic_scheme": "missing_credentials",
}


@pytest.mark.parametrize("route", ALL_ROUTES, ids=ids(ALL_ROUTES))
@pytest.mark.parametrize("who", sorted(UNAUTHENTICATED))
def test_missing_expired_or_forged_credentials_are_401(
    client: TestClient, credentials: dict[str, dict[str, str]], route: Any, who: str
) -> None:
    response = call(client, route, credentials[who])
    assert response.status_code == 401, response.text
    assert response.json()["code"] == UNAUTHENTICATED[who]
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("route", USER_ROUTES, ids=ids(USER_ROUTES))
def test_user_routes_admit_admin_and_own_token_only(
    client: TestClient, credentials: dict[str, dict[str, str]], route: Any
) -> None:
    for who in ("own", "admin", "rotated_admin"):
        response = call(client, route, credentials[who])
        assert response.status_code == 200, (who, response.text)
    response = call(client, route, credentials["other"])
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=ids(ADMIN_ROUTES))
def test_admin_routes_refuse_user_tokens(
    client: TestClient, credentials: dict[str, dict[str, str]], route: Any
) -> None:
    for who in ("own", "other"):
        response = call(client, route, credentials[who])
        assert response.status_code == 403, (who, response.text)
        assert response.json()["code"] == "admin_required"
    for who in ("admin", "rotated_admin"):
        assert call(client, route, credentials[who]).status_code in (200, 404), who


@pytest.mark.parametrize("route", ANY_CALLER_ROUTES, ids=ids(ANY_CALLER_ROUTES))
def test_catalog_reads_admit_any_valid_credential(
    client: TestClient, credentials: dict[str, dict[str, str]], route: Any
) -> None:
    for who in ("own", "other", "admin"):
        assert call(client, route, credentials[who]).status_code == 200, who


def test_operations_routes_are_open(client: TestClient) -> None:
    for path in ("/health", "/ready", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_minted_token_carries_user_and_expiry(client: TestClient) -> None:
    before = time.time()
    response = client.post("/tokens", json={"user_id": "carol", "ttl_seconds": 120}, headers=ADMIN)
    body = response.json()
    assert body["user_id"] == "carol" and body["token_type"] == "bearer"
    data_dir: Path = client.app.state.settings.data_dir  # type: ignore[attr-defined]
    claims = load_signer(settings_for(data_dir)).verify(body["token"])
    assert claims.user_id == "carol"
    assert before + 119 <= claims.expires_at <= time.time() + 121


# -- token mechanics ----------------------------------------------------------------------


def test_signer_round_trip_and_refusals() -> None:
    now = [1_000_000.0]
    signer = TokenSigner(b"s" * 32, clock=lambda: now[0])
    token, claims = signer.mint("user.1@x", 60)
    assert signer.verify(token) == claims
    now[0] += 60
    with pytest.raises(TokenError) as expired:
        signer.verify(token)
    assert expired.value.code == "token_expired"
    for bad in ("", "ort1", "ort1.a.b", "ort2.x.y", token + "x", token.replace("ort1.", "ort1..")):
        with pytest.raises(TokenError):
            signer.verify(bad)
    with pytest.raises(ValueError):
        signer.mint("no spaces", 60)
    with pytest.raises(ValueError):
        TokenSigner(b"short")


def test_secret_and_admin_key_persist_across_restarts_with_private_files(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with api_client(data, admin_keys=()) as first:
        key_file = data / "service" / "admin_keys"
        key = key_file.read_text().strip()
        assert key.startswith("ork_") and len(key) > 40
        token = first.post("/tokens", json={"user_id": OWNER}, headers=bearer(key)).json()["token"]
    for name in ("admin_keys", SECRET_FILE):
        mode = stat.S_IMODE(os.stat(data / "service" / name).st_mode)
        assert mode == 0o600, (name, oct(mode))
    with api_client(data, admin_keys=()) as second:  # a restart: same secret, same key
        assert second.post("/users/alice/recommend", headers=bearer(token)).status_code == 200
        assert second.get("/catalog", headers=bearer(key)).status_code == 200


def test_admin_keys_from_env_and_file_for_rotation(tmp_path: Path) -> None:
    key_file = tmp_path / "keys.txt"
    key_file.write_text("# rotated 2026-11\nnew-key-1\n\nold-key-2\n")
    env = {
        "OWNRANK_DATA_DIR": str(tmp_path / "data"),
        "OWNRANK_ADMIN_KEYS": " env-key-a, env-key-b ,",
        "OWNRANK_ADMIN_KEYS_FILE": str(key_file),
    }
    settings = ServiceSettings.from_env(env)
    assert admin_keys(settings) == ["env-key-a", "env-key-b", "new-key-1", "old-key-2"]
    assert ServiceSettings.from_env(settings.to_env()) == settings
    # an explicit key file is never created by the service
    assert (
        admin_keys(
            settings.model_copy(update={"admin_keys": (), "admin_keys_file": tmp_path / "none"})
        )
        == []
    )


def test_concurrent_first_starts_agree_on_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "service" / SECRET_FILE
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        results.append(secret_files.read_or_create(path, secret_files.new_secret))

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1 and len(results[0]) == 32
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE]  # no temporary left


def test_cli_token_is_accepted_by_the_service(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with api_client(data) as client:
        result = CliRunner().invoke(cli_app, ["token", OWNER, "--data-dir", str(data)])
        assert result.exit_code == 0, result.output
        token = result.output.strip()
        assert client.post(f"/users/{OWNER}/recommend", headers=bearer(token)).status_code == 200
        assert client.post(f"/users/{OTHER}/recommend", headers=bearer(token)).status_code == 403
    result = CliRunner().invoke(cli_app, ["token", "bad id", "--data-dir", str(data)])
    assert result.exit_code == 2
    result = CliRunner().invoke(
        cli_app, ["token", OWNER, "--data-dir", str(data), "--ttl", str(10**9)]
    )
    assert result.exit_code == 2
