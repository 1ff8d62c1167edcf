"""Per-user latency harness of bench/quality.py (bench/latency.py) on synthetic ratings.

The timed per-user rankers must produce exactly the lists the batch evaluation ranks
(EASE / ALS with every rated item excluded), so the latency measured is that of the
real work; and quality.py must time each whole recommend call of its evaluation pass.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

if str(Path(__file__).resolve().parents[1]) not in sys.path:
    # `bench` is a folder of the repository, not an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import EASE
from bench.eval_data import Ratings
from bench.latency import (
    Latency,
    PeerTiming,
    als_ranker,
    ease_ranker,
    latency_json,
    print_latency,
    rated_columns,
    time_users,
)
from bench.peers import ALS, ALSParams, unavailable_reason
from bench.protocols import Split, chrono20, evaluate, top_k
from bench.quality import evaluated, ownrank_metrics, without_rated


def synthetic_split(seed: int = 0) -> Split:
    """60 users, 50 items: two taste blocks, positives on the own block, a few low
    ratings on the other (rated, so excluded from the lists, never positives)."""
    rng = np.random.default_rng(seed)
    users, items, ratings = [], [], []
    for u in range(60):
        own = np.arange(25) if u < 30 else np.arange(25, 50)
        other = np.arange(25, 50) if u < 30 else np.arange(25)
        for i in rng.choice(own, size=int(rng.integers(6, 15)), replace=False):
            users.append(u + 1)
            items.append(int(i) + 101)
            ratings.append(int(rng.integers(4, 6)))
        for i in rng.choice(other, size=3, replace=False):
            users.append(u + 1)
            items.append(int(i) + 101)
            ratings.append(int(rng.integers(1, 3)))
    n = len(users)
    return chrono20(
        Ratings(
            np.array(users, dtype=np.int64),
            np.array(items, dtype=np.int64),
            np.array(ratings, dtype=np.int64),
            rng.permutation(n).astype(np.int64) + 1_000_000,
        )
    )


def batch_lists(split: Split, scores: Any) -> dict[int, list[int]]:
    """The batch evaluation's top 10 per user, every rated item excluded."""
    cols = top_k(split, split.users, without_rated(split, scores))
    return {int(u): split.candidates[c].tolist() for u, c in zip(split.users, cols, strict=True)}


def test_rated_columns_cover_low_ratings() -> None:
    split = synthetic_split()
    rated = rated_columns(split)
    assert set(rated) == set(split.users.tolist())
    for user, cols in rated.items():
        items = set(split.candidates[cols].tolist())
        positives = set(split.train_positives[user].tolist())
        assert positives <= items
        low = split.train_all.item[(split.train_all.user == user)]
        assert items == set(low.tolist()) & set(split.candidates.tolist())


def test_ease_ranker_matches_batch_lists() -> None:
    split = synthetic_split()
    model = EASE(50.0).fit(split)
    rank = ease_ranker(split, model)
    expected = batch_lists(split, model.scores(split.users))
    for user in split.users.tolist():
        assert rank(user).tolist() == expected[user]
    seconds, ndcg = time_users(split, rank)
    assert len(seconds) == len(split.users) and all(s > 0 for s in seconds)
    assert ndcg == pytest.approx(
        evaluate(split, without_rated(split, model.scores(split.users)))["NDCG@10"]
    )


@pytest.mark.skipif(unavailable_reason("implicit") is not None, reason="implicit missing")
def test_als_ranker_matches_batch_lists() -> None:
    split = synthetic_split()
    model = ALS(ALSParams(factors=8, iterations=5)).fit(split)
    rank = als_ranker(split, model)
    expected = batch_lists(split, model.scores(split.users))
    same = sum(rank(u).tolist() == expected[u] for u in split.users.tolist())
    # gemv here, gemm in the batch: float32 rounding could flip a near-tie, nothing more
    assert same >= 0.95 * len(split.users)


def test_ownrank_metrics_times_each_call_on_the_evaluated_users() -> None:
    split = synthetic_split()

    class FakeEngine:
        def __init__(self) -> None:
            self.calls: list[str] = []

        def recommend(self, user: str, k: int, filters: dict[str, bool]) -> list[Any]:
            self.calls.append(user)
            return []

    engine = FakeEngine()
    seconds: list[float] = []
    subset = evaluated(split, quick=True)  # under 500 users: the split itself
    metrics = ownrank_metrics(engine, subset, seconds)  # type: ignore[arg-type]
    assert len(seconds) == len(engine.calls) == metrics["n_users"] == len(split.users)
    assert engine.calls == [str(u) for u in split.users]


def test_latency_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    lat = Latency.of([0.001] * 99 + [0.011])
    assert lat.p50 == pytest.approx(1.0) and lat.p99 == pytest.approx(1.1)
    ownrank = {"ownrank +popularity": Latency(4.0, 12.0, 100)}
    peers = [
        PeerTiming("EASE", "lambda=250", Latency(0.04, 0.2, 100), 0.19),
        PeerTiming("ALS", "", unavailable="implicit not importable"),
    ]
    doc = latency_json(ownrank, peers)
    assert doc["ownrank"]["ownrank +popularity"] == {"p50": 4.0, "p99": 12.0, "n": 100}
    assert doc["ratio"] == {"ownrank +popularity / EASE": {"p50": 100.0, "p99": 60.0}}
    assert doc["ALS"] == {"unavailable": "implicit not importable"}
    print_latency(ownrank, peers)
    out = capsys.readouterr().out
    assert "ownrank recommend (SDK call)" in out
    assert "100.0x" in out and "60.0x" in out
    assert "ALS" in out and "unavailable" in out
