"""Library peers (implicit ALS / BPR, LightFM hybrid) beside MostPop / ItemKNN / EASE.

chrono20 and cold20 on ml-1m-half and ml-100k, every model tuned on the inner
validation split (never on test), with fit time and the time to update one user's
scores online, beside the README's peer numbers (reproducing those of MostPop /
ItemKNN / EASE checks that bench/protocols.py follows the README)::

    python bench/run_peers.py [--quick] [--data-dir DIR] [--datasets ml-1m-half,ml-100k]
                              [--threads 2] [--out PATH]

``--quick`` tunes on fewer points. Without LightFM (scripts/setup_bench.sh installs
it) the content side is the token Centroid alone; without implicit, ALS and BPR are
left out.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path
from typing import Any, cast

import harness
import machine_info
import peers
from baselines import (
    EASE,
    ItemKNN,
    MostPop,
    RandomScores,
    Recommender,
    TuneResult,
    tune_ease,
    tune_itemknn,
)
from eval_data import DATASETS, Dataset, DatasetName, default_data_dir, load_dataset
from peers import ALS, BPR, LightFMHybrid, measure_update, unavailable_reason
from protocols import (
    METRICS,
    Split,
    add_quality,
    chrono20,
    cold20,
    evaluate_scores,
    inner_validation,
    random_expectation,
)
from threadpoolctl import threadpool_limits

# Recall@10 / NDCG@10 / HR@10 of ../shared/data/README.md's peer table (None: not given).
README: dict[tuple[str, str, str], tuple[float | None, float | None, float | None]] = {
    ("chrono20", "ml-1m-half", "MostPop"): (0.044, 0.075, 0.358),
    ("chrono20", "ml-1m-half", "ItemKNN"): (0.076, 0.107, 0.469),
    ("chrono20", "ml-1m-half", "EASE"): (0.082, 0.109, 0.501),
    ("chrono20", "ml-1m-half", "ALS"): (0.082, 0.108, 0.507),
    ("chrono20", "ml-1m-half", "BPR"): (0.068, 0.088, 0.438),
    ("chrono20", "ml-100k", "MostPop"): (0.059, 0.077, 0.371),
    ("chrono20", "ml-100k", "ItemKNN"): (0.125, 0.140, 0.564),
    ("chrono20", "ml-100k", "EASE"): (0.129, 0.145, 0.579),
    ("chrono20", "ml-100k", "ALS"): (0.126, 0.144, 0.569),
    ("chrono20", "ml-100k", "BPR"): (0.099, 0.120, 0.510),
    ("cold20", "ml-1m-half", "Random"): (None, 0.030, None),
    ("cold20", "ml-1m-half", "Random (expected)"): (None, 0.030, None),
}


def setting(p: object) -> str:
    return f"{p:g}" if isinstance(p, float) else str(p)


class Bench:
    """The rows of one run. A model's rows are labelled dataset / protocol / model /
    rated (always "allowed" here: the protocol excludes training positives only;
    bench/quality.py adds the peers with every rated item excluded)."""

    def __init__(self, run: harness.Run, grid: dict[str, Any], threads: int) -> None:
        self.run, self.grid, self.threads = run, grid, threads
        self.methods: dict[str, str] = {}
        self.at: dict[str, Any] = {}  # dataset and protocol being measured
        self.chosen: dict[str, Any] = {}  # model -> setting chosen on chrono20

    def sizes(self, split: Split) -> Split:
        """Record the sizes of ``split`` and its inner validation split; return the latter."""
        inner = inner_validation(split)
        for name, s in (("test", split), ("inner", inner)):
            labels = {**self.at, "split": name}
            self.run.add("users", len(s.users), "count", **labels)
            self.run.add("candidates", len(s.candidates), "count", **labels)
            self.run.add("train positives", len(s.train), "count", **labels)
            self.run.add("train ratings", len(s.train_all), "count", **labels)
            self.run.add("test positives", sum(len(v) for v in s.test.values()), "count", **labels)
        print(f"  {split.summary()}\n  inner {inner.summary()}", flush=True)
        return inner

    def tuned(self, model: str, result: TuneResult[Any]) -> Any:
        """Record inner NDCG@10 per setting tried; return the chosen one."""
        for p, v in result.table:
            self.run.add("inner NDCG@10", v, "NDCG@10", **self.at, model=model, setting=setting(p))
        self.run.add("tune", result.seconds, "s", **self.at, model=model, rated="allowed")
        return result.best

    def pick(self, split: Split, inner: Split, model: str, tune: Any, *args: Any) -> Any:
        """The setting chosen on chrono20's inner split (tuned there, reused on cold20)."""
        if model not in self.chosen:
            self.chosen[model] = self.tuned(model, tune(split, *args, inner=inner))
        return self.chosen[model]

    def model(self, split: Split, model: Recommender, chosen: object = "") -> None:
        """Fit on ``split``'s training data, evaluate on its test, then time an update."""
        model.fit(split)
        metrics = evaluate_scores(split, model.scores)
        self.quality(model.name, metrics, model.fit_seconds, chosen)
        cost = measure_update(model, split)
        self.run.latency("update", cost.seconds, **self.at, model=model.name, rated="allowed")
        self.methods[model.name] = cost.method
        print(f"  [{' '.join(self.at.values())}] {model.name}: NDCG@10 {metrics['NDCG@10']:.4f}, "
              f"fit {model.fit_seconds:.1f} s, update {cost.ms:.2f} ms", flush=True)  # fmt: skip

    def quality(self, model: str, metrics: dict[str, float], fit_s: float, chosen: object) -> None:
        """The evaluation rows of one model, and the README's figures beside them."""
        labels = {**self.at, "model": model, "rated": "allowed"}
        add_quality(self.run, metrics, fit_s, setting(chosen), **labels)
        readme = README.get((self.at["protocol"], self.at["dataset"], model), (None,) * 3)
        for name, value in zip(("Recall@10", "NDCG@10", "HR@10"), readme, strict=True):
            if value is not None:
                self.run.add(f"README {name}", value, name, **labels)

    def dataset(self, data: Dataset) -> None:
        """chrono20, then cold20. The collaborative models run on cold20 with the settings
        of chrono20, for the record (they know no new item: every candidate scores 0, a
        constant ranking); LightFM is tuned on each; cold20 adds two random floors."""
        g, self.chosen = self.grid, {}
        tune_als = partial(peers.tune_als, num_threads=self.threads)
        for split in (chrono20(data.ratings), cold20(data.ratings)):
            self.at = {"dataset": data.name, "protocol": split.protocol}
            inner = self.sizes(split)
            self.model(split, MostPop())
            k = self.pick(split, inner, "ItemKNN", tune_itemknn, g["itemknn"])
            self.model(split, ItemKNN(k), f"k={k}")
            lam = self.pick(split, inner, "EASE", tune_ease, g["ease"])
            self.model(split, EASE(lam), f"lambda={lam:g}")
            if unavailable_reason("implicit") is None:
                als = self.pick(split, inner, "ALS", tune_als, g["als"])
                self.model(split, ALS(als, num_threads=self.threads), als)
                bpr = self.pick(split, inner, "BPR", peers.tune_bpr, *g["bpr"])
                self.model(split, BPR(bpr), bpr)
            if unavailable_reason("lightfm") is None:
                dims, epochs = g["lightfm"]
                tuned = peers.tune_lightfm(split, data.items, dims, epochs, inner=inner)
                best = self.tuned("LightFM", tuned)
                self.model(split, LightFMHybrid(data.items, best), best)
            self.model(split, peers.token_centroid(data.items), "idf tokens")
        rand = RandomScores(seed=0).fit(split)
        self.quality(rand.name, evaluate_scores(split, rand.scores), rand.fit_seconds, "seed=0")
        self.quality("Random (expected)", random_expectation(split), 0.0, "exact")


def declare(run: harness.Run) -> None:
    """The tables (no targets: the README's figures are shown beside, not promised)."""
    run.table("NDCG@10 per model, chrono20", ["model"], "dataset",
              {"protocol": "chrono20", "metric": "NDCG@10"}, plot=True)  # fmt: skip
    for protocol in ("chrono20", "cold20"):
        run.table(f"{protocol}: top-10 quality beside the README's peer numbers",
                  ["dataset", "model"], where={"protocol": protocol, "rated": "allowed"},
                  metrics=["chosen", *METRICS, "README NDCG@10", "README Recall@10",
                           "README HR@10", "users"])  # fmt: skip
    run.table("Fit and tuning seconds, and one user's update after a new positive",
              ["dataset", "protocol", "model"], where={"rated": "allowed"},
              metrics=["fit", "tune", "update calls", "update p50", "update p99"])  # fmt: skip
    run.table("Inner-validation NDCG@10 per setting tried",
              ["dataset", "protocol", "model", "setting"], metrics=["inner NDCG@10"])  # fmt: skip
    run.table("Splits (test: the protocol's; inner: the tuning split inside its training data)",
              ["dataset", "protocol", "split"], where={"rated": None},
              metrics=["users", "candidates", "train positives", "train ratings",
                       "test positives"])  # fmt: skip
    run.table("Data", ["dataset"], metrics=["ratings", "load"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--data-dir", type=Path, default=None, help="evaluation data directory")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--quick", action="store_true", help="fewer tuning points")
    parser.add_argument("--threads", type=int, default=2, help="threads for BLAS and ALS")
    parser.add_argument("--out", type=Path, default=None, help="results file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in str(args.datasets).split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    args.data_dir = cast(Path, args.data_dir or default_data_dir())
    out = args.out or harness.default_out("peers", args.quick)
    threadpool_limits(limits=args.threads)  # BLAS / OpenMP pools: the machine is shared

    run = harness.Run("peers", vars(args), quick=args.quick)
    libraries = ("numpy", "scipy", "implicit", "lightfm")
    run.details["versions"] = {p: machine_info.package_version(p) for p in libraries}
    run.details["unavailable"] = {lib: unavailable_reason(lib) for lib in ("implicit", "lightfm")}
    bench = Bench(run, {k: v[args.quick] for k, v in peers.GRIDS.items()}, args.threads)
    for name in names:
        start = time.perf_counter()
        data = load_dataset(cast(DatasetName, name), args.data_dir)
        run.add("ratings", len(data.ratings), "count", dataset=name)
        run.add("load", time.perf_counter() - start, "s", dataset=name)
        bench.dataset(data)
    declare(run)
    run.note("cold20: the collaborative models (MostPop, ItemKNN, EASE, ALS, BPR) know no new "
             "item (every candidate scores 0, a constant ranking): shown for the record, n/a as "
             "a result")  # fmt: skip
    for lib in ("implicit", "lightfm"):
        if unavailable_reason(lib):
            run.note(f"{lib} unavailable ({unavailable_reason(lib)}): "
                     + ("no ALS / BPR rows" if lib == "implicit" else
                        "the content peer is Centroid(tokens) alone"))  # fmt: skip
    run.note("update = one user's scores after their history gained their next positive: "
             + "; ".join(f"{m}: {how}" for m, how in bench.methods.items()))  # fmt: skip
    run.finish(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
