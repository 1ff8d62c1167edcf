"""The load benchmark's ``floor`` server: the real service, whose engine answers one
precomputed recommendation, so its figures are the service's own cost per call."""

from __future__ import annotations

from pathlib import Path
from typing import cast

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
