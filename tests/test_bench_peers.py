"""Library peers of the quality bench (bench/peers.py) on a tiny synthetic catalogue.

Two taste blocks: users of block A like A items, users of block B like B items, and
items carry their block as a genre. So a working collaborative model must rank the
user's own block first, and a content model must do so for items it never saw.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import harness
import numpy as np
import pytest
import run_peers
from baselines import EASE, ItemKNN, MostPop, RandomScores
from eval_data import Dataset, ItemInfo, Ratings
from peers import (
    ALS,
    BPR,
    ALSParams,
    BPRParams,
    ItemFeatures,
    LightFMHybrid,
    LightFMParams,
    item_tokens,
    measure_update,
    token_centroid,
    tune_als,
    tune_bpr,
    tune_lightfm,
)
from protocols import Split, chrono20, cold20, evaluate_scores

ROOT = Path(__file__).resolve().parents[1]
N_USERS, N_ITEMS = 40, 40  # users 1..40, items 101..140; the first half is block A


def _block(index: int, half: int) -> int:
    return 0 if index < half else 1


def synthetic_ratings(seed: int = 0) -> Ratings:
    """~600 ratings: each user gives 5 to a dozen items of their block and 1-2 to a
    few of the other block (negatives, never positives)."""
    rng = np.random.default_rng(seed)
    users, items, ratings = [], [], []
    for u in range(N_USERS):
        block = _block(u, N_USERS // 2)
        own = [i for i in range(N_ITEMS) if _block(i, N_ITEMS // 2) == block]
        other = [i for i in range(N_ITEMS) if _block(i, N_ITEMS // 2) != block]
        for i in rng.choice(own, size=12, replace=False):
            users.append(u + 1)
            items.append(int(i) + 101)
            ratings.append(int(rng.integers(4, 6)))
        for i in rng.choice(other, size=3, replace=False):
            users.append(u + 1)
            items.append(int(i) + 101)
            ratings.append(int(rng.integers(1, 3)))
    n = len(users)
    return Ratings(
        np.array(users, dtype=np.int64),
        np.array(items, dtype=np.int64),
        np.array(ratings, dtype=np.int64),
        rng.permutation(n).astype(np.int64) + 1_000_000,
    )


def item_info() -> dict[int, ItemInfo]:
    """Block A items are genre "Alpha", block B "Beta"; years differ by block too."""
    return {
        i + 101: ItemInfo(
            title=f"movie {i}",
            year=1980 if _block(i, N_ITEMS // 2) == 0 else 1999,
            genres=["Alpha" if _block(i, N_ITEMS // 2) == 0 else "Beta"],
        )
        for i in range(N_ITEMS)
    }


@pytest.fixture(scope="module")
def chrono() -> Split:
    return chrono20(synthetic_ratings())


@pytest.fixture(scope="module")
def cold() -> Split:
    return cold20(synthetic_ratings())


def _own_block_margin(split: Split, scores: np.ndarray) -> float:
    """Mean score of own-block candidates minus other-block ones, over users."""
    cand_block = (split.candidates - 101 >= N_ITEMS // 2).astype(int)
    margins = []
    for row, u in enumerate(split.users):
        own = cand_block == _block(int(u) - 1, N_USERS // 2)
        margins.append(scores[row, own].mean() - scores[row, ~own].mean())
    return float(np.mean(margins))


def _check_shape(split: Split, scores: np.ndarray) -> None:
    assert scores.shape == (len(split.users), len(split.candidates))
    assert np.all(np.isfinite(scores))


def test_synthetic_split_is_usable(chrono: Split, cold: Split) -> None:
    assert len(chrono.users) >= 30 and len(chrono.candidates) >= 30
    assert len(cold.users) >= 30 and len(cold.candidates) == int(0.2 * N_ITEMS)


def test_als_recovers_the_blocks_better_than_random(chrono: Split) -> None:
    pytest.importorskip("implicit")
    model = ALS(ALSParams(factors=8, regularization=1.0, alpha=0.5, confidence="scaled"))
    scores = model.fit(chrono).scores(chrono.users)
    _check_shape(chrono, scores)
    assert model.fit_seconds > 0
    assert _own_block_margin(chrono, scores) > 0
    als = evaluate_scores(chrono, model.scores)["NDCG@10"]
    rand = evaluate_scores(chrono, RandomScores(seed=0).fit(chrono).scores)["NDCG@10"]
    assert als > rand + 0.1


def test_als_hu_confidence_and_update_match_the_fit(chrono: Split) -> None:
    pytest.importorskip("implicit")
    model = ALS(ALSParams(factors=8, regularization=1.0, alpha=2.0, confidence="hu"))
    model.fit(chrono)
    assert ALSParams(alpha=2.0, confidence="hu").positive_confidence == 3.0
    u = int(chrono.users[0])
    fitted = model.scores(np.array([u]))[0]
    # a fresh solve on the unchanged history lands where the fit left the user
    updated = model.update_user(u, chrono.train_positives[u])
    assert updated.shape == fitted.shape
    assert np.corrcoef(fitted, updated)[0, 1] > 0.95
    cost = measure_update(model, chrono, n_users=5)
    assert cost.n_users == 5 and cost.ms > 0 and "least-squares" in cost.method


def test_bpr_scores_and_refit_update(chrono: Split) -> None:
    pytest.importorskip("implicit")
    model = BPR(BPRParams(factors=8, learning_rate=0.05, regularization=0.01, iterations=100))
    scores = model.fit(chrono).scores(chrono.users)
    _check_shape(chrono, scores)
    assert _own_block_margin(chrono, scores) > 0
    cost = measure_update(model, chrono, n_users=5, max_refits=1)
    assert model.update_is_refit and cost.n_users == 1 and "refit" in cost.method


def test_bpr_continued_fit_equals_a_direct_fit(chrono: Split) -> None:
    """Iteration tuning continues one fit; that must be the model a direct fit gives."""
    pytest.importorskip("implicit")
    direct = BPR(BPRParams(8, 0.05, 0.01, 100)).fit(chrono)
    staged = BPR(BPRParams(8, 0.05, 0.01, 50)).fit(chrono).train_more(50)
    assert staged.params == direct.params
    np.testing.assert_allclose(staged.scores(chrono.users), direct.scores(chrono.users))


def test_tuning_helpers_return_grid_points(chrono: Split) -> None:
    pytest.importorskip("implicit")
    grid = [ALSParams(4, 1.0, 0.5, "scaled"), ALSParams(8, 1.0, 0.5, "scaled")]
    als = tune_als(chrono, grid)
    assert als.best in grid and len(als.table) == 2
    bpr = tune_bpr(chrono, [BPRParams(8, 0.05, 0.01, 50)], iterations=(50, 100))
    assert [p.iterations for p, _v in bpr.table] == [50, 100]


def test_collaborative_peers_score_zero_on_new_items(cold: Split) -> None:
    pytest.importorskip("implicit")
    for model in (ALS(ALSParams(factors=8)), BPR(BPRParams(8, iterations=50))):
        scores = model.fit(cold).scores(cold.users)
        _check_shape(cold, scores)
        assert not scores.any()


def test_item_features_keep_only_what_training_can_learn() -> None:
    info = item_info()
    info[140] = ItemInfo("new", 2001, ["Gamma"], director="A, B", actors=["x", "y", "z", "w"])
    assert item_tokens(info[140]) == [
        "genre:Gamma",
        "decade:2000",
        "year5:2000",
        "director:A",
        "director:B",
        "actor:x",
        "actor:y",
        "actor:z",
    ]
    tokens = {i: item_tokens(v) for i, v in info.items()}
    train = np.arange(101, 121, dtype=np.int64)  # block A only
    features = ItemFeatures(tokens, train)
    assert "genre:Beta" not in features.vocab and "id:101" in features.vocab
    m = features.matrix(np.array([101, 125, 140], dtype=np.int64)).toarray()
    np.testing.assert_allclose(m.sum(axis=1), [1.0, 0.0, 0.0], atol=1e-6)
    # once Beta items are trained on, a new Beta item is its genre and year tokens
    features = ItemFeatures(tokens, np.arange(101, 131, dtype=np.int64))
    row = features.matrix(np.array([135], dtype=np.int64)).toarray()[0]
    names = {n for n, j in features.vocab.items() if row[j] > 0}
    assert names == {"genre:Beta", "decade:1990", "year5:1995"}


def test_lightfm_scores_new_items_from_features(cold: Split) -> None:
    pytest.importorskip("lightfm")
    model = LightFMHybrid(item_info(), LightFMParams(no_components=8, epochs=20))
    scores = model.fit(cold).scores(cold.users)
    _check_shape(cold, scores)
    assert np.ptp(scores, axis=1).min() > 0  # not constant for any user
    assert _own_block_margin(cold, scores) > 0
    cost = measure_update(model, cold, n_users=3)
    assert cost.n_users == 3 and "fit_partial" in cost.method


def test_lightfm_chrono_and_tuning(chrono: Split) -> None:
    pytest.importorskip("lightfm")
    result = tune_lightfm(chrono, item_info(), components=(8,), epochs=(5, 10))
    assert [p.epochs for p, _v in result.table] == [5, 10]
    model = LightFMHybrid(item_info(), result.best).fit(chrono)
    _check_shape(chrono, model.scores(chrono.users))
    u = int(chrono.users[0])
    assert model.update_user(u, chrono.train_positives[u]).shape == (len(chrono.candidates),)


def test_peers_module_imports_without_lightfm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lightfm", None)  # import lightfm -> ImportError
    spec = importlib.util.spec_from_file_location("peers_no_lightfm", ROOT / "bench/peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "peers_no_lightfm", module)  # dataclasses need it
    spec.loader.exec_module(module)
    assert module.unavailable_reason("lightfm") is not None
    with pytest.raises(module.PeerUnavailable):
        module.LightFMHybrid(item_info())


def test_baselines_update_like_a_fresh_score(chrono: Split, cold: Split) -> None:
    for split, model in (
        (chrono, ItemKNN(10)),
        (chrono, EASE(10.0)),
        (chrono, MostPop()),
        (cold, token_centroid(item_info())),
    ):
        model.fit(split)
        u = int(split.users[0])
        np.testing.assert_allclose(
            model.update_user(u, split.train_positives[u]),
            model.scores(np.array([u]))[0],
            atol=1e-9,
        )
        assert model.fit_seconds > 0 and model.update_method and not model.update_is_refit
        assert measure_update(model, split, n_users=3).ms >= 0


def test_itemknn_with_k_equals_a_direct_fit(chrono: Split) -> None:
    """ItemKNN's tuning prunes one similarity at several k; that must be a direct fit."""
    pruned = ItemKNN(50).fit(chrono).with_k(5)
    np.testing.assert_allclose(
        pruned.scores(chrono.users), ItemKNN(5).fit(chrono).scores(chrono.users)
    )


def test_token_centroid_prefers_the_users_block(cold: Split) -> None:
    model = token_centroid(item_info()).fit(cold)
    assert _own_block_margin(cold, model.scores(cold.users)) > 0


def test_run_peers_rows_and_tables(tmp_path: Path) -> None:
    """One synthetic dataset through run_peers: every model's rows on both protocols,
    chrono20's settings reused on cold20, and a result file the harness renders."""
    data = Dataset("synthetic", synthetic_ratings(), item_info())
    grid = {
        "itemknn": (5, 10),
        "ease": (10.0,),
        "als": (ALSParams(8, 1.0, 0.5, "scaled"),),
        "bpr": ((BPRParams(8, 0.05, 0.01, 50),), (50,)),
        "lightfm": ((8,), (5,)),
    }
    run = harness.Run("peers", {}, quick=True)
    bench = run_peers.Bench(run, grid, threads=1)
    bench.dataset(data)
    run_peers.declare(run)
    doc = run.finish(tmp_path / "peers.json")
    rows = harness.rows_of(harness.load(tmp_path / "peers.json"))

    def models(protocol: str, metric: str) -> set[str]:
        where = {"protocol": protocol, "metric": metric, "rated": "allowed"}
        return {str(r.labels["model"]) for r in rows if r.matches(where)}

    content = {"Centroid(tokens)"} | ({"LightFM"} if importlib.util.find_spec("lightfm") else set())
    collaborative = {"MostPop", "ItemKNN", "EASE"}
    if importlib.util.find_spec("implicit"):
        collaborative |= {"ALS", "BPR"}
    assert models("chrono20", "NDCG@10") == collaborative | content
    assert models("cold20", "NDCG@10") == collaborative | content | {"Random", "Random (expected)"}
    assert models("cold20", "update p50") == collaborative | content
    tuned = (collaborative - {"MostPop"}) | (content - {"Centroid(tokens)"})
    assert models("chrono20", "tune") == tuned
    assert not models("cold20", "tune") & collaborative  # chrono20's settings, not re-tuned
    chosen = {
        r.labels["protocol"]: r.value
        for r in rows
        if r.matches({"metric": "chosen", "model": "ItemKNN"})
    }
    assert chosen["chrono20"] == chosen["cold20"] in ("k=5", "k=10")
    assert all(0 <= r.value <= 1 for r in rows if r.metric in ("NDCG@10", "Recall@10", "HR@10"))
    assert "### chrono20: top-10 quality" in harness.render(doc)


def test_per_user_ndcg_averages_to_evaluate_and_pairs_on_the_same_users(chrono: Split) -> None:
    """tune_defaults compares settings by per-user NDCG differences: the per-user values
    must be the ones evaluate averages, in split.users order."""
    from protocols import evaluate, ndcg_per_user
    from tune_defaults import paired

    def test_first(user: int) -> list[int]:  # odd users: their test items first
        test = chrono.test[user].tolist()
        rest = [int(i) for i in chrono.candidates if int(i) not in test]
        return test + rest if user % 2 else rest[::-1]

    per_user = ndcg_per_user(chrono, test_first)
    assert per_user.shape == (len(chrono.users),)
    assert np.all(per_user[chrono.users % 2 == 1] == 1.0)
    assert per_user.mean() == pytest.approx(evaluate(chrono, test_first)["NDCG@10"])
    gain, error = paired(per_user, np.zeros_like(per_user))
    assert gain == pytest.approx(per_user.mean())
    assert error == pytest.approx(per_user.std(ddof=1) / np.sqrt(len(per_user)))
    assert paired(per_user, per_user) == (0.0, 0.0)
