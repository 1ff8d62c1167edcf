"""Library peers (implicit ALS / BPR, LightFM hybrid) beside MostPop / ItemKNN / EASE.

One run, one machine: chrono20 and cold20 on ml-1m-half and ml-100k, every model
tuned on the inner validation split (never on test), with fit time and the time to
update one user's scores online. Usage::

    python bench/run_peers.py [--quick] [--data-dir DIR] [--datasets ml-1m-half,ml-100k]
                              [--json PATH] [--threads 2]

``--quick`` tunes on fewer points (~2.5 minutes in all on 2 shared cores); the full
run takes ~7 (most of it LightFM on ml-1m-half). Results go to
bench/results/peers.json (quick: peers_quick.json). cold20's collaborative rows use
the hyperparameters chosen on chrono20: they know no new item, so every candidate
scores 0 and the ranking is constant. If LightFM cannot be imported, the run says so
and the content side is the token Centroid alone.

LightFM 1.17 does not build with a plain ``pip install lightfm`` on Python 3.11
here; what works: ``pip install "setuptools<70" wheel cython && pip install
--no-build-isolation lightfm && pip install "setuptools>=77"``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, cast

import numpy as np

if __package__ in (None, ""):
    # Run as a script: make `bench.*` importable from the project root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import (
    EASE,
    EASE_GRID,
    ITEMKNN_GRID,
    ItemKNN,
    MostPop,
    TuneResult,
    tune_ease,
    tune_itemknn,
)
from bench.eval_data import DATASETS, Dataset, DatasetName, default_data_dir, load_dataset
from bench.peers import (
    ALS,
    ALS_GRID,
    ALS_GRID_QUICK,
    BPR,
    BPR_GRID,
    BPR_GRID_QUICK,
    BPR_ITERATIONS,
    BPR_ITERATIONS_QUICK,
    LIGHTFM_COMPONENTS,
    LIGHTFM_COMPONENTS_QUICK,
    LIGHTFM_EPOCHS,
    LIGHTFM_EPOCHS_QUICK,
    ALSParams,
    BPRParams,
    LightFMHybrid,
    OnlineBaseline,
    Peer,
    measure_update,
    token_centroid,
    tune_als,
    tune_bpr,
    tune_lightfm,
    unavailable_reason,
)
from bench.protocols import (
    Split,
    chrono20,
    cold20,
    evaluate_scores,
    inner_validation,
    random_expectation,
)
from bench.run_baselines import PEERS as BASELINE_PEERS
from bench.run_baselines import Row as BaselineRow

try:
    from threadpoolctl import threadpool_limits
except ImportError:
    threadpool_limits = None

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("Recall@10", "NDCG@10", "HR@10")
# README peer rows this script adds to run_baselines' (Recall@10, NDCG@10, HR@10).
PEERS: dict[tuple[str, str, str], tuple[float | None, float | None, float | None]] = {
    **BASELINE_PEERS,
    ("chrono20", "ml-1m-half", "ALS"): (0.082, 0.108, 0.507),
    ("chrono20", "ml-1m-half", "BPR"): (0.068, 0.088, 0.438),
    ("chrono20", "ml-100k", "ALS"): (0.126, 0.144, 0.569),
    ("chrono20", "ml-100k", "BPR"): (0.099, 0.120, 0.510),
}
CF_ON_COLD = "new items unknown: all 0, constant ranking"


@dataclass(frozen=True)
class Grids:
    """Tuning points: the full ones, or the quick subset."""

    itemknn: Sequence[int]
    ease: Sequence[float]
    als: Sequence[ALSParams]
    bpr: Sequence[BPRParams]
    bpr_iterations: Sequence[int]
    lightfm_components: Sequence[int]
    lightfm_epochs: Sequence[int]

    @classmethod
    def make(cls, quick: bool) -> Grids:
        if quick:
            return cls(
                (50, 200, 400),
                (250.0, 2000.0),
                ALS_GRID_QUICK,
                BPR_GRID_QUICK,
                BPR_ITERATIONS_QUICK,
                LIGHTFM_COMPONENTS_QUICK,
                LIGHTFM_EPOCHS_QUICK,
            )
        return cls(
            ITEMKNN_GRID,
            EASE_GRID,
            ALS_GRID,
            BPR_GRID,
            BPR_ITERATIONS,
            LIGHTFM_COMPONENTS,
            LIGHTFM_EPOCHS,
        )


@dataclass
class Row(BaselineRow):
    """One line of a results table: a baseline row plus update time and tuning."""

    update_ms: float | None = None
    update_method: str = ""
    update_users: int = 0
    note: str = ""
    tuning: list[tuple[str, float]] = field(default_factory=list)
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def _tuning_table(result: TuneResult[Any]) -> list[tuple[str, float]]:
    return [(_param_str(p), v) for p, v in result.table]


def _param_str(p: object) -> str:
    return f"{p:g}" if isinstance(p, float) else str(p)


def _describe(params: object) -> tuple[str, dict[str, Any]]:
    """Table text and JSON form of a model's hyperparameters (a params dataclass, a
    dict of named values, or None)."""
    if params is None:
        return "-", {}
    if is_dataclass(params) and not isinstance(params, type):
        return str(params), asdict(params)
    if isinstance(params, dict):
        return " ".join(f"{k}={_param_str(v)}" for k, v in params.items()), dict(params)
    return str(params), {"value": params}


def _print_tuning(dataset: str, protocol: str, name: str, result: TuneResult[Any]) -> None:
    table = "; ".join(f"{p}: {v:.4f}" for p, v in _tuning_table(result))
    print(
        f"  [{dataset} {protocol}] {name} inner NDCG@10 -> {table}\n"
        f"      chosen {_param_str(result.best)} ({result.seconds:.1f}s)",
        flush=True,
    )


def run_model(
    split: Split,
    model: Peer,
    dataset: str,
    params: object,
    tuned: TuneResult[Any] | None = None,
    note: str = "",
) -> Row:
    """Fit on ``split``'s training data, evaluate on its test, then time an update."""
    text, hyper = _describe(params)
    model.fit(split)
    metrics = evaluate_scores(split, model.scores)
    cost = measure_update(model, split)
    row = Row(
        split.protocol,
        dataset,
        model.name,
        text,
        metrics,
        model.fit_seconds,
        tuned.seconds if tuned else 0.0,
        cost.ms,
        cost.method,
        cost.n_users,
        note,
        _tuning_table(tuned) if tuned else [],
        hyper,
    )
    print(
        f"  [{dataset} {split.protocol}] {model.name:<16} {text:<28} "
        f"NDCG@10 {metrics['NDCG@10']:.4f}  fit {model.fit_seconds:.1f}s  "
        f"update {cost.ms:.2f}ms",
        flush=True,
    )
    return row


@dataclass
class Chosen:
    """Hyperparameters picked on chrono20's inner split (reused for cold20's CF rows)."""

    knn: int
    lam: float
    als: ALSParams
    bpr: BPRParams


def run_chrono(data: Dataset, grids: Grids, threads: int) -> tuple[list[Row], Chosen]:
    """Every model on chrono20, each tuned on the inner split."""
    name = data.name
    split = chrono20(data.ratings)
    inner = inner_validation(split)
    print(f"  {split.summary()}\n  inner {inner.summary()}", flush=True)
    rows = [run_model(split, OnlineBaseline(MostPop()), name, None)]

    knn = tune_itemknn(split, grids.itemknn, inner=inner)
    _print_tuning(name, "chrono20", "ItemKNN k", knn)
    rows.append(run_model(split, OnlineBaseline(ItemKNN(knn.best)), name, {"k": knn.best}, knn))

    ease = tune_ease(split, grids.ease, inner=inner)
    _print_tuning(name, "chrono20", "EASE lambda", ease)
    rows.append(
        run_model(split, OnlineBaseline(EASE(ease.best)), name, {"lambda": ease.best}, ease)
    )

    als = tune_als(split, grids.als, inner=inner, num_threads=threads)
    _print_tuning(name, "chrono20", "ALS", als)
    rows.append(run_model(split, ALS(als.best, num_threads=threads), name, als.best, als))

    bpr = tune_bpr(split, grids.bpr, grids.bpr_iterations, inner=inner)
    _print_tuning(name, "chrono20", "BPR", bpr)
    rows.append(run_model(split, BPR(bpr.best), name, bpr.best, bpr))

    rows += _content_rows(data, split, inner, grids)
    return rows, Chosen(knn.best, ease.best, als.best, bpr.best)


def _content_rows(data: Dataset, split: Split, inner: Split, grids: Grids) -> list[Row]:
    """LightFM (tuned on ``inner``) if it imports, and the token centroid."""
    rows: list[Row] = []
    reason = unavailable_reason("lightfm")
    if reason is None:
        lfm = tune_lightfm(
            split, data.items, grids.lightfm_components, grids.lightfm_epochs, inner=inner
        )
        _print_tuning(data.name, split.protocol, "LightFM", lfm)
        model = LightFMHybrid(data.items, lfm.best)
        rows.append(run_model(split, model, data.name, lfm.best, lfm))
    else:
        print(f"  LightFM unavailable ({reason}); content peer: Centroid(tokens) only")
    centroid = OnlineBaseline(token_centroid(data.items))
    centroid.name = "Centroid(tokens)"
    note = "" if reason is None else "fallback for LightFM"
    rows.append(run_model(split, centroid, data.name, {"features": "idf tokens"}, note=note))
    return rows


def run_cold(data: Dataset, grids: Grids, chosen: Chosen, threads: int) -> list[Row]:
    """cold20: CF models with chrono20's settings (for the record), content models tuned."""
    name = data.name
    split = cold20(data.ratings)
    inner = inner_validation(split)
    print(f"  {split.summary()}\n  inner {inner.summary()}", flush=True)
    cf: list[tuple[Peer, object]] = [
        (OnlineBaseline(MostPop()), None),
        (OnlineBaseline(ItemKNN(chosen.knn)), {"k": chosen.knn}),
        (OnlineBaseline(EASE(chosen.lam)), {"lambda": chosen.lam}),
        (ALS(chosen.als, num_threads=threads), chosen.als),
        (BPR(chosen.bpr), chosen.bpr),
    ]
    rows = [run_model(split, model, name, params, note=CF_ON_COLD) for model, params in cf]
    rows += _content_rows(data, split, inner, grids)
    rows.append(Row("cold20", name, "Random (expected)", "exact", random_expectation(split), 0.0))
    return rows


def run_dataset(name: DatasetName, data_dir: Path, grids: Grids, threads: int) -> list[Row]:
    start = time.perf_counter()
    data = load_dataset(name, data_dir)
    print(f"[{name}] loaded {len(data.ratings)} ratings in {time.perf_counter() - start:.1f}s")
    rows, chosen = run_chrono(data, grids, threads)
    return rows + run_cold(data, grids, chosen, threads)


# --- output ----------------------------------------------------------------------------


def _fmt(values: Sequence[float | None]) -> str:
    return " / ".join("  -  " if v is None else f"{v:.3f}" for v in values)


def print_tables(rows: list[Row]) -> None:
    """One table per protocol: measured vs README peer metrics, fit and update times."""
    methods: dict[str, str] = {}
    for protocol in ("chrono20", "cold20"):
        header = (
            f"{'dataset':<11} {'model':<17} {'params':<28} {'R@10 / NDCG@10 / HR@10':<23} "
            f"{'README peer':<23} {'fit s':>6} {'tune s':>6} {'update ms':>9}"
        )
        print(f"\n{protocol}\n{header}\n{'-' * len(header)}")
        for r in (r for r in rows if r.protocol == protocol):
            peer = PEERS.get((r.protocol, r.dataset, r.model))
            update = "-" if r.update_ms is None else f"{r.update_ms:.2f}"
            mark = " *" if r.note == CF_ON_COLD else ""
            print(
                f"{r.dataset:<11} {r.model + mark:<17} {r.params:<28} "
                f"{_fmt([r.metrics[m] for m in METRICS]):<23} {_fmt(peer) if peer else '':<23} "
                f"{r.fit_s:>6.2f} {r.tune_s:>6.1f} {update:>9}"
            )
            if r.update_method:
                methods[r.model] = r.update_method
        if protocol == "cold20":
            print(f"* {CF_ON_COLD}: shown for the record, n/a as a result")
        notes = {(r.model, r.note) for r in rows if r.protocol == protocol and r.note}
        for model, note in sorted(notes):
            if note != CF_ON_COLD:
                print(f"{model}: {note}")
    print("\nper-user update = scores for one user whose history gained one item:")
    for model, method in methods.items():
        print(f"  {model:<17} {method}")


def machine_info(threads: int) -> dict[str, Any]:
    """What the timings depend on (the machine is shared: record its load)."""
    versions: dict[str, str] = {}
    for pkg in ("numpy", "scipy", "implicit", "lightfm"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "cpu_count": os.cpu_count(),
        "load_average": list(os.getloadavg()),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
        "threads": threads,
        "lightfm_unavailable": unavailable_reason("lightfm"),
        "implicit_unavailable": unavailable_reason("implicit"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"evaluation data directory (default: $OWNRANK_EVAL_DATA or {default_data_dir()})",
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--quick", action="store_true", help="fewer tuning points")
    parser.add_argument(
        "--threads", type=int, default=2, help="threads for BLAS and implicit's ALS"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="results file (default: bench/results/peers.json, quick: peers_quick.json)",
    )
    args = parser.parse_args(argv)
    data_dir = cast(Path, args.data_dir or default_data_dir())
    names = [n.strip() for n in str(args.datasets).split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")
    reason = unavailable_reason("implicit")
    if reason is not None:
        parser.error(f"implicit is required for the ALS / BPR peers: {reason}")
    quick = bool(args.quick)
    grids = Grids.make(quick)
    out = cast(Path | None, args.json) or RESULTS / ("peers_quick.json" if quick else "peers.json")

    threads = int(args.threads)
    if threadpool_limits is not None:
        threadpool_limits(limits=threads)  # BLAS / OpenMP pools: the machine is shared
    info = machine_info(threads)
    print(f"machine: {info['cpu_count']} CPUs, load average {info['load_average']}")
    start = time.perf_counter()
    rows: list[Row] = []
    for name in names:
        rows += run_dataset(cast(DatasetName, name), data_dir, grids, threads)
    total = time.perf_counter() - start
    print_tables(rows)
    print(f"\ntotal {total:.0f}s ({'quick' if quick else 'full'})")

    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "data_dir": str(data_dir),
        "total_s": total,
        "machine": info,
        "load_average_end": list(os.getloadavg()),
        "rows": [asdict(r) for r in rows],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=_json_default) + "\n")
    print(f"wrote {out}")
    return 0


def _json_default(value: object) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


if __name__ == "__main__":
    raise SystemExit(main())
