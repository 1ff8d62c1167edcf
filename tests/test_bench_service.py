"""The load benchmark's ``floor`` server: the real service, whose engine answers one
precomputed recommendation, so its figures are the service's own cost per call."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import harness
import service_bench
from api_support import bearer, sample_items, settings_for, token_for
from engine_bench import user_id
from fastapi.testclient import TestClient

from ownrank import Engine
from ownrank.service.app import create_app

from conftest import WordHashEncoder, make_engine


def test_the_floor_server_answers_user_zeros_real_recommendations_through_the_service(
    tmp_path: Path,
) -> None:
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        engine.catalog.upsert(sample_items(30))
        engine.interact(user_id(0), [{"kind": "like", "item_id": "jazz-0"}])
        real = engine.recommend(user_id(0), 10)
        canned = service_bench.CannedRecommendations(engine)
        # the same answer whoever asks, whatever the arguments; the rest is the engine
        assert canned.recommend("someone", 3, {"topic": "chess"}) is canned.recommend(user_id(0))
        assert canned.catalog is engine.catalog
        app = create_app(settings_for(tmp_path), engine=cast(Engine, canned))
        with TestClient(app) as client:
            token = token_for(client, "u000123")
            answer = client.post("/users/u000123/recommend", json={"n": 10}, headers=bearer(token))
            assert answer.status_code == 200
            got = [
                (r["item_id"], {k: v for k, v in r["explanation"].items() if v is not None})
                for r in answer.json()["results"]
            ]  # the API states the optional details as null, the SDK leaves them out
            assert got == [(r.item_id, r.explanation) for r in real]
            # the service's own checks still run: another user's path is refused
            other = client.post("/users/u000124/recommend", json={}, headers=bearer(token))
            assert other.status_code == 403


def recommend_runs(*runs: tuple[int, float, float, int]) -> list[harness.Row]:
    """The rows the rule reads: (connections, 2xx/s, p99 ms, errors) per run."""
    rows = []
    for connections, ok, p99, errors in runs:
        labels = {"scenario": "recommend", "connections": connections}
        rows += [harness.Row("2xx", ok, "req/s", labels), harness.Row("p99", p99, "ms", labels)]
        rows += [harness.Row("errors", errors, "count", labels)]
    return rows


def test_the_target_row_is_the_most_recommend_calls_of_a_run_within_the_p99_budget() -> None:
    # 16 connections answer more, but past 50 ms; 8 answer more still, with an error
    rows = recommend_runs((2, 400.0, 20.0, 0), (16, 900.0, 61.0, 0), (8, 950.0, 30.0, 1))
    assert service_bench.recommend_at_budget(rows) == (400.0, 2)
    assert service_bench.recommend_at_budget(recommend_runs((16, 900.0, 61.0, 0))) == (0.0, None)
    floor = [harness.Row("2xx", 5000.0, "req/s", {"scenario": "floor", "connections": 2})]
    assert service_bench.recommend_at_budget(floor) is None  # no recommend run: not measured
