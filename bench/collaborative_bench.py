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
10-150 events a user). The targets (issue 20) are stated at ML-1M scale.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import harness
import numpy as np

from ownrank import Engine, EngineConfig

LAYERS = {"off": "popularity", "on": "collaborative"}  # label -> shared_statistics
Users = list[tuple[str, list[dict[str, Any]]]]


def ml_1m_half_training() -> tuple[list[dict[str, Any]], Users]:
    """The catalog and every training user (id, events oldest first) of ml-1m-half's
    chrono20 split, as ``bench/quality.py`` ingests them (also bench/record_size.py's)."""
    from eval_data import load_dataset
    from protocols import chrono20
    from quality import catalog_items, user_histories

    dataset = load_dataset("ml-1m-half")
    split = chrono20(dataset.ratings)
    return catalog_items(dataset, split), user_histories(split)


def synthetic(items: int, users: int, seed: int) -> tuple[Any, list[dict[str, Any]], Users]:
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
    return SyntheticEncoder(), catalog, out


def interact_all(engine: Engine, uid: str, events: list[dict[str, Any]]) -> None:
    for lo in range(0, len(events), 1000):
        engine.interact(uid, events[lo : lo + 1000])


def alternate(
    engines: dict[str, Engine], calls: Sequence[Callable[[Engine], Any]]
) -> dict[str, list[float]]:
    """Each call on every engine in turn (the order flips every call); wall times."""
    times: dict[str, list[float]] = {layer: [] for layer in engines}
    for k, call in enumerate(calls):
        for layer in engines if k % 2 == 0 else reversed(engines):
            t0 = time.perf_counter()
            call(engines[layer])
            times[layer].append(time.perf_counter() - t0)
    return times


def measure(run: harness.Run, args: argparse.Namespace) -> None:
    filters: dict[str, Any] | None = None
    if args.synthetic:
        encoder, catalog, users = synthetic(args.synthetic, args.users, args.seed)
    else:
        from quality import cached_encoder

        catalog, users = ml_1m_half_training()
        encoder, filters = cached_encoder("ml-1m-half"), {"candidate": True}
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory(dir=args.data_dir) as tmp:
        engines = {
            layer: Engine(Path(tmp) / mode, EngineConfig(shared_statistics=mode), encoder=encoder)  # type: ignore[arg-type]
            for layer, mode in LAYERS.items()
        }
        try:
            for start in range(0, len(catalog), 1000):
                for engine in engines.values():
                    engine.catalog.upsert(catalog[start : start + 1000])
            for engine in engines.values():
                engine.catalog.neighbours.update()
            t0 = time.perf_counter()
            ingest = [partial(interact_all, uid=uid, events=ev) for uid, ev in users]
            ingest_times = alternate(engines, ingest)
            print(f"ingest done in {time.perf_counter() - t0:.0f} s", flush=True)
            picks = rng.choice(len(users), size=min(args.queries, len(users)), replace=False)
            ranked = [users[int(k)][0] for k in picks]
            recommend = [lambda e, u=uid: e.recommend(u, 10, filters=filters) for uid in ranked]
            alternate(engines, recommend[: args.warmup])
            rec_times = alternate(engines, recommend)
            statistic = engines["on"].info(check_items=False)["shared_statistics"]["collaborative"]
            records = {layer: e.diagnostics.record_sizes() for layer, e in engines.items()}
            victims = [users[int(k)][0] for k in rng.choice(len(users), args.erase, replace=False)]
            erase_times = alternate(engines, [lambda e, u=u: e.erase(u) for u in victims])
        finally:
            for engine in engines.values():
                engine.close()
    events = sum(len(ev) for _uid, ev in users)
    run.add("users", len(users), "count", layer="both")
    run.add("events", events, "count", layer="both")
    for layer in LAYERS:
        run.add("ingest", events / sum(ingest_times[layer]), "events/s", layer=layer)
        run.latency("ingest per user", ingest_times[layer], layer=layer, mean_max=True)
        run.latency("recommend", rec_times[layer], layer=layer, mean_max=True)
        run.latency("erase", erase_times[layer], layer=layer, mean_max=True)
        sizes = records[layer]
        run.add("record median", float(np.median(sizes)), "B", layer=layer)
        run.add("record p99", float(np.percentile(sizes, 99)), "B", layer=layer)
        run.add("record max", max(sizes), "B", layer=layer)
    run.add("statistic rows", statistic["rows"], "count", layer="on")
    run.add("statistic pair entries", statistic["entries"], "count", layer="on")
    run.add("statistic size", statistic["bytes"] / 2**20, "MiB", layer="on")

    def on_off(times: dict[str, list[float]], q: float) -> float:
        return harness.percentile(times["on"], q) / harness.percentile(times["off"], q)

    run.add("recommend p50 on/off", on_off(rec_times, 50), "ratio")
    run.add("recommend p99 on/off", on_off(rec_times, 99), "ratio")
    run.add("ingest on/off", sum(ingest_times["off"]) / sum(ingest_times["on"]), "ratio")
    run.add("erase p99 on/off", on_off(erase_times, 99), "ratio")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--synthetic", type=int, default=0, help="synthetic catalog size")
    parser.add_argument("--users", type=int, default=10_000, help="synthetic users")
    parser.add_argument("--queries", type=int, default=1000, help="recommend calls per store")
    parser.add_argument("--erase", type=int, default=300, help="users erased per store")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="200 calls, 100 erasures")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None, help="where the stores go")
    parser.add_argument("--out", type=Path, help="results file")
    args = parser.parse_args(argv)
    if args.quick:
        args.queries, args.erase = 200, 100
    stem = "collaborative_bench_synthetic" if args.synthetic else "collaborative_bench"
    args.out = args.out or harness.default_out(stem, args.quick)
    run = harness.Run("collaborative_bench", vars(args), quick=args.quick)
    data = f"synthetic, {args.synthetic:,} items" if args.synthetic else "ml-1m-half chrono20"
    print(f"== {data}", flush=True)
    measure(run, args)
    latency = [f"{op} {m}" for op in ("recommend", "erase") for m in ("p50", "p99", "mean")]
    run.table(
        f"Layer off (popularity) vs on (collaborative): {data}",
        by=["layer"],
        metrics=["ingest", "ingest per user p50", *latency, "record median", "record p99"],
        plot=True,
    )
    ratios = [f"{m} on/off" for m in ("recommend p50", "recommend p99", "ingest", "erase p99")]
    run.table("On / off", by=[], metrics=ratios)
    run.table("Also measured", by=["layer"], metrics=[
        "users", "events", "ingest per user calls", "ingest per user p99", "ingest per user mean",
        "ingest per user max", "recommend calls", "recommend max", "erase calls", "erase max",
        "record max", "statistic rows", "statistic pair entries", "statistic size",
    ])  # fmt: skip
    run.target("ingest on/off", "ingest on/off", ">=", 0.6, source="issue 20")
    run.target("recommend p50 on/off", "recommend p50 on/off", "<=", 1.5, source="issue 20")
    where = {"layer": "on"}
    run.target("erase p99, layer on", "erase p99", "<=", 25.0, where, source="issue 20")
    run.finish(args.out)


if __name__ == "__main__":
    main()
