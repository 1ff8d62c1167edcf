"""Two real uvicorn workers (``ownrank serve --workers 2``) over one data directory:
a catalog change made through one worker is visible through the other at once.

Each response names the worker process that answered (``X-Ownrank-Worker``);
fresh connections are spread over the workers by the kernel, so the test keeps
opening connections until the other worker answers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from live_server import running_service

ADMIN_KEY = "multiworker-admin-key"
HEADERS = {"Authorization": f"Bearer {ADMIN_KEY}"}
WORKER = "X-Ownrank-Worker"
STARTUP_SECONDS = 180


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("multiworker") / "data"
    env = {**os.environ, "OWNRANK_ADMIN_KEYS": ADMIN_KEY}
    with running_service(
        data_dir,
        data_dir.parent / "server.log",
        args=["--workers", "2"],
        env=env,
        startup_seconds=STARTUP_SECONDS,
    ) as url:
        yield url


def fresh(url: str) -> httpx.Client:
    """A client that opens a new connection per request (so either worker may answer)."""
    return httpx.Client(
        base_url=url,
        headers=HEADERS,
        timeout=30,
        limits=httpx.Limits(max_keepalive_connections=0),
    )


def until_worker(
    request: Callable[[], httpx.Response], accept: Callable[[str], bool], tries: int = 400
) -> httpx.Response:
    """Repeat ``request`` until a worker ``accept``-ed answers; return that response."""
    for _ in range(tries):
        response = request()
        if accept(response.headers[WORKER]):
            return response
    raise AssertionError("no request reached the wanted worker")


@pytest.mark.slow
def test_catalog_changes_through_one_worker_are_seen_by_the_other(server: str) -> None:
    with fresh(server) as client:
        search: dict[str, Any] = {"query": "trumpet solo improvisation", "n": 3}

        # both workers are up and have their index loaded before the change; /ready
        # answered from one of them, and the other may still be opening its engine (its
        # socket takes connections only once it listens): give it time, not a count
        seen: set[str] = set()
        deadline = time.monotonic() + 120
        while len(seen) < 2 and time.monotonic() < deadline:
            response = client.post("/search", json=search)
            assert response.status_code == 200
            seen.add(response.headers[WORKER])
            time.sleep(0.02)
        assert len(seen) == 2, "the kernel never handed a connection to the second worker"

        item = {"id": "jazz-1", "title": "A trumpet solo: improvisation in modal jazz"}
        upserted = client.post("/items", json={"items": [item]})
        assert upserted.status_code == 200 and upserted.json()["added"] == ["jazz-1"]
        writer = upserted.headers[WORKER]

        other = until_worker(lambda: client.post("/search", json=search), lambda w: w != writer)
        assert [h["item_id"] for h in other.json()["results"]] == ["jazz-1"]

        # a delete through one worker: the other never returns the item again
        deleted = client.post("/items/delete", json={"ids": ["jazz-1"]})
        assert deleted.json()["deleted"] == ["jazz-1"]
        writer = deleted.headers[WORKER]
        other = until_worker(lambda: client.post("/search", json=search), lambda w: w != writer)
        assert other.json()["results"] == []

        # tokens minted by one worker are accepted by the other (one shared secret)
        minted = client.post("/tokens", json={"user_id": "reader"})
        token = minted.json()["token"]
        other = until_worker(
            lambda: client.post(
                "/users/reader/recommend", headers={"Authorization": f"Bearer {token}"}
            ),
            lambda w: w != minted.headers[WORKER],
        )
        assert other.status_code == 200

        # /metrics on either worker counts the requests of both
        text = client.get("/metrics").text
        line = next(
            x
            for x in text.splitlines()
            if x.startswith("ownrank_http_requests_total")
            and 'route="/search"' in x
            and 'status="200"' in x
        )
        assert float(line.rsplit(" ", 1)[1]) >= 4
