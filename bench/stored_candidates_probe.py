"""Probe: what a recommend would cost if each user's record held its personal candidates.

    python bench/stored_candidates_probe.py STORE_DIR [--users 600]

A design for issue 4's load target keeps each user's retrieved candidates in the
user's record, so a recommend skips its personal HNSW searches. This measures its
best case on a benchmark store (``bench/results/service-store/*/data``, copied first):

1. recommend as it is, for ``--users`` random users (p50 / p99);
2. the same calls with ``IndexKeeper.search_many`` answered from memory (each
   user's answer recorded in a first pass), as if read from the record;
3. the time per call of each step left in (2) (``diagnostics.recommend_steps()``):
   (2) still scores every candidate, where the design would keep the personal ones'
   scores in the record and score only the shared (popular) ones: the most it saves.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import harness
from catalog_bench import SyntheticEncoder, timed
from engine_bench import user_id
from ranking_dump import population

from ownrank import Engine, EngineConfig


def timings(fn: Callable[[str], Any], users: Sequence[str]) -> list[float]:
    """Seconds of ``fn(user)`` for each user."""
    return [timed(lambda u=user: fn(u))[0] for user in users]


def probe(run: harness.Run, engine: Engine, users: Sequence[str]) -> None:
    keeper = engine.catalog.keeper
    for user in users[:50]:  # warm-up
        engine.recommend(user, 10)
    run.latency("recommend", timings(lambda u: engine.recommend(u, 10), users), path="as it is")

    # search_shared (the popular direction) also goes through search_many when its kept
    # answer misses; the pass above filled it, so each recommend now makes exactly one
    # search_many call, the personal one (checked below)
    answers: dict[str, list[Any]] = {}
    current = {"user": ""}
    search_many = keeper.search_many

    def recording(*args: Any, **kwargs: Any) -> Any:
        found = search_many(*args, **kwargs)
        answers.setdefault(current["user"], []).append(found)
        return found

    def stored(user: str) -> None:
        current["user"] = user
        engine.recommend(user, 10)

    keeper.search_many = recording  # type: ignore[method-assign]
    for user in users:
        answers.pop(user, None)  # a user drawn twice: keep the last call's answer
        stored(user)
        if len(answers[user]) != 1:
            raise SystemExit(f"{user}: {len(answers[user])} search_many calls, expected 1")
    keeper.search_many = lambda *_a, **_k: answers[current["user"]][0]  # type: ignore[method-assign]
    run.latency("recommend", timings(stored, users), path="personal searches from memory")

    steps = engine.diagnostics.recommend_steps()
    for name, (owner, method) in list(steps.items()):
        if not hasattr(owner, method):  # a step the engine no longer has: say so
            run.note(f"step {name}: {type(owner).__name__}.{method} not found, not timed")
            del steps[name]
    spent = dict.fromkeys(steps, 0.0)

    def timing(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return call

    for name, (owner, method) in steps.items():
        setattr(owner, method, timing(name, getattr(owner, method)))
    for user in users:
        stored(user)
    for name, seconds in spent.items():
        run.add("per call", seconds / len(users) * 1e6, "us", step=name)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("store", type=Path, help="a benchmark store's data directory (copied first)")
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--out", type=Path, default=harness.default_out("stored_candidates_probe", False)
    )
    args = p.parse_args(argv)
    run = harness.Run("stored_candidates_probe", vars(args), quick=False)
    run.table("Recommend", ["path"], metrics=["recommend calls", "recommend p50", "recommend p99"])
    run.table("Steps left, personal searches from memory", ["step"], metrics=["per call"])
    rng = random.Random(args.seed)
    among = population(args.store)
    users = [user_id(rng.randrange(among)) for _ in range(args.users)]
    with tempfile.TemporaryDirectory(prefix="candidates-probe-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(args.store, data)
        with Engine(data, EngineConfig(), encoder=SyntheticEncoder()) as engine:
            probe(run, engine, users)
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
