"""Erasure against retraining: what "forget this user" costs in ownrank and in the peers.

ownrank forgets a user by deleting one record (and destroying its data key): the
frozen encoder and every other user are untouched. A shared model (EASE, ALS) has no
such operation: honest removal means refitting without that user. This measures both
for the same users, on the same data, on this machine::

    python bench/erasure_vs_retrain.py [--quick] [--data-dir DIR] [--users 200]

1. A store built from the chrono20 training ratings as ``bench/quality.py`` builds
   it (``build_store``), default ``EngineConfig`` (sealed records, shared
   popularity statistics: erase subtracts them too).
2. ``--users`` sampled users are erased one by one with ``Engine.erase``; each
   call's wall time (a durable LMDB commit, key destruction, a signed receipt)
   gives p50 / p99. A few other users are erased first (first-call set-up) and
   reported apart.
3. For the first ``--retrain-users`` of them, EASE (lambda 2000, tuned on
   ml-1m-half) and implicit's ALS (the README's peer row) are refit from scratch
   without that user; the fit time (matrix building included) is the cost of the
   same removal. Ratios are the median refit seconds / erase p50 (and p99).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

import harness
import machine_info
import numpy as np
from baselines import EASE
from catalog_bench import timed
from engine_bench import time_calls
from eval_data import DATASETS, DatasetName, default_data_dir, load_dataset
from peers import ALS, ALSParams, unavailable_reason
from protocols import Split, chrono20
from quality import build_store, cached_encoder

from ownrank import EngineConfig

EASE_LAMBDA = 2000.0  # tuned on ml-1m-half chrono20 (bench/quality.py, README peer table)
# the README's peer row ("scaled" confidence: positives weigh alpha), 15 iterations
ALS_PARAMS = ALSParams(factors=128, regularization=10.0, alpha=0.5, confidence="scaled")
WARMUP_ERASURES = 3


def without_user(split: Split, user: int) -> Split:
    """The same split with every rating of ``user`` gone (what a retrain would see)."""
    return replace(
        split,
        train=split.train.take(split.train.user != user),
        train_all=split.train_all.take(split.train_all.user != user),
        test={u: items for u, items in split.test.items() if u != user},
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="30 erasures, 1 refit per model")
    p.add_argument("--data-dir", type=Path, default=None, help="evaluation data directory")
    p.add_argument("--dataset", default="ml-1m-half", choices=list(DATASETS))
    p.add_argument("--users", type=int, help="users erased (default 200; quick 30)")
    p.add_argument("--retrain-users", type=int, help="refits per model (default 3; quick 1)")
    p.add_argument("--threads", type=int, default=2, help="ALS threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="JSON results file (default: bench/results/)")
    args = p.parse_args(argv)
    args.users = args.users if args.users is not None else (30 if args.quick else 200)
    if args.retrain_users is None:
        args.retrain_users = 1 if args.quick else 3
    args.out = args.out or harness.default_out("erasure_vs_retrain", args.quick)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = harness.Run("erasure_vs_retrain", vars(args), quick=args.quick)
    versions = {p: machine_info.package_version(p) for p in ("numpy", "scipy", "implicit")}
    run.details["versions"] = versions
    run.details["implementation"] = {
        "EASE": "baselines.EASE (dense inverse of X^T X + lambda I)",
        "ALS": "peers.ALS (implicit's CPU ALS)",
    }
    name: DatasetName = args.dataset
    labels = {"dataset": name}
    dataset = load_dataset(name, args.data_dir or default_data_dir())
    split = chrono20(dataset.ratings)
    run.details["split"] = split.summary()
    print(f"[{name}] {split.summary()}", flush=True)
    store_users = np.unique(split.train_all.user)
    rng = np.random.default_rng(args.seed)
    n = min(args.users + WARMUP_ERASURES, len(store_users))
    picked = [str(u) for u in rng.choice(store_users, size=n, replace=False)]
    config = EngineConfig()
    shown = ("encrypt_user_records", "shared_statistics", "max_events")
    run.details["config"] = {key: getattr(config, key) for key in shown}

    with tempfile.TemporaryDirectory(prefix="ownrank-erasure-") as tmp:
        build_s, (engine, build) = timed(
            lambda: build_store(Path(tmp) / "store", dataset, split, cached_encoder(name), config)
        )
        run.add("build", build_s, "s", **labels)
        with engine:
            all_s, all_receipts = time_calls(lambda i: engine.erase(picked[i]), n, 0)
    warm_s, seconds = all_s[:WARMUP_ERASURES], all_s[WARMUP_ERASURES:]
    receipts = all_receipts[WARMUP_ERASURES:]
    run.add("users", len(store_users), "count", **labels)
    run.add("events", build["events"], "count", **labels)
    run.add("catalog upsert", build["catalog"], "s", **labels)
    run.add("interact all", build["users"], "s", **labels)
    run.latency("update", build["updates"], **labels)
    run.latency("erase", seconds, mean_max=True, **labels)
    run.add("erase min", min(seconds) * 1000.0, "ms", **labels)
    run.add("existed", sum(r.existed for r in receipts), "count", **labels)
    run.add("data key destroyed", sum(r.data_key_destroyed for r in receipts), "count", **labels)
    removed = sum(r.events_removed for r in receipts) / max(len(receipts), 1)
    run.add("events removed mean", removed, "events", **labels)
    for i, s in enumerate(warm_s, 1):
        run.add("first erase", s * 1000.0, "ms", **labels, call=i)

    erase_p50, erase_p99 = harness.percentile(seconds, 50), harness.percentile(seconds, 99)
    als = (f"factors={ALS_PARAMS.factors} reg={ALS_PARAMS.regularization:g} "
           f"alpha={ALS_PARAMS.alpha:g} (confidence alpha) "
           f"iterations={ALS_PARAMS.iterations} threads={args.threads}")  # fmt: skip
    for model, params, fit in (
        ("EASE", f"lambda={EASE_LAMBDA:g}", lambda s: EASE(EASE_LAMBDA).fit(s)),
        ("ALS", als, lambda s: ALS(ALS_PARAMS, num_threads=args.threads).fit(s)),
    ):
        run.add("params", params, "", **labels, model=model)
        if model == "ALS" and unavailable_reason("implicit") is not None:
            run.note(f"ALS unavailable: implicit: {unavailable_reason('implicit')}")
            continue
        refits = []
        for user in picked[WARMUP_ERASURES:][: args.retrain_users]:
            refits.append(timed(partial(fit, without_user(split, int(user))))[0])
            run.add("refit", refits[-1], "s", **labels, model=model, user=int(user))
            print(f"  {model} refit without user {user}: {refits[-1]:.2f} s", flush=True)
        median = float(np.median(refits))
        for stat, value in (("median", median), ("min", min(refits)), ("max", max(refits))):
            run.add(f"refit {stat}", value, "s", **labels, model=model)
        run.add("refit / erase p50", median / erase_p50, "x", **labels, model=model)
        run.add("refit / erase p99", median / erase_p99, "x", **labels, model=model)

    run.table("Store built as bench/quality.py does (default EngineConfig)", ["dataset"],
              metrics=["users", "events", "build", "catalog upsert", "interact all",
                       "update p50", "update p99"])  # fmt: skip
    run.table(
        "ownrank Engine.erase per user (durable commit, data key destroyed, signed receipt)",
        ["dataset"],
        metrics=["erase calls", "erase p50", "erase p99", "erase mean", "erase min", "erase max",
                 "existed", "data key destroyed", "events removed mean"],
    )  # fmt: skip
    run.table("First erasures of the store (set-up; not in the figures above)", ["dataset"],
              "call", {"metric": "first erase"})  # fmt: skip
    run.table("Refit from scratch without one user", ["dataset", "model"],
              metrics=["params", "refit median", "refit min", "refit max"])  # fmt: skip
    run.table("Each refit", ["dataset", "model", "user"], metrics=["refit"])
    run.table("One refit costs this many erasures (median refit / erase p50, p99)",
              ["dataset", "model"], metrics=["refit / erase p50", "refit / erase p99"],
              plot=True)  # fmt: skip
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
