"""Recommendation quality of ownrank beside MostPop, ItemKNN and EASE, in one run.

The chrono20 and cold20 protocols of ``../shared/data/README.md`` on ml-1m-half and
ml-100k. ownrank is measured as deployed: the catalog ingested through the SDK, every
training user's ratings sent with ``Engine.interact``, each test user's list from
``Engine.recommend`` filtered to the protocol's candidates. Every model's
hyperparameters, ownrank's ranking weights included, are chosen on the inner
validation split. Each recommend call of the evaluation is timed, beside EASE's and
ALS's scoring of the same users (bench/latency.py).

    python bench/quality.py [--data-dir DIR] [--datasets ml-1m-half,ml-100k] [--quick]

Item embeddings are cached under bench/results/cache (derived from licensed data:
never committed).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import harness
import numpy as np
from baselines import EASE, ItemKNN, MostPop, tune_ease, tune_itemknn
from eval_data import Dataset, item_text, load_dataset
from latency import peer_timings, rated_columns
from protocols import Split, add_quality, chrono20, cold20, evaluate, inner_validation

from ownrank import BaseEncoder, Engine, EngineConfig
from ownrank.engine.config import RankingConfig

# (personal_weight, neighbour_weight, popularity_weight): only ratios matter. The
# collaborative mode runs the defaults: one set for every dataset and protocol, chosen
# on ml-1m-half's inner validation (bench/tune_defaults.py)
WEIGHT_GRID: dict[str, list[tuple[float, float, float] | None]] = {
    "popularity": [(p, nb, 1.0) for p in (0.03, 0.06) for nb in (0.0, 0.01, 0.03)],
    "none": [(1.0, 0.0, 0.0), (1.0, 1.0, 0.0), (1.0, 2.0, 0.0), (0.5, 2.0, 0.0)],
    "collaborative": [None],
}
LABELS = {
    "none": "ownrank personal",
    "popularity": "ownrank +popularity",
    "collaborative": "ownrank +collaborative",
}
HEADLINE = "ownrank +popularity"  # the model issue 5's and issue 19's targets are about


class CachedEncoder:
    """The frozen base encoder with an on-disk cache of item embeddings (bench only)."""

    def __init__(self, path: Path) -> None:
        self.inner = BaseEncoder(threads=2)
        self.fingerprint, self.dimension = self.inner.fingerprint, self.inner.dimension
        self.path = path
        self.cache: dict[str, np.ndarray] = {}
        if path.exists():
            data = np.load(path)
            self.cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        todo = {k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}
        if todo:
            missing = sorted(todo)
            vectors = self.inner.encode([todo[k] for k in missing])
            self.cache.update(zip(missing, vectors, strict=True))
            self.path.parent.mkdir(parents=True, exist_ok=True)
            vectors = np.stack(list(self.cache.values()))
            np.savez(self.path, keys=np.array(list(self.cache)), vectors=vectors)
        return np.stack([self.cache[k] for k in keys]).astype(np.float32)


@functools.cache
def cached_encoder(dataset: str) -> CachedEncoder:
    """The encoder with ``dataset``'s cache (bench/results/cache), one per process."""
    return CachedEncoder(harness.RESULTS / "cache" / f"{dataset}-embeddings.npz")


def catalog_items(dataset: Dataset, split: Split) -> list[dict[str, Any]]:
    """The whole catalog as SDK items, with the protocol's candidates marked."""
    candidates = set(split.candidates.tolist())
    return [
        {
            "id": str(item_id),
            "title": item_text(info, rich=bool(info.plot or info.director)),
            "properties": {"candidate": item_id in candidates},
        }
        for item_id, info in sorted(dataset.items.items())
    ]


def user_histories(split: Split) -> list[tuple[str, list[dict[str, Any]]]]:
    """Every training user's ratings as SDK events, oldest first, users in id order
    (all of them: the engine's caps decide what it keeps)."""
    r = split.train_all
    order = np.lexsort((r.item, r.timestamp, r.user))
    out: dict[str, list[dict[str, Any]]] = {}
    for user, item, value, ts in zip(
        *(a[order].tolist() for a in (r.user, r.item, r.rating, r.timestamp)), strict=True
    ):
        out.setdefault(str(user), []).append(
            {"kind": "rating", "item_id": str(item), "value": float(value), "timestamp": float(ts)}
        )
    return list(out.items())


def build_store(
    path: Path, dataset: Dataset, split: Split, encoder: CachedEncoder, config: EngineConfig
) -> tuple[Engine, dict[str, Any]]:
    """A store with the whole catalog and every training user's ratings, and what the
    build took: ``catalog`` and ``users`` seconds, ``events``, and each user's
    ``updates`` (seconds of all the interact calls of one user)."""
    items = catalog_items(dataset, split)
    engine = Engine(path, config, encoder=encoder)
    t0 = time.perf_counter()
    for start in range(0, len(items), 1000):
        engine.catalog.upsert(items[start : start + 1000])
    built: dict[str, Any] = {"catalog": time.perf_counter() - t0, "events": 0, "updates": []}
    t0 = time.perf_counter()
    step = config.max_events_per_call
    for user, events in user_histories(split):
        t1 = time.perf_counter()
        for start in range(0, len(events), step):
            engine.interact(user, events[start : start + step])
        built["updates"].append(time.perf_counter() - t1)
        built["events"] += len(events)
    built["users"] = time.perf_counter() - t0
    return engine, built


def ownrank_metrics(
    engine: Engine, split: Split, seconds: list[float] | None = None
) -> dict[str, float]:
    """Metrics of ``Engine.recommend`` over ``split.users``; each whole SDK call's
    wall time is appended to ``seconds`` when given."""
    return evaluate(split, ownrank_ranker(engine, seconds))


def ownrank_ranker(
    engine: Engine, seconds: list[float] | None = None
) -> Callable[[int], list[int]]:
    """user -> ``Engine.recommend``'s top 10 among the protocol's candidates, each call's
    wall time appended to ``seconds`` when given."""

    def rank(user: int) -> list[int]:
        t0 = time.perf_counter()
        recs = engine.recommend(str(user), 10, filters={"candidate": True})
        if seconds is not None:
            seconds.append(time.perf_counter() - t0)
        return [int(r.item_id) for r in recs]

    return rank


def evaluated(split: Split, quick: bool) -> Split:
    """``split`` itself, or with ``quick`` a fixed 500 of its users (same training data)."""
    if not quick or len(split.users) <= 500:
        return split
    keep = np.random.default_rng(0).choice(split.users, 500, replace=False)
    return replace(split, test={int(u): split.test[int(u)] for u in keep})


def with_ranking(
    engine: Engine, path: Path, base: EngineConfig, weights: tuple[float, float, float] | None
) -> Engine:
    """The store reopened with other ranking weights (None: the defaults)."""
    engine.close()
    if weights is not None:
        names = ("personal_weight", "neighbour_weight", "popularity_weight")
        ranking = base.ranking.model_copy(update=dict(zip(names, weights, strict=True)))
        base = base.model_copy(update={"ranking": ranking})
    return Engine(path, base, encoder=engine.encoder)


def run_ownrank(
    run: harness.Run, args: argparse.Namespace, data: Dataset, split: Split, shared: str,
    peers: dict[str, list[float]], labels: dict[str, Any],
) -> None:  # fmt: skip
    """One shared-statistics mode: weights tuned on inner validation (500 users: plenty
    to rank a few settings), then the outer evaluation, each recommend call timed and
    set beside the ``peers``' per-user seconds."""
    ranking = (
        RankingConfig() if args.candidates is None else RankingConfig(candidates=args.candidates)
    )
    base = EngineConfig(shared_statistics=shared, ranking=ranking)  # type: ignore[arg-type]
    encoder, inner, grid = cached_encoder(data.name), inner_validation(split), WEIGHT_GRID[shared]
    labels = {**labels, "model": LABELS[shared]}
    with tempfile.TemporaryDirectory() as tmp:
        tuning: dict[Any, float] = {}
        if len(grid) > 1:  # else nothing to choose
            path = Path(tmp) / "inner"
            engine, _ = build_store(path, data, inner, encoder, base)
            for weights in grid:
                engine = with_ranking(engine, path, base, weights)
                tuning[weights] = ownrank_metrics(engine, evaluated(inner, True))["NDCG@10"]
                run.add("inner NDCG@10", tuning[weights], "NDCG@10", **labels, weights=str(weights))
            engine.close()
        best = max(grid, key=lambda w: tuning.get(w, 0.0))
        path = Path(tmp) / "outer"
        t0 = time.perf_counter()
        engine, build = build_store(path, data, split, encoder, base)
        fit_s = time.perf_counter() - t0
        engine = with_ranking(engine, path, base, best)
        seconds: list[float] = []
        metrics = ownrank_metrics(engine, evaluated(split, args.quick), seconds)
        engine.close()
    chosen = "personal={:g} neighbour={:g} popularity={:g}".format(*best) if best else "defaults"
    add_quality(run, metrics, fit_s, chosen, **labels, rated="excluded")
    run.latency("recommend", seconds, **labels)
    run.add("recommend mean", 1000 * float(np.mean(seconds)), "ms", **labels)
    run.latency("update", build["updates"], **labels)
    where = " ".join(map(str, labels.values()))
    print(f"{where}: NDCG@10 {metrics['NDCG@10']:.4f} ({chosen})", flush=True)  # progress
    for peer, theirs in peers.items():
        for q in (50, 99):
            ratio = harness.percentile(seconds, q) / harness.percentile(theirs, q)
            run.add(f"p{q} / {peer}", ratio, "x", **labels)


def run_baselines(run: harness.Run, split: Split, **labels: Any) -> dict[str, tuple[Any, str]]:
    """The peers, each also with every item the user rated excluded (chrono20): ownrank
    never recommends what a user rated, low ratings included, so this is the like for
    like comparison (the protocol itself only excludes training positives). Returns
    the fitted models and their chosen settings by name."""
    models: list[tuple[str, Any, str]] = [("MostPop", MostPop(), "")]
    if split.protocol == "chrono20":  # collaborative models cannot score new items
        knn, ease = tune_itemknn(split), tune_ease(split)
        models += [
            ("ItemKNN", ItemKNN(knn.best), f"k={knn.best}"),
            ("EASE", EASE(ease.best), f"lambda={ease.best}"),
        ]
    fitted: dict[str, tuple[Any, str]] = {}
    for name, model, chosen in models:
        t0 = time.perf_counter()
        fitted[name] = (model.fit(split), chosen)
        scores = model.scores(split.users)
        fit_s = time.perf_counter() - t0
        add_quality(
            run, evaluate(split, scores), fit_s, chosen, **labels, model=name, rated="allowed"
        )
        if split.protocol == "chrono20":
            excluded = evaluate(split, without_rated(split, scores))
            add_quality(run, excluded, fit_s, chosen, **labels, model=name, rated="excluded")
    return fitted


def without_rated(split: Split, scores: np.ndarray) -> np.ndarray:
    """``scores`` (rows ``split.users``, columns ``split.candidates``) with every
    (user, item) the user rated before the split set to -inf."""
    out = np.array(scores, dtype=np.float64, copy=True)
    for row, cols in enumerate(rated_columns(split).values()):  # in split.users order
        out[row, cols] = -np.inf
    return out


def declare(run: harness.Run) -> None:
    """The tables and the targets (issue 5: the headline quality; issue 19: recommend
    beside EASE; issue 20: the collaborative layer)."""
    by, per_model = ["dataset", "protocol", "model", "rated"], ["dataset", "protocol", "model"]
    run.table("NDCG@10", by, metrics=["NDCG@10"], plot=True)
    run.table("Recall, hit rate, fit, settings chosen on inner validation", by,
              metrics=["Recall@10", "HR@10", "users", "fit", "chosen"])  # fmt: skip
    ownrank = [f"recommend {m}" for m in ("calls", "p50", "p99", "mean")] + ["update p50"]
    ratios = [f"p{q} / {p}" for p in ("EASE", "ALS") for q in (50, 99)]
    run.table("ownrank per user: the whole Engine.recommend call, and its ratio to the peers'",
              per_model, metrics=ownrank + ratios)  # fmt: skip
    peers = ["scoring calls", "scoring p50", "scoring p99", "scoring NDCG@10", "params"]
    run.table("Peers per user: one user's top 10 among the candidates, every rated item excluded",
              per_model, metrics=peers)  # fmt: skip
    run.table("Inner-validation NDCG@10 of the weights (personal, neighbour, popularity)",
              ["dataset", "protocol", "weights"], "model", {"metric": "inner NDCG@10"})  # fmt: skip
    chrono, cold = ("ml-1m-half", "chrono20"), ("ml-1m-half", "cold20")
    for (data, protocol), model, bound, source in (
        (chrono, HEADLINE, 0.090, "issue 5"),
        (cold, HEADLINE, 0.22, "issue 5"),
        (chrono, LABELS["collaborative"], 0.145, "issue 20"),
        (("ml-100k", "chrono20"), LABELS["collaborative"], 0.18, "issue 20"),
    ):
        where = {"dataset": data, "protocol": protocol, "model": model}
        run.target(f"{data} {protocol} NDCG@10, {model}", "NDCG@10", ">=", bound, where, source)
    where = {"dataset": "ml-1m-half", "protocol": "chrono20", "model": HEADLINE}
    run.target(f"{HEADLINE} recommend p50 / EASE p50", "p50 / EASE", "<=", 5, where, "issue 19")
    run.target(f"{HEADLINE} recommend p99", "recommend p99", "<=", 5, where, "issue 19")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--datasets", default="ml-1m-half,ml-100k")
    parser.add_argument("--protocols", default="chrono20,cold20")
    parser.add_argument(
        "--modes", default="none,popularity,collaborative", help="shared_statistics modes"
    )
    parser.add_argument("--quick", action="store_true", help="evaluate 500 users per split")
    parser.add_argument("--candidates", type=int, default=None, help="RankingConfig.candidates")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/")
    args = parser.parse_args(argv)
    args.out = args.out or harness.default_out("quality", args.quick)
    run = harness.Run("quality", vars(args), quick=args.quick)
    for name in args.datasets.split(","):
        data = load_dataset(name, args.data_dir)  # type: ignore[arg-type]
        for protocol in args.protocols.split(","):
            labels = {"dataset": name, "protocol": protocol}
            split = (chrono20 if protocol == "chrono20" else cold20)(data.ratings)
            fitted = run_baselines(run, split, **labels)
            peers: dict[str, list[float]] = {}
            if split.protocol == "chrono20":  # the same users ownrank is timed on
                users = evaluated(split, args.quick)
                peers = peer_timings(run, split, users, *fitted["EASE"], **labels)
            for shared in args.modes.split(","):
                run_ownrank(run, args, data, split, shared, peers, labels)
    run.note("rated=allowed: the protocol's lists (only training positives excluded); "
             "rated=excluded: every item the user rated excluded, as ownrank does")  # fmt: skip
    run.note("latency: ownrank's whole Engine.recommend call; the peers' top-10 scoring of "
             "the same users, single-threaded BLAS; EASE / ALS not on cold20 (they cannot "
             "score new items)")  # fmt: skip
    declare(run)
    run.finish(args.out)


if __name__ == "__main__":
    main()
