"""Run the reference baselines on chrono20 / cold20 and compare with the README's peers.

Reproducing the peer numbers for MostPop / ItemKNN / EASE is the check that the
protocol code (bench/protocols.py) follows the README exactly. Usage::

    python bench/run_baselines.py [--data-dir DIR] [--datasets ml-1m-half,ml-100k]
                                  [--json PATH]

Hyperparameters are tuned on the inner validation split only (never on test).
Takes ~2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import cast

if __package__ in (None, ""):
    # Run as a script: make `bench.*` importable from the project root.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.baselines import (
    EASE,
    ItemKNN,
    MostPop,
    RandomScores,
    Recommender,
    TuneResult,
    tune_ease,
    tune_itemknn,
)
from bench.eval_data import DATASETS, DatasetName, default_data_dir, load_dataset
from bench.protocols import (
    Split,
    chrono20,
    cold20,
    evaluate_scores,
    inner_validation,
    random_expectation,
)

# Recall@10 / NDCG@10 / HR@10 from ../shared/data/README.md (None: not reported).
PEERS: dict[tuple[str, str, str], tuple[float | None, float | None, float | None]] = {
    ("chrono20", "ml-1m-half", "MostPop"): (0.044, 0.075, 0.358),
    ("chrono20", "ml-1m-half", "ItemKNN"): (0.076, 0.107, 0.469),
    ("chrono20", "ml-1m-half", "EASE"): (0.082, 0.109, 0.501),
    ("chrono20", "ml-100k", "MostPop"): (0.059, 0.077, 0.371),
    ("chrono20", "ml-100k", "ItemKNN"): (0.125, 0.140, 0.564),
    ("chrono20", "ml-100k", "EASE"): (0.129, 0.145, 0.579),
    ("cold20", "ml-1m-half", "Random"): (None, 0.030, None),
    ("cold20", "ml-1m-half", "Random (expected)"): (None, 0.030, None),
}
METRICS = ("Recall@10", "NDCG@10", "HR@10")


@dataclass
class Row:
    """One line of the results table."""

    protocol: str
    dataset: str
    model: str
    params: str
    metrics: dict[str, float]
    fit_s: float
    tune_s: float = 0.0


def _run(split: Split, model: Recommender, protocol: str, dataset: str, params: str = "-") -> Row:
    start = time.perf_counter()
    model.fit(split)
    fit_s = time.perf_counter() - start
    return Row(protocol, dataset, model.name, params, evaluate_scores(split, model.scores), fit_s)


def _print_tuning(dataset: str, name: str, result: TuneResult[int] | TuneResult[float]) -> None:
    table = ", ".join(f"{p:g}: {v:.4f}" for p, v in result.table)
    print(
        f"  [{dataset}] {name} inner-validation NDCG@10 -> {table}; "
        f"chosen {result.best:g} ({result.seconds:.1f}s)",
        flush=True,
    )


def run_dataset(name: DatasetName, data_dir: Path) -> list[Row]:
    """All baselines on one dataset: chrono20 (tuned) and cold20."""
    rows: list[Row] = []
    start = time.perf_counter()
    data = load_dataset(name, data_dir)
    print(f"[{name}] loaded {len(data.ratings)} ratings in {time.perf_counter() - start:.1f}s")

    split = chrono20(data.ratings)
    inner = inner_validation(split)
    print(f"  {split.summary()}\n  inner {inner.summary()}", flush=True)
    rows.append(_run(split, MostPop(), "chrono20", name))

    knn = tune_itemknn(split, inner=inner)
    _print_tuning(name, "ItemKNN k", knn)
    row = _run(split, ItemKNN(knn.best), "chrono20", name, f"k={knn.best}")
    row.tune_s = knn.seconds
    rows.append(row)

    ease = tune_ease(split, inner=inner)
    _print_tuning(name, "EASE lambda", ease)
    row = _run(split, EASE(ease.best), "chrono20", name, f"lambda={ease.best:g}")
    row.tune_s = ease.seconds
    rows.append(row)

    cold = cold20(data.ratings)
    print(f"  {cold.summary()}", flush=True)
    # Every new item has 0 training positives, so MostPop is a constant ranking
    # (ties -> lowest item id): shown to make the point that CF cannot do cold20.
    rows.append(_run(cold, MostPop(), "cold20", name, "constant"))
    rows.append(_run(cold, RandomScores(seed=0), "cold20", name, "seed=0"))
    rows.append(Row("cold20", name, "Random (expected)", "exact", random_expectation(cold), 0.0))
    return rows


def _fmt(values: tuple[float | None, ...]) -> str:
    return " / ".join("  -  " if v is None else f"{v:.3f}" for v in values)


def print_table(rows: list[Row]) -> None:
    """Measured vs peer Recall@10 / NDCG@10 / HR@10, with fit and tuning times."""
    header = (
        f"{'protocol':<9} {'dataset':<11} {'model':<18} {'params':<13} "
        f"{'R@10 / NDCG@10 / HR@10':<23} {'peer':<23} {'users':>6} {'fit s':>6} {'tune s':>6}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        measured = _fmt(tuple(r.metrics[m] for m in METRICS))
        peer = PEERS.get((r.protocol, r.dataset, r.model))
        print(
            f"{r.protocol:<9} {r.dataset:<11} {r.model:<18} {r.params:<13} {measured:<23} "
            f"{_fmt(peer) if peer else '':<23} {int(r.metrics['n_users']):>6} "
            f"{r.fit_s:>6.2f} {r.tune_s:>6.1f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help=f"evaluation data directory (default: $OWNRANK_EVAL_DATA or {default_data_dir()})",
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--json", type=Path, default=None, help="also write results here")
    args = parser.parse_args(argv)
    data_dir = cast(Path, args.data_dir or default_data_dir())
    names = [n.strip() for n in str(args.datasets).split(",") if n.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown:
        parser.error(f"unknown datasets {unknown}; choose from {list(DATASETS)}")

    start = time.perf_counter()
    rows: list[Row] = []
    for name in names:
        rows += run_dataset(cast(DatasetName, name), data_dir)
    print_table(rows)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
