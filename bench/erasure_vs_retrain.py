"""Erasure against retraining: what "forget this user" costs in ownrank and in the peers.

ownrank forgets a user by deleting one record (and destroying its data key):
the frozen encoder and every other user are untouched. A shared model (EASE, ALS)
has no such operation: honest removal means refitting on the training data
without that user. This script measures both for the same users, on the same
data, on this machine::

    python bench/erasure_vs_retrain.py [--quick] [--data-dir DIR] [--users 200]

1. ml-1m-half, chrono20 split (``bench/protocols.py``). An ownrank store is built
   from the training ratings exactly as ``bench/quality.py`` does (its
   ``build_store``: catalog upserted with cached embeddings, every training
   user's ratings sent with ``Engine.interact``), default ``EngineConfig``
   (sealed records, shared popularity statistics: erase subtracts them too).
2. ``--users`` sampled users (default 200, quick 30; deterministic seed) are
   erased one by one with ``Engine.erase``; each call's wall time (a durable
   LMDB commit, key destruction, a signed receipt) gives p50 / p99. A few other
   users are erased first, untimed (first-call set-up), and reported apart.
3. For the first ``--retrain-users`` of them (default 3, quick 1): EASE (lambda
   2000, the value tuned on ml-1m-half) and implicit's ALS (f=128, reg=10,
   alpha=0.5, the README's peer row) are refit from scratch on the training
   matrix without that user; the fit time (matrix built from the training log
   included) is the cost of the same removal.

Ratios are retrain seconds / erase p50 seconds (and / erase p99). Results go to
``bench/results/erasure_vs_retrain.json`` (``erasure_vs_retrain_quick.json``).
Expected run time on 2 cores: quick ~1-2 minutes (the store build is most of
it), full ~3 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp  # type: ignore[import-untyped]

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import machine_info
from bench.baselines import EASE
from bench.eval_data import DATASETS, DatasetName, default_data_dir, load_dataset
from bench.protocols import Split, chrono20
from bench.quality import CachedEncoder, build_store
from ownrank import Engine, EngineConfig

Json = dict[str, Any]

RESULTS = Path(__file__).resolve().parent / "results"
EASE_LAMBDA = 2000.0  # tuned on ml-1m-half chrono20 (bench/quality.py, README peer table)
ALS_FACTORS, ALS_REG, ALS_ALPHA, ALS_ITERATIONS = 128, 10.0, 0.5, 15  # README peer row
WARMUP_ERASURES = 3
SEED = 0


def latency_stats(seconds: Sequence[float]) -> Json:
    """p50 / p99 / mean / max in milliseconds (p99 of few samples is close to the max)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "count": len(ms),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "min_ms": round(float(ms.min()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def without_user(split: Split, user: int) -> Split:
    """The same split with every rating of ``user`` gone (what a retrain would see)."""
    return Split(
        split.protocol,
        split.train.take(split.train.user != user),
        split.train_all.take(split.train_all.user != user),
        {u: items for u, items in split.test.items() if u != user},
        split.candidates,
        split.exclude_train,
    )


def fit_ease(split: Split) -> None:
    """EASE from scratch: the Gram matrix of the training positives and its inverse."""
    EASE(EASE_LAMBDA).fit(split)


def fit_als(split: Split, threads: int) -> str:
    """ALS from scratch, through ``bench.peers.ALS`` if it imports, else implicit
    directly with the same settings; returns which one ran."""
    try:
        from bench.peers import ALS, ALSParams, unavailable_reason
    except ImportError:  # bench/peers.py absent or broken: implicit directly below
        pass
    else:
        if unavailable_reason("implicit") is None:
            params = ALSParams(
                factors=ALS_FACTORS,
                regularization=ALS_REG,
                alpha=ALS_ALPHA,
                confidence="scaled",  # positives weigh alpha, as in the README's row
                iterations=ALS_ITERATIONS,
            )
            ALS(params, num_threads=threads).fit(split)
            return "bench.peers.ALS"
    from implicit.cpu.als import AlternatingLeastSquares  # type: ignore[import-untyped]

    x = split.train_matrix().astype(np.float32)
    confidence = sp.csr_matrix(x)
    confidence.data[:] = ALS_ALPHA
    AlternatingLeastSquares(
        factors=ALS_FACTORS,
        regularization=ALS_REG,
        alpha=1.0,
        iterations=ALS_ITERATIONS,
        num_threads=threads,
        random_state=SEED,
    ).fit(confidence, show_progress=False)
    return "implicit.cpu.als.AlternatingLeastSquares"


def time_retrain(fit: Callable[[Split], object], split: Split, users: Sequence[int]) -> Json:
    """Seconds to refit on ``split`` minus each user, one refit per user."""
    seconds = []
    for user in users:
        reduced = without_user(split, user)
        start = time.perf_counter()
        fit(reduced)
        seconds.append(time.perf_counter() - start)
        print(f"  refit without user {user}: {seconds[-1]:.2f} s", flush=True)
    return {
        "users": [int(u) for u in users],
        "seconds": [round(s, 3) for s in seconds],
        "median_s": round(float(np.median(seconds)), 3),
        "min_s": round(min(seconds), 3),
        "max_s": round(max(seconds), 3),
    }


def time_erasures(engine: Engine, users: Sequence[int]) -> tuple[list[float], Json]:
    """Erase each user; wall seconds per call and what the receipts state."""
    seconds: list[float] = []
    existed = destroyed = events = 0
    for user in users:
        start = time.perf_counter()
        receipt = engine.erase(str(user))
        seconds.append(time.perf_counter() - start)
        existed += receipt.existed
        destroyed += receipt.data_key_destroyed
        events += receipt.events_removed
    return seconds, {
        "existed": existed,
        "data_key_destroyed": destroyed,
        "mean_events_removed": round(events / max(len(users), 1), 1),
    }


def machine() -> Json:
    """What the timings depend on (the machine is shared: its load is recorded too)."""
    return machine_info.machine(("numpy", "scipy", "implicit"))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="30 erasures, 1 refit per model")
    p.add_argument("--data-dir", type=Path, default=None, help="evaluation data directory")
    p.add_argument("--dataset", default="ml-1m-half", choices=list(DATASETS))
    p.add_argument("--users", type=int, help="users erased (default 200; quick 30)")
    p.add_argument("--retrain-users", type=int, help="refits per model (default 3; quick 1)")
    p.add_argument("--threads", type=int, default=2, help="ALS threads (default 2)")
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)
    quick = bool(args.quick)
    if args.users is None:
        args.users = 30 if quick else 200
    if args.retrain_users is None:
        args.retrain_users = 1 if quick else 3
    if args.out is None:
        name = "erasure_vs_retrain_quick.json" if quick else "erasure_vs_retrain.json"
        args.out = RESULTS / name
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    result: Json = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    data_dir = args.data_dir or default_data_dir()
    name: DatasetName = args.dataset
    dataset = load_dataset(name, data_dir)
    split = chrono20(dataset.ratings)
    result["split"] = split.summary()
    print(f"[{name}] {split.summary()}", flush=True)
    store_users = np.unique(split.train_all.user)
    rng = np.random.default_rng(args.seed)
    n = min(args.users + WARMUP_ERASURES, len(store_users))
    picked = [int(u) for u in rng.choice(store_users, size=n, replace=False)]
    warmup, users = picked[:WARMUP_ERASURES], picked[WARMUP_ERASURES:]
    encoder = CachedEncoder(RESULTS / "cache" / f"{name}-embeddings.npz")
    config = EngineConfig()
    result["config"] = {
        "encrypt_user_records": config.encrypt_user_records,
        "shared_statistics": config.shared_statistics,
        "max_events": config.max_events,
    }

    with tempfile.TemporaryDirectory(prefix="ownrank-erasure-") as tmp:
        start = time.perf_counter()
        engine, build = build_store(Path(tmp) / "store", dataset, split, encoder, config)
        build["seconds"] = round(time.perf_counter() - start, 2)
        result["store"] = {"users": len(store_users), **build}
        print(f"store: {len(store_users)} users, {build}", flush=True)
        try:
            warm_s, _ = time_erasures(engine, warmup)
            seconds, receipts = time_erasures(engine, users)
        finally:
            engine.close()
    erase = {
        **latency_stats(seconds),
        **receipts,
        "warmup_ms": [round(s * 1000, 3) for s in warm_s],
    }
    result["erase"] = erase
    print(
        f"erase: p50 {erase['p50_ms']:.2f} ms, p99 {erase['p99_ms']:.2f} ms over "
        f"{erase['count']} users ({receipts})",
        flush=True,
    )

    retrain_users = users[: args.retrain_users]
    print(f"EASE (lambda={EASE_LAMBDA:g}) refit from scratch:", flush=True)
    ease = time_retrain(fit_ease, split, retrain_users)
    ease["params"] = f"lambda={EASE_LAMBDA:g}"
    ease["implementation"] = "bench.baselines.EASE (dense inverse of X^T X + lambda I)"
    print(f"ALS (f={ALS_FACTORS}, reg={ALS_REG:g}, alpha={ALS_ALPHA:g}) refit from scratch:")
    used: list[str] = []
    try:
        als = time_retrain(lambda s: used.append(fit_als(s, args.threads)), split, retrain_users)
    except ImportError as exc:  # implicit not installed: say so, keep the rest
        als = {"unavailable": f"{type(exc).__name__}: {exc}"}
        print(f"  ALS unavailable: {als['unavailable']}", flush=True)
    als["params"] = (
        f"factors={ALS_FACTORS} reg={ALS_REG:g} alpha={ALS_ALPHA:g} (confidence alpha) "
        f"iterations={ALS_ITERATIONS} threads={args.threads}"
    )
    als["implementation"] = used[0] if used else ""
    result["retrain"] = {"EASE": ease, "ALS": als}

    p50_s, p99_s = erase["p50_ms"] / 1000.0, erase["p99_ms"] / 1000.0
    result["ratios"] = {
        f"{model}_over_erase_{q}": round(r["median_s"] / s, 1)
        for model, r in (("EASE", ease), ("ALS", als))
        for q, s in (("p50", p50_s), ("p99", p99_s))
        if s > 0 and "median_s" in r
    }
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = round(time.time() - started, 1)
    for key, value in result["ratios"].items():
        print(f"  {key}: {value:,.0f}x")
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} (total {result['total_seconds']:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
