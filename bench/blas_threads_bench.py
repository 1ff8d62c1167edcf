"""Recommend latency by numpy BLAS threads (``EngineConfig.blas_threads``), idle and busy.

One store (ml-1m-half's chrono20 training users, as ``bench/quality.py`` ingests them),
copied so two engines differ only in ``blas_threads``: None (the process's setting) and
1. Each recommend alternates between them (``collaborative_bench.alternate``), first on
an idle machine, then with every core kept busy by another process (a pure-Python loop
per core), as a service worker's cores are.

    python bench/blas_threads_bench.py [--queries 1000] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import numpy as np
from collaborative_bench import alternate, interact_all, ml_1m_half_training
from quality import cached_encoder

from ownrank import Engine, EngineConfig

SETTINGS = {"process": None, "1": 1}  # label -> EngineConfig.blas_threads


def spin() -> None:
    while True:
        pass


def measure(run: harness.Run, args: argparse.Namespace) -> None:
    catalog, users = ml_1m_half_training()
    encoder = cached_encoder("ml-1m-half")
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(users), size=min(args.queries, len(users)), replace=False)
    ranked = [users[int(k)][0] for k in picks]
    with tempfile.TemporaryDirectory() as tmp:
        with Engine(Path(tmp) / "process", EngineConfig(), encoder=encoder) as engine:
            for start in range(0, len(catalog), 1000):
                engine.catalog.upsert(catalog[start : start + 1000])
            engine.catalog.neighbours.update()
            for uid, events in users:
                interact_all(engine, uid, events)
        shutil.copytree(Path(tmp) / "process", Path(tmp) / "1")
        engines = {
            label: Engine(Path(tmp) / label, EngineConfig(blas_threads=n), encoder=encoder)
            for label, n in SETTINGS.items()
        }
        calls: list[Any] = [
            lambda e, u=u: e.recommend(u, 10, filters={"candidate": True}) for u in ranked
        ]
        try:
            for machine in ("idle", "busy"):
                spinners = [
                    mp.Process(target=spin, daemon=True) for _ in range(os.cpu_count() or 1)
                ]
                for p in spinners if machine == "busy" else ():
                    p.start()
                try:
                    alternate(engines, calls[: args.warmup])
                    times = alternate(engines, calls)
                finally:
                    for p in spinners:
                        if p.is_alive():
                            p.terminate()
                for label, seconds in times.items():
                    run.latency("recommend", seconds, machine=machine, blas_threads=label)
        finally:
            for engine in engines.values():
                engine.close()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--queries", type=int, default=1000, help="recommend calls per engine")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--quick", action="store_true", help="300 calls")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, help="results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.queries = 300
    run = harness.Run("blas_threads_bench", vars(args), quick=args.quick)
    measure(run, args)
    run.table(
        "ml-1m-half recommend by BLAS threads, idle and with every core busy",
        by=["machine", "blas_threads"],
        metrics=["recommend calls", "recommend p50", "recommend p99"],
    )
    run.note("blas_threads=process: numpy's own setting (as many threads as cores here)")
    run.finish(args.out or harness.default_out("blas_threads_bench", args.quick))


if __name__ == "__main__":
    main()
