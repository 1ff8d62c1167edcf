"""Per-user latency of bench/quality.py (bench/latency.py) on synthetic ratings.

The timed per-user rankers must produce exactly the lists the batch evaluation ranks
(EASE / ALS with every rated item excluded), so the latency measured is that of the
real work; and quality.py must time each whole recommend call of its evaluation pass,
and write the rows its targets are about.
"""

from __future__ import annotations

import argparse
from typing import Any

import harness
import numpy as np
import pytest
import quality
from baselines import EASE
from eval_data import Dataset, ItemInfo, Ratings
from latency import als_ranker, ease_ranker, peer_timings, rated_columns, time_users
from peers import ALS, ALSParams, unavailable_reason
from protocols import Split, chrono20, evaluate, top_k
from quality import evaluated, ownrank_metrics, without_rated


def synthetic_ratings(seed: int = 0) -> Ratings:
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
    return Ratings(
        np.array(users, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.array(ratings, dtype=np.int64),
        rng.permutation(len(users)).astype(np.int64) + 1_000_000,
    )


def synthetic_split(seed: int = 0) -> Split:
    return chrono20(synthetic_ratings(seed))


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


def test_without_rated_sets_every_rated_candidate_to_minus_infinity() -> None:
    split = synthetic_split()
    out = without_rated(split, np.zeros((len(split.users), len(split.candidates))))
    pairs = zip(split.train_all.user.tolist(), split.train_all.item.tolist(), strict=True)
    rated = set(pairs)
    for row, user in enumerate(split.users.tolist()):
        for col, item in enumerate(split.candidates.tolist()):
            assert (out[row, col] == -np.inf) == ((user, item) in rated)


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


def test_peer_timings_rows() -> None:
    split = synthetic_split()
    model = EASE(50.0).fit(split)
    run = harness.Run("test", {}, quick=True)
    timed = peer_timings(run, split, split, model, "lambda=50", dataset="d", protocol="chrono20")
    rows = {(r.metric, r.labels["model"]): r for r in run.rows}
    n = len(split.users)
    assert len(timed["EASE"]) == n and rows["scoring calls", "EASE"].value == n
    expected = evaluate(split, without_rated(split, model.scores(split.users)))["NDCG@10"]
    assert rows["scoring NDCG@10", "EASE"].value == pytest.approx(expected, rel=1e-5)
    assert rows["scoring p50", "EASE"].unit == "ms" and rows["params", "EASE"].value == "lambda=50"
    if unavailable_reason("implicit") is None:
        assert len(timed["ALS"]) == n and rows["scoring calls", "ALS"].value == n
    else:
        assert "ALS" not in timed and any("ALS" in note for note in run.notes)


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


def test_run_ownrank_rows_and_targets(
    monkeypatch: pytest.MonkeyPatch, encoder: Any, tmp_path: Any
) -> None:
    """One mode end to end on a real store (word-hash encoder): the quality, latency
    and ratio rows carry the labels the targets select."""
    monkeypatch.setattr(quality, "cached_encoder", lambda name: encoder)
    ratings = synthetic_ratings()
    items = {i: ItemInfo(f"movie {i}", genres=["a" if i < 126 else "b"]) for i in range(101, 151)}
    data = Dataset("ml-1m-half", ratings, items)
    split = chrono20(ratings)
    run = harness.Run("quality", {}, quick=True)
    args = argparse.Namespace(candidates=None, quick=True)
    labels = {"dataset": "ml-1m-half", "protocol": "chrono20"}
    peer = [0.001] * len(split.users)
    quality.run_ownrank(run, args, data, split, "popularity", {"EASE": peer}, labels)
    quality.declare(run)
    where = {**labels, "model": quality.HEADLINE}
    got = {r.metric: r for r in run.rows if r.matches(where) and "weights" not in r.labels}
    assert got["recommend calls"].value == len(split.users) == got["users"].value
    assert got["NDCG@10"].labels["rated"] == "excluded"
    assert 0.0 <= float(got["NDCG@10"].value) <= 1.0  # type: ignore[arg-type]
    recommend_p50 = float(got["recommend p50"].value)  # type: ignore[arg-type]
    assert got["p50 / EASE"].value == pytest.approx(recommend_p50 / 1.0, rel=1e-3)  # peer: 1 ms
    inner = [r for r in run.rows if r.metric == "inner NDCG@10"]
    assert len(inner) == len(quality.WEIGHT_GRID["popularity"])
    verdicts = {line[0]: line[3] for line in harness.target_lines(run.document())}
    chrono = f"ml-1m-half chrono20 NDCG@10, {quality.HEADLINE}"
    assert verdicts[chrono] in ("ok", "MISSES")  # measured: the target selects the row
    assert verdicts[f"{quality.HEADLINE} recommend p50 / EASE p50"] in ("ok", "MISSES")
    assert verdicts[f"{quality.HEADLINE} recommend p99"] in ("ok", "MISSES")
    assert "### NDCG@10" in harness.render(run.document())
