"""An IVF index of float16 codes against float32 vectors, call by call (issue 19).

The engine benchmark's synthetic catalog and users (``engine_bench.py``: clustered
384-d vectors, 12 topics, histories of 10-150 events) in one store, built once per
size under bench/results/cache/ivf-codes-ab/, then copied twice: one copy opened with
``ivf_codes="float32"``, the other with ``"float16"``, each index rebuilt from the
same catalog, so both have the same lists and differ only in their codes. Both
engines answer the same calls (recommend plain, with a topic filter, with diversity
0.3, and personalized search), the order alternating from call to call, since the
VM's speed drifts between processes more than the change measured. Prints each
setting's p50 / p99, the ratio of the p50s, the median of the per-call ratios and
how many result lists are identical. Both engines share the
CPU's caches, so the ratio is the measure, not the absolute times.

    python bench/ivf_codes_ab.py                            # 100k items, 1,500 users
    python bench/ivf_codes_ab.py --items 5000 --users 100 --calls 50
"""

from __future__ import annotations

import argparse
import functools
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import engine_bench
import harness
import numpy as np
from catalog_bench import item_batches

from ownrank import Engine, EngineConfig

CACHE = Path(__file__).resolve().parent / "results" / "cache" / "ivf-codes-ab"
CODES = ("float32", "float16")


def build_store(path: Path, items: int, users: int, seed: int) -> None:
    """A catalog and users as ``engine_bench`` makes them (IVF at any size)."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    config = EngineConfig(index_kind="ivf")
    with Engine(tmp, config, encoder=engine_bench.SyntheticEncoder()) as engine:
        populate(engine, items, users, seed)
    tmp.rename(path)


def populate(engine: Any, items: int, users: int, seed: int) -> None:
    """``engine_bench``'s catalog and users for these sizes and seed (as its
    ``build_catalog`` and ``phase_interact`` send them), through calls every version
    of the engine has (``engine_ab.py`` writes a git revision's store with it)."""
    topics: list[int] = []
    for batch in item_batches(items, 1000, seed + 100, "s"):
        topics += [int(str(item["properties"]["topic"])[1:]) for item in batch]
        engine.catalog.upsert(batch)
    engine.catalog.keeper.sync()
    if hasattr(engine.catalog, "neighbours"):  # (versions with content-neighbour lists)
        engine.catalog.neighbours.update()
    population = engine_bench.Population(np.asarray(topics), "s")
    rng = np.random.default_rng(seed + 1)
    ids = [engine_bench.user_id(i) for i in range(users)]
    for _group, _pos, batch_of in engine_bench.ingest_rounds(rng, population, ids, 25):
        for uid, events in batch_of.items():
            engine.interact(uid, events)


def calls(users: list[str], topics: list[str]) -> dict[str, Callable[[Engine, int], list[Any]]]:
    return {
        "recommend": lambda e, i: e.recommend(users[i], 10),
        "recommend, topic filter": lambda e, i: e.recommend(users[i], 10, {"topic": topics[i]}),
        "recommend, diversity 0.3": lambda e, i: e.recommend(users[i], 10, diversity=0.3),
        "search, personalized": lambda e, i: e.search(f"{topics[i]} story", 10, user_id=users[i]),
    }


def spread(ms: np.ndarray) -> str:
    return f"{np.percentile(ms, 50):.2f} / {np.percentile(ms, 99):.2f}"


# bumped when what the working tree's writes store changes, so that a store written
# before is built again (2: user records keep the head's answer, engine/head_answer.py)
STORE_VERSION = 2


def cached_store(cache: Path, items: int, users: int, seed: int) -> Path:
    """The store of this size and seed under ``cache`` (``build_store``, the first time:
    the A/B scripts of this folder share it)."""
    store = cache / f"{items}-{users}-{seed}-v{STORE_VERSION}"
    if not store.exists():
        print(f"building {store} (once)", flush=True)
        store.parent.mkdir(parents=True, exist_ok=True)
        build_store(store, items, users, seed)
    return store


@contextmanager
def engines_on_copies(
    store: Path, work: Path, opening: Mapping[str, Callable[[Path], Engine]]
) -> Iterator[dict[str, Engine]]:
    """A copy of ``store`` under ``work`` for each name, opened by its function (the
    A/B scripts compare settings on copies of one store); on leaving, every engine
    is closed and the copies removed."""
    shutil.rmtree(work, ignore_errors=True)
    engines: dict[str, Engine] = {}
    try:
        for k, (name, open_copy) in enumerate(opening.items()):
            shutil.copytree(store, work / str(k))
            engines[name] = open_copy(work / str(k))
        yield engines
    finally:
        for engine in engines.values():
            engine.close()
        shutil.rmtree(work, ignore_errors=True)


def call_inputs(users: int, count: int, seed: int) -> tuple[list[str], list[str]]:
    """The user and the topic filter of each of ``count`` calls (the same calls for
    every setting compared)."""
    rng = np.random.default_rng(seed + 4)
    chosen = [engine_bench.user_id(int(u)) for u in rng.integers(users, size=count)]
    topics = [f"t{int(t)}" for t in rng.integers(len(engine_bench.TOPIC_NAMES), size=count)]
    return chosen, topics


def in_turn(
    engines: dict[str, Engine], call: Callable[[Engine, int], Any], warmup: int, count: int
) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    """Calls 0 to ``warmup`` - 1 untimed on every engine, then calls ``warmup`` to
    ``count`` - 1 on every engine, which goes first rotating from call to call (the
    VM's speed drifts between processes more than the changes these scripts measure).
    Returns each engine's milliseconds per call and each timed call's results by
    engine."""
    names = list(engines)
    for i in range(warmup):
        for engine in engines.values():
            call(engine, i)
    took: dict[str, list[float]] = {name: [] for name in names}
    results: list[dict[str, Any]] = []
    for i in range(warmup, count):
        turn = i % len(names)
        found = {}
        for name in names[turn:] + names[:turn]:
            start = time.perf_counter()
            found[name] = call(engines[name], i)
            took[name].append(1e3 * (time.perf_counter() - start))
        results.append(found)
    return {name: np.asarray(ms) for name, ms in took.items()}, results


def compare(engines: dict[str, Engine], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each call kind on both engines in turn; one summary row per kind."""
    count = args.calls + args.warmup
    users, topics = call_inputs(args.users, count, args.seed)
    rows = []
    for kind, call in calls(users, topics).items():
        took, results = in_turn(engines, call, args.warmup, count)
        ids = [[[r.item_id for r in found[c]] for c in CODES] for found in results]
        same = sum(a == b for a, b in ids)
        a, b = (took[c] for c in CODES)
        rows.append(
            {
                "call": kind,
                "float32 p50 / p99 (ms)": spread(a),
                "float16 p50 / p99 (ms)": spread(b),
                "p50 ratio": round(float(np.percentile(b, 50) / np.percentile(a, 50)), 3),
                "median per-call ratio": round(float(np.median(b / a)), 3),
                "identical lists": f"{same} of {args.calls}",
            }
        )
        print(rows[-1], flush=True)
    return rows


def open_copy(path: Path, codes: str) -> Engine:
    """A copy of the store with an index of these codes, rebuilt: both indexes are
    trained on the same sample, so they have the same lists (the stored one was
    trained as the catalog grew) and differ only in their codes."""
    config = EngineConfig(index_kind="ivf", ivf_codes=codes)  # type: ignore[arg-type]
    engine = Engine(path, config, encoder=engine_bench.SyntheticEncoder())
    engine.catalog.keeper.rebuild()
    engine.catalog.keeper.warm_up()
    return engine


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_500)
    p.add_argument("--calls", type=int, default=500, help="timed calls per kind and setting")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--cache", type=Path, default=CACHE, help="where the built store is kept")
    p.add_argument("--work", type=Path, help="where the two copies go (default: beside it)")
    args = p.parse_args(argv)
    store = cached_store(args.cache, args.items, args.users, args.seed)
    work = args.work or args.cache / "copies"
    opening = {codes: functools.partial(open_copy, codes=codes) for codes in CODES}
    with engines_on_copies(store, work, opening) as engines:
        rows = compare(engines, args)
    header = list(rows[0])
    print(harness.markdown_table(header, [[str(r[h]) for h in header] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
