"""The collaborative layer on vs off, in one run: ingest, recommend, erase, sizes.

Two stores side by side, fed the same users in the same order: one with
``shared_statistics="popularity"`` (the layer off), one with ``"collaborative"``
(on); every other setting is the default. Each user's events go to one store
and then the other, each recommend and each erase alternates between them, so
the VM's drifting speed hits both alike; the ratios are the result.

    python bench/collaborative_bench.py                     # ml-1m-half (ML-1M scale)
    python bench/collaborative_bench.py --synthetic 100000  # 100k items, 10k users
    python bench/collaborative_bench.py --quick             # fewer calls

ml-1m-half: the catalog and every user's ratings of the chrono20 training data
(as ``bench/quality.py`` ingests them, item embeddings from its cache); recommend
is the one ``quality.py`` times (filtered to the protocol's candidates).
Synthetic: ``bench/engine_bench.py``'s catalog and users (clustered vectors,
10-150 events a user). Targets (issue 20): recommend p50 on / off <= 1.5,
ingest events/s on / off >= 0.6, erase p99 <= 25 ms at ML-1M scale.
Results go to ``bench/results/collaborative_bench[_synthetic].json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ownrank import Engine, EngineConfig

RESULTS = Path(__file__).resolve().parent / "results"
MODES = ("popularity", "collaborative")
Users = list[tuple[str, list[dict[str, Any]]]]


def ml_1m_half() -> tuple[Any, list[dict[str, Any]], Users, dict[str, Any]]:
    """Encoder, catalog, users (id, events oldest first) and the recommend filter, as
    ``bench/quality.py`` ingests and ranks them."""
    from bench.eval_data import default_data_dir, load_dataset
    from bench.protocols import chrono20
    from bench.quality import RESULTS as QUALITY_RESULTS
    from bench.quality import CachedEncoder, catalog_items, user_histories

    dataset = load_dataset("ml-1m-half", default_data_dir())
    split = chrono20(dataset.ratings)
    encoder = CachedEncoder(QUALITY_RESULTS / "cache" / "ml-1m-half-embeddings.npz")
    return encoder, catalog_items(dataset, split), user_histories(split), {"candidate": True}


def synthetic(items: int, users: int, seed: int) -> tuple[Any, list[dict[str, Any]], Users, None]:
    from catalog_bench import SyntheticEncoder, item_batches
    from engine_bench import Population, make_history, user_id

    catalog = [item for batch in item_batches(items, 1000, seed + 100, "s") for item in batch]
    topics = np.array([int(str(i["properties"]["topic"])[1:]) for i in catalog])
    population = Population(topics, "s")
    rng = np.random.default_rng(seed)
    now = time.time()
    out: Users = [
        (user_id(i), make_history(rng, population, int(rng.integers(10, 151)), now))
        for i in range(users)
    ]
    return SyntheticEncoder(), catalog, out, None


def latency(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "calls": len(ms),
    }


def alternate(
    engines: dict[str, Engine], calls: Sequence[Callable[[Engine], Any]]
) -> dict[str, list[float]]:
    """Each call on every engine in turn (the order flips every call); wall times."""
    times: dict[str, list[float]] = {mode: [] for mode in engines}
    for k, call in enumerate(calls):
        for mode in MODES if k % 2 == 0 else MODES[::-1]:
            t0 = time.perf_counter()
            call(engines[mode])
            times[mode].append(time.perf_counter() - t0)
    return times


def record_sizes(engine: Engine) -> dict[str, float]:
    with engine._env.read() as txn:
        sizes = [len(raw) for _key, raw in engine._users.records.scan(txn)]
    return {
        "median_bytes": float(np.median(sizes)),
        "p99_bytes": float(np.percentile(sizes, 99)),
        "max_bytes": float(max(sizes)),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.synthetic:
        encoder, catalog, users, filters = synthetic(args.synthetic, args.users, args.seed)
        label = f"synthetic {args.synthetic} items, {args.users} users"
    else:
        encoder, catalog, users, filters = ml_1m_half()
        label = f"ml-1m-half chrono20 training data, {len(users)} users"
    print(f"== {label}", flush=True)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        engines = {
            mode: Engine(Path(tmp) / mode, EngineConfig(shared_statistics=mode), encoder=encoder)  # type: ignore[arg-type]
            for mode in MODES
        }
        try:
            for start in range(0, len(catalog), 1000):
                for engine in engines.values():
                    engine.catalog.upsert(catalog[start : start + 1000])
            for engine in engines.values():
                engine.catalog.neighbours.update()

            def ingest(uid: str, events: list[dict[str, Any]]) -> Callable[[Engine], Any]:
                def call(engine: Engine) -> None:
                    for lo in range(0, len(events), 1000):
                        engine.interact(uid, events[lo : lo + 1000])

                return call

            t0 = time.perf_counter()
            ingest_times = alternate(engines, [ingest(uid, ev) for uid, ev in users])
            print(f"ingest done in {time.perf_counter() - t0:.0f} s", flush=True)
            n_events = sum(len(ev) for _uid, ev in users)
            picks = rng.choice(len(users), size=min(args.queries, len(users)), replace=False)
            ranked = [users[int(k)][0] for k in picks]

            def recommend(uid: str) -> Callable[[Engine], Any]:
                return lambda engine: engine.recommend(uid, 10, filters=filters)

            for uid in ranked[: args.warmup]:
                for engine in engines.values():
                    recommend(uid)(engine)
            rec_times = alternate(engines, [recommend(uid) for uid in ranked])
            with engines["collaborative"]._env.read() as txn:
                statistic = engines["collaborative"]._shared.co.size(txn)
            records = {mode: record_sizes(engine) for mode, engine in engines.items()}
            victims = [users[int(k)][0] for k in rng.choice(len(users), args.erase, replace=False)]
            erase_times = alternate(engines, [lambda e, u=u: e.erase(u) for u in victims])
        finally:
            for engine in engines.values():
                engine.close()
    result: dict[str, Any] = {"data": label, "events": n_events, "modes": {}}
    for mode in MODES:
        total = sum(ingest_times[mode])
        result["modes"][mode] = {
            "ingest_events_per_s": round(n_events / total, 1),
            "ingest_user_ms": latency(ingest_times[mode]),
            "recommend": latency(rec_times[mode]),
            "erase": latency(erase_times[mode]),
            "records": records[mode],
        }
    on, off = result["modes"]["collaborative"], result["modes"]["popularity"]
    result["collaborative_statistic"] = statistic
    result["ratios_on_over_off"] = {
        "recommend_p50": round(on["recommend"]["p50_ms"] / off["recommend"]["p50_ms"], 3),
        "recommend_p99": round(on["recommend"]["p99_ms"] / off["recommend"]["p99_ms"], 3),
        "ingest_events_per_s": round(on["ingest_events_per_s"] / off["ingest_events_per_s"], 3),
        "erase_p99": round(on["erase"]["p99_ms"] / off["erase"]["p99_ms"], 3),
    }
    return result


def print_result(result: dict[str, Any]) -> None:
    print(f"\n{result['data']}: {result['events']} events")
    columns = ("ingest ev/s", "rec p50", "rec p99", "erase p50", "erase p99", "record p50")
    print(f"{'':14} " + " ".join(f"{c:>12}" for c in columns))
    for mode, r in result["modes"].items():
        print(
            f"{mode:14} {r['ingest_events_per_s']:12.0f} {r['recommend']['p50_ms']:12.2f} "
            f"{r['recommend']['p99_ms']:12.2f} {r['erase']['p50_ms']:12.2f} "
            f"{r['erase']['p99_ms']:12.2f} {r['records']['median_bytes']:12.0f}"
        )
    ratios = result["ratios_on_over_off"]
    print(
        f"on / off: recommend p50 {ratios['recommend_p50']:.2f}x (target <= 1.5), "
        f"p99 {ratios['recommend_p99']:.2f}x; ingest {ratios['ingest_events_per_s']:.2f}x "
        f"(target >= 0.6); erase p99 {ratios['erase_p99']:.2f}x"
    )
    stat = result["collaborative_statistic"]
    print(
        f"collaborative statistic: {stat['rows']} rows, {stat['entries']} pair entries, "
        f"{stat['bytes'] / 2**20:.1f} MiB"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--synthetic", type=int, default=0, help="synthetic catalog size")
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users")
    parser.add_argument("--queries", type=int, default=1000, help="recommend calls per store")
    parser.add_argument("--erase", type=int, default=300, help="users erased per store")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="200 calls, 100 erasures")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.erase = 200, 100
    result = run(args)
    print_result(result)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "collaborative_bench_synthetic.json" if args.synthetic else "collaborative_bench.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS / name}")


if __name__ == "__main__":
    main()
