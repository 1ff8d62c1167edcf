"""Recommendation quality of ownrank beside MostPop, ItemKNN and EASE, in one run.

Runs the chrono20 and cold20 protocols of ``../shared/data/README.md`` on
ml-1m-half and ml-100k. ownrank is measured as deployed: the catalog is
ingested through the SDK, every training user's ratings are sent with
``Engine.interact`` (as ``rating`` events with their timestamps), and each test
user's list comes from ``Engine.recommend`` with a property filter that
restricts it to the protocol's candidates. Hyperparameters of every model,
ownrank's ranking weights included, are chosen on the inner validation split.

    python bench/quality.py [--data-dir DIR] [--datasets ml-1m-half,ml-100k] [--quick]

Item embeddings are cached under bench/results/cache (derived from licensed
data: never committed).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import EASE, ItemKNN, MostPop, tune_ease, tune_itemknn
from bench.eval_data import Dataset, default_data_dir, item_text, load_dataset
from bench.latency import Latency, PeerTiming, latency_json, peer_timings, print_latency
from bench.protocols import Split, chrono20, cold20, evaluate, inner_validation
from ownrank import BaseEncoder, Engine, EngineConfig
from ownrank.engine.config import RankingConfig

RESULTS = Path(__file__).resolve().parent / "results"
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


class CachedEncoder:
    """The frozen base encoder with an on-disk cache of item embeddings (bench only)."""

    def __init__(self, path: Path) -> None:
        self.inner = BaseEncoder(threads=2)
        self.path = path
        self.cache: dict[str, np.ndarray] = {}
        if path.exists():
            data = np.load(path)
            self.cache = dict(zip(data["keys"].tolist(), data["vectors"], strict=True))

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @staticmethod
    def _key(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = sorted(
            {k: t for k, t in zip(keys, texts, strict=True) if k not in self.cache}.items()
        )
        if missing:
            vectors = self.inner.encode([t for _k, t in missing])
            self.cache.update({k: v for (k, _t), v in zip(missing, vectors, strict=True)})
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                self.path,
                keys=np.array(list(self.cache)),
                vectors=np.stack(list(self.cache.values())),
            )
        return np.stack([self.cache[k] for k in keys]).astype(np.float32)


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
    ratings = split.train_all
    order = np.lexsort((ratings.item, ratings.timestamp, ratings.user))
    users, starts = np.unique(ratings.user[order], return_index=True)
    bounds = [*starts[1:], len(order)]
    out = []
    for user, lo, hi in zip(users, starts, bounds, strict=True):
        idx = order[lo:hi]
        events = [
            {"kind": "rating", "item_id": str(i), "value": float(r), "timestamp": float(t)}
            for i, r, t in zip(
                ratings.item[idx], ratings.rating[idx], ratings.timestamp[idx], strict=True
            )
        ]
        out.append((str(user), events))
    return out


def build_store(
    path: Path, dataset: Dataset, split: Split, encoder: CachedEncoder, config: EngineConfig
) -> tuple[Engine, dict[str, float]]:
    """A store with the whole catalog and every training user's ratings."""
    items = catalog_items(dataset, split)
    engine = Engine(path, config, encoder=encoder)
    t0 = time.perf_counter()
    for start in range(0, len(items), 1000):
        engine.catalog.upsert(items[start : start + 1000])
    t_catalog = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_events = 0
    update_times = []
    for user, events in user_histories(split):
        t1 = time.perf_counter()
        for start in range(0, len(events), config.max_events_per_call):
            engine.interact(user, events[start : start + config.max_events_per_call])
        update_times.append(time.perf_counter() - t1)
        n_events += len(events)
    t_users = time.perf_counter() - t0
    return engine, {
        "catalog_s": round(t_catalog, 2),
        "users_s": round(t_users, 2),
        "events": n_events,
        "user_update_ms_p50": round(float(np.median(update_times)) * 1000, 2),
    }


def ownrank_metrics(
    engine: Engine, split: Split, seconds: list[float] | None = None
) -> dict[str, float]:
    """Metrics of ``Engine.recommend`` over ``split.users``; each whole SDK call's
    wall time is appended to ``seconds`` when given."""

    def rank(user: int) -> list[int]:
        t0 = time.perf_counter()
        recs = engine.recommend(str(user), 10, filters={"candidate": True})
        if seconds is not None:
            seconds.append(time.perf_counter() - t0)
        return [int(r.item_id) for r in recs]

    return evaluate(split, rank)


def with_ranking(
    engine: Engine, path: Path, base: EngineConfig, weights: tuple[float, float, float] | None
) -> Engine:
    engine.close()
    if weights is None:  # the defaults
        return Engine(path, base, encoder=engine.encoder)
    ranking = base.ranking.model_copy(
        update={
            "personal_weight": weights[0],
            "neighbour_weight": weights[1],
            "popularity_weight": weights[2],
        }
    )
    return Engine(path, base.model_copy(update={"ranking": ranking}), encoder=engine.encoder)


def run_ownrank(
    dataset: Dataset,
    split: Split,
    encoder: CachedEncoder,
    shared: str,
    quick: bool,
    candidates: int | None = None,
) -> dict[str, Any]:
    ranking = RankingConfig() if candidates is None else RankingConfig(candidates=candidates)
    base = EngineConfig(shared_statistics=shared, ranking=ranking)  # type: ignore[arg-type]
    inner = inner_validation(split)
    grid = WEIGHT_GRID[shared]
    with tempfile.TemporaryDirectory() as tmp:
        tuning: dict[str, float] = {}
        if len(grid) > 1:  # else nothing to choose
            path = Path(tmp) / "inner"
            engine, _ = build_store(path, dataset, inner, encoder, base)
            for weights in grid:
                engine = with_ranking(engine, path, base, weights)
                # tuning looks at 500 inner-validation users: plenty to rank a few settings
                tuning[str(weights)] = evaluate_subset(engine, inner, True)["NDCG@10"]
            engine.close()
        best = max(grid, key=lambda w: tuning.get(str(w), 0.0))
        path = Path(tmp) / "outer"
        t0 = time.perf_counter()
        engine, build = build_store(path, dataset, split, encoder, base)
        fit_s = time.perf_counter() - t0
        engine = with_ranking(engine, path, base, best)
        seconds: list[float] = []
        metrics = evaluate_subset(engine, split, quick, seconds)
        engine.close()
    latency = Latency.of(seconds)
    return {
        **metrics,
        "chosen": "defaults"
        if best is None
        else dict(zip(("personal", "neighbour", "popularity"), best, strict=True)),
        "inner_ndcg": tuning,
        "fit_s": round(fit_s, 1),
        "update_ms_p50": build["user_update_ms_p50"],
        "recommend_ms_mean": round(1000 * float(np.mean(seconds)), 2),
        "recommend_ms_p50": round(latency.p50, 3),
        "recommend_ms_p99": round(latency.p99, 3),
    }


def evaluated(split: Split, quick: bool) -> Split:
    """``split`` itself, or with ``quick`` a fixed 500 of its users (same training data)."""
    if not quick or len(split.users) <= 500:
        return split
    keep = np.random.default_rng(0).choice(split.users, 500, replace=False)
    return Split(
        split.protocol,
        split.train,
        split.train_all,
        {int(u): split.test[int(u)] for u in keep},
        split.candidates,
        split.exclude_train,
    )


def evaluate_subset(
    engine: Engine, split: Split, quick: bool, seconds: list[float] | None = None
) -> dict[str, float]:
    return ownrank_metrics(engine, evaluated(split, quick), seconds)


def run_baselines(split: Split) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The peers, each also with every item the user rated excluded (chrono20): ownrank
    never recommends what a user rated, low ratings included, so this is the like for
    like comparison (the protocol itself only excludes training positives). Also
    returns the fitted models by name."""
    models: list[tuple[str, Any, str]] = [("MostPop", MostPop(), "")]
    if split.protocol == "chrono20":  # collaborative models cannot score new items
        knn = tune_itemknn(split)
        ease = tune_ease(split)
        models += [
            ("ItemKNN", ItemKNN(knn.best), f"k={knn.best}"),
            ("EASE", EASE(ease.best), f"lambda={ease.best}"),
        ]
    out: dict[str, dict[str, Any]] = {}
    fitted: dict[str, Any] = {}
    for name, model, chosen in models:
        t0 = time.perf_counter()
        fitted[name] = model.fit(split)
        scores = model.scores(split.users)
        fit_s = round(time.perf_counter() - t0, 2)
        extra = {"chosen": chosen} if chosen else {}
        out[name] = {**evaluate(split, scores), "fit_s": fit_s, **extra}
        if split.protocol == "chrono20":
            out[f"{name}, rated excluded"] = {
                **evaluate(split, without_rated(split, scores)),
                "fit_s": fit_s,
                **extra,
            }
    return out, fitted


def without_rated(split: Split, scores: np.ndarray) -> np.ndarray:
    """``scores`` (rows ``split.users``, columns ``split.candidates``) with every
    (user, item) the user rated before the split set to -inf."""
    rated = split.train_all
    rows = np.searchsorted(split.users, rated.user)
    cols = np.searchsorted(split.candidates, rated.item)
    ok = (rows < len(split.users)) & (cols < len(split.candidates))
    ok[ok] &= (split.users[rows[ok]] == rated.user[ok]) & (
        split.candidates[cols[ok]] == rated.item[ok]
    )
    out = np.array(scores, dtype=np.float64, copy=True)
    out[rows[ok], cols[ok]] = -np.inf
    return out


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
    args = parser.parse_args(argv)
    data_dir = args.data_dir or default_data_dir()
    results: dict[str, Any] = {}
    for name in args.datasets.split(","):
        dataset = load_dataset(name, data_dir)  # type: ignore[arg-type]
        encoder = CachedEncoder(RESULTS / "cache" / f"{name}-embeddings.npz")
        for protocol in args.protocols.split(","):
            split = (chrono20 if protocol == "chrono20" else cold20)(dataset.ratings)
            rows, fitted = run_baselines(split)
            peers: list[PeerTiming] = []
            note = "EASE / ALS: not comparable on cold20 (they cannot score new items)"
            if split.protocol == "chrono20":  # the same users ownrank is timed on
                ease = rows["EASE"]["chosen"]
                peers = peer_timings(split, evaluated(split, args.quick), fitted["EASE"], ease)
                note = ""
            latency: dict[str, Latency] = {}
            for shared in args.modes.split(","):
                label = LABELS[shared]
                rows[label] = run_ownrank(
                    dataset, split, encoder, shared, args.quick, args.candidates
                )
                latency[label] = Latency(
                    rows[label]["recommend_ms_p50"],
                    rows[label]["recommend_ms_p99"],
                    int(rows[label]["n_users"]),
                )
            print_table(f"{name} {protocol}", rows)
            print_latency(latency, peers, note)
            results[f"{name}/{protocol}"] = {
                **rows,
                "latency_ms": latency_json(latency, peers, note),
            }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "quality.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out}")


def print_table(title: str, rows: dict[str, dict[str, Any]]) -> None:
    print(f"\n== {title}")
    print(f"{'model':28} {'Recall@10':>9} {'NDCG@10':>8} {'HR@10':>7} {'fit s':>7}  notes")
    for model, r in rows.items():
        notes = r.get("chosen", "")
        extra = (
            f" update p50 {r['update_ms_p50']} ms, recommend {r['recommend_ms_mean']} ms"
            if "update_ms_p50" in r
            else ""
        )
        print(
            f"{model:28} {r['Recall@10']:9.4f} {r['NDCG@10']:8.4f} {r['HR@10']:7.4f} "
            f"{r.get('fit_s', 0):7.1f}  {notes}{extra}",
            flush=True,
        )


if __name__ == "__main__":
    main()
