"""Helpers shared by the API tests: an app over the fast fake encoder, credentials, items."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from ownrank.service.app import create_app
from ownrank.service.settings import ServiceSettings

from conftest import WordHashEncoder

ADMIN_KEY = "test-admin-key-0123456789"
SECOND_ADMIN_KEY = "test-admin-key-rotated"
TOPICS = ("jazz", "chess", "garden")


def settings_for(data_dir: Path, **overrides: Any) -> ServiceSettings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "admin_keys": (ADMIN_KEY, SECOND_ADMIN_KEY),
        "warm_up": False,
    }
    values.update(overrides)
    return ServiceSettings(**values)


@contextmanager
def api_client(data_dir: Path, **overrides: Any) -> Iterator[TestClient]:
    """A TestClient over a fresh app (lifespan run) with the word-hash encoder."""
    app = create_app(
        settings_for(data_dir, **overrides), encoder_factory=lambda _s: WordHashEncoder()
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


ADMIN = bearer(ADMIN_KEY)


def sample_items(count: int = 30) -> list[dict[str, Any]]:
    return [
        {
            "id": f"{TOPICS[k % 3]}-{k}",
            "title": f"{TOPICS[k % 3]} story number {k}",
            "body": f"all about {TOPICS[k % 3]} and more {TOPICS[k % 3]}",
            "tags": [TOPICS[k % 3]],
            "properties": {"topic": TOPICS[k % 3], "minutes": k % 10},
        }
        for k in range(count)
    ]


def token_for(client: TestClient, user_id: str, ttl: int | None = None) -> str:
    body: dict[str, Any] = {"user_id": user_id}
    if ttl is not None:
        body["ttl_seconds"] = ttl
    response = client.post("/tokens", json=body, headers=ADMIN)
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token
