"""Probe: what a recommend would cost if each user's record held its personal candidates.

    python bench/stored_candidates_probe.py STORE_DIR [--users 600]

A design for issue 4's load target keeps each user's retrieved candidates in
the user's own record, computed when the user interacts, so a recommend skips
its personal HNSW searches. Before building it, this measures its best case on
a benchmark store (``bench/results/service-store/*/data``, copied first):

1. recommend as it is, for ``--users`` random users (p50 / p99);
2. the same calls with ``IndexKeeper.search_many`` answered from memory (each
   user's answer recorded in a first pass), as if read from the record;
3. the time per call of each remaining part in (2).

(2) still scores neighbours for every candidate, where the design would keep
the personal candidates' scores in the record and score only the shared
(popular) ones: the parts in (3) say how much that could save at most.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from catalog_bench import SyntheticEncoder  # noqa: E402
from engine_bench import user_id  # noqa: E402
from ranking_dump import population  # noqa: E402

from ownrank import Engine, EngineConfig  # noqa: E402

PARTS = ("neighbours", "pool", "popularity", "record", "user vectors", "retrieve")


def parts_of(engine: Engine) -> dict[str, tuple[Any, str]]:
    """Where each timed part of a recommend lives: (object, method name)."""
    users = engine._users
    ranking = users.ranking
    neighbours = next(s for s in ranking.scorers if s.name == "neighbours")
    return {
        "neighbours": (neighbours, "neighbours"),
        "pool": (ranking.candidates, "pool_of"),
        "popularity": (ranking.popularity, "scores"),
        "record": (users.records, "read"),
        "user vectors": (ranking.candidates, "user_vectors"),
        "retrieve": (ranking.candidates, "retrieve"),
    }


def latency(fn: Callable[[str], Any], users: Sequence[str]) -> tuple[float, float]:
    """p50 and p99 in ms of ``fn`` over ``users``."""
    times = []
    for user in users:
        start = time.perf_counter()
        fn(user)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, int(0.99 * len(times)) - 1)]


def probe(engine: Engine, users: Sequence[str]) -> None:
    keeper = engine.catalog.keeper
    for user in users[:50]:  # warm-up
        engine.recommend(user, 10)
    p50, p99 = latency(lambda u: engine.recommend(u, 10), users)
    print(f"recommend as it is:              p50 {p50:.2f} ms, p99 {p99:.2f} ms")

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
    p50, p99 = latency(stored, users)
    print(f"personal searches from memory:   p50 {p50:.2f} ms, p99 {p99:.2f} ms")

    spent = dict.fromkeys(PARTS, 0.0)

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start

        return run

    for name, (owner, method) in parts_of(engine).items():
        setattr(owner, method, timed(name, getattr(owner, method)))
    for user in users:
        stored(user)
    print(
        "parts left, ms per call:",
        ", ".join(f"{n} {s / len(users) * 1000:.3f}" for n, s in spent.items()),
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("store", type=Path, help="a benchmark store's data directory (copied first)")
    p.add_argument("--users", type=int, default=600)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    among = population(args.store)
    users = [user_id(rng.randrange(among)) for _ in range(args.users)]
    with tempfile.TemporaryDirectory(prefix="candidates-probe-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(args.store, data)
        with Engine(data, EngineConfig(), encoder=SyntheticEncoder()) as engine:
            probe(engine, users)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
