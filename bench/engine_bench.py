"""Engine benchmark: the per-user SDK surface on a synthetic catalog and synthetic users.

One data directory (temporary, deleted afterwards) holding an
``ownrank.Engine(tmp, EngineConfig(), encoder=SyntheticEncoder())`` with a catalog
of N synthetic items (``bench/catalog_bench.py``: clustered 384-d vectors, items
with properties ``{"topic": "t<k>", "n": int}``), upserted in batches of 1000.
Default config throughout, so at 100k items the index is HNSW, at 20k exact.

Phases, in this order:

1. ``interact``: U users with 10-150 events each (deterministic rng; mostly click /
   like / high ratings on items of 1-3 preferred topics, skewed towards each
   topic's head; some dislikes / skips / low ratings elsewhere), sent with
   ``engine.interact`` in calls of 25 events, round-robin over groups of 100
   users. Ingest rate (events/s) and per-call latency (also by record size).
   ``interact_bulk``: other users, sent through ``engine.interact_many`` (bulk
   ingest: 100 users x 25 events per call, one group commit).
2. ``records``: every user record's stored size (the raw LMDB value) and the
   size of its parts; users pushed past the caps (600 item events; 600 long
   search queries) to show ``max_events`` / ``max_record_bytes`` hold.
3. ``recommend``: random known users (plain, topic-filtered, diversity=0.3),
   unknown users (cold start), and ``recommend_from_history`` (50 events).
4. ``search``: text queries, personalized (``user_id=``) and not.
5. ``profiles``: cProfile of a sample of each operation, after the timings.
6. ``erase``: erasure of distinct users with histories (it deletes them).
7. ``reopen``: the store closed and reopened, without and with the warm-up at open:
   open time, first recommend, first topic-filtered recommend, and the next calls.

Usage::

    python bench/engine_bench.py --quick        # 20k items, 2k users (~1-2 minutes)
    python bench/engine_bench.py                # 100k items, 10k users

The machine's load average is recorded at start and end, and each phase
records how many cores other processes kept busy meanwhile (another benchmark
on a 2-core machine skews every latency here). Results are printed and written
to ``bench/results/engine_bench.json`` (``engine_bench_quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lmdb
import machine_info
import msgpack
import numpy as np

# bench/ is sys.path[0] when this file is run as a script
from catalog_bench import (
    TOPIC_NAMES,
    SyntheticEncoder,
    TimedEncoder,
    Watch,
    item_batches,
    latency_stats,
    machine,
    make_query,
    memory,
    say,
    sizes,
)

from ownrank import Engine, EngineConfig
from ownrank.engine.record_cipher import is_sealed, unseal
from ownrank.engine.user_record import UserRecord

Json = dict[str, Any]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
EVENTS_PER_CALL = 25  # default of --events-per-call
INTERLEAVE = 100  # users whose calls are interleaved round-robin
HISTORY_DAYS = 60
TARGETS = {
    "recommend_p99_ms": 10.0,
    "ingest_events_per_s": 5_000.0,
    "erase_p99_ms": 5.0,
    "median_record_bytes": 4_080,
}


# -- synthetic users --------------------------------------------------------------------------


class Population:
    """Item ids by topic, each topic's items skewed (Zipf-like) so popularity means something."""

    def __init__(self, topics: np.ndarray, prefix: str) -> None:
        self.prefix = prefix
        self.count = len(topics)
        self.by_topic = [np.flatnonzero(topics == t) for t in range(len(TOPIC_NAMES))]
        self.cum = [np.cumsum(1.0 / (np.arange(len(ix)) + 10.0) ** 0.8) for ix in self.by_topic]

    def item(self, rng: np.random.Generator, topic: int) -> str:
        cum = self.cum[topic]
        k = int(np.searchsorted(cum, rng.random() * cum[-1], side="right"))
        return f"{self.prefix}{int(self.by_topic[topic][min(k, len(cum) - 1)]):07d}"

    def any_item(self, rng: np.random.Generator) -> str:
        return f"{self.prefix}{int(rng.integers(self.count)):07d}"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_history(
    rng: np.random.Generator, pop: Population, n_events: int, now: float
) -> list[dict[str, Any]]:
    """One user's events, oldest first, as an SDK client would send them (dicts)."""
    n_topics = int(rng.integers(1, 4))
    liked = rng.choice(len(TOPIC_NAMES), size=n_topics, replace=False)
    start = now - HISTORY_DAYS * 86_400 * rng.random()
    stamps = np.sort(rng.uniform(start, now, size=n_events))
    events: list[dict[str, Any]] = []
    for ts in stamps:
        r = rng.random()
        if r < 0.80:  # positive, on a preferred topic
            item = pop.item(rng, int(liked[int(rng.integers(n_topics))]))
            if r < 0.55:
                event: dict[str, Any] = {"kind": "click", "item_id": item}
            elif r < 0.72:
                event = {"kind": "like", "item_id": item}
            else:
                event = {"kind": "rating", "item_id": item, "value": float(rng.integers(4, 6))}
        elif r < 0.88:
            event = {"kind": "skip", "item_id": pop.any_item(rng)}
        elif r < 0.95:
            event = {"kind": "dislike", "item_id": pop.any_item(rng)}
        else:
            event = {"kind": "rating", "item_id": pop.any_item(rng), "value": 1.0 + rng.integers(3)}
        event["timestamp"] = _iso(float(ts))
        events.append(event)
    return events


def user_id(i: int) -> str:
    return f"u{i:06d}"


# -- helpers -------------------------------------------------------------------------------


def percentiles(values: Sequence[float], unit: str = "bytes") -> Json:
    a = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {
        "count": int(a.size),
        f"median_{unit}": round(float(p50), 1),
        f"p90_{unit}": round(float(p90), 1),
        f"p99_{unit}": round(float(p99), 1),
        f"max_{unit}": round(float(a.max()), 1),
        f"mean_{unit}": round(float(a.mean()), 1),
    }


def time_calls(
    fn: Callable[[int], Any], count: int, warmup: int
) -> tuple[Json, list[float], list[Any]]:
    """Latency of ``fn(i)`` for i in 0..count-1 after ``warmup`` untimed calls (i < 0)."""
    for i in range(warmup):
        fn(-1 - i)
    latencies: list[float] = []
    results: list[Any] = []
    for i in range(count):
        start = time.perf_counter()
        out = fn(i)
        latencies.append(time.perf_counter() - start)
        results.append(out)
    return latency_stats(latencies), latencies, results


def profile(fn: Callable[[int], Any], count: int, top: int, callers_of: str = "") -> str:
    """cProfile of ``count`` calls of ``fn``: the top functions by cumulative time
    (and, with ``callers_of``, who calls the functions matching that pattern)."""
    prof = cProfile.Profile()
    prof.enable()
    for i in range(count):
        fn(i)
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    lines = buf.getvalue().splitlines()
    # drop pstats' preamble up to the "ncalls" header, keep the total line
    total = next((ln.strip() for ln in lines if "function calls" in ln), "")
    start = next((k for k, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    text = "\n".join([total, *(ln.rstrip() for ln in lines[start:] if ln.strip())])
    if callers_of:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().print_callers(callers_of)
        lines = buf.getvalue().splitlines()
        start = next((k for k, ln in enumerate(lines) if "was called by" in ln), len(lines))
        body = [ln.rstrip() for ln in lines[start + 2 :] if ln.strip()]
        text += f"\ncallers of {callers_of} (ncalls, tottime, cumtime):\n" + "\n".join(body)
    return text


def lmdb_value_size(engine: Engine, uid: str) -> int | None:
    with engine._env.read() as txn:
        raw = engine._users.records.raw(txn, engine._users.key(uid))
        return None if raw is None else len(raw)


def read_costs(engine: Engine, count: int) -> Json:
    """Microseconds per record read of each step after the LMDB get, over ``count``
    users: unwrapping the data key, opening the sealed record, decoding it. What
    sealing adds to every read is the first two."""
    steps: dict[str, list[float]] = {"unwrap_key": [], "unseal": [], "decode": []}
    with engine._env.read() as txn:
        for i in range(count):
            key = engine._users.key(user_id(i))
            found = engine._users.records.raw(txn, key)
            if found is None:
                continue
            raw = found
            plain = raw
            if is_sealed(raw):
                t0 = time.perf_counter()
                data_key = engine._users.keystore.get(key)
                t1 = time.perf_counter()
                plain = unseal(data_key, key, raw)
                t2 = time.perf_counter()
                steps["unwrap_key"].append(t1 - t0)
                steps["unseal"].append(t2 - t1)
            t3 = time.perf_counter()
            UserRecord.from_bytes(plain)
            steps["decode"].append(time.perf_counter() - t3)
    return {
        name: {
            "count": len(v),
            "p50_us": round(float(np.percentile(v, 50)) * 1e6, 2),
            "mean_us": round(float(np.mean(v)) * 1e6, 2),
        }
        for name, v in steps.items()
        if v
    }


def record_parts(engine: Engine, uid: str) -> Json:
    """Bytes of the record's parts (events, model, ledger) as msgpack; ``total`` is the
    stored (sealed) value."""
    key = engine._users.key(uid)
    with engine._env.read() as txn:
        raw = engine._users.records.raw(txn, key)
    record, _data_key = engine._users.records.decode(key, raw)
    assert record is not None
    body = msgpack.unpackb(record.to_bytes(), raw=False)
    parts = {k: len(msgpack.packb(body.get(k), use_bin_type=True)) for k in ("e", "m", "l")}
    return {
        "total": len(raw),
        "events": parts["e"],
        "model": parts["m"],
        "ledger": parts["l"],
        "n_events": len(body["e"]),
        "n_ledger_items": len(body["l"].get("pop", [])),
    }


# -- phases ---------------------------------------------------------------------------------


def build_catalog(engine: Engine, encoder: TimedEncoder, args: argparse.Namespace) -> Json:
    topics = np.zeros(args.items, dtype=np.int64)
    elapsed = 0.0
    k = 0
    for items in item_batches(args.items, 1000, args.seed + 100, "s"):
        for item in items:
            topics[k] = int(str(item["properties"]["topic"])[1:])
            k += 1
        start = time.perf_counter()
        engine.catalog.upsert(items)
        elapsed += time.perf_counter() - start
    args.population = Population(topics, "s")
    sync_s = time.perf_counter()
    engine.catalog.keeper.sync()
    sync_s = time.perf_counter() - sync_s
    # the content-neighbour lists: kept in step by cheap writes, by a background
    # thread past the sync budget; the ranking phases start once they are current
    wait_s = time.perf_counter()
    engine.catalog.neighbours.update()
    wait_s = time.perf_counter() - wait_s
    rebuild_s = time.perf_counter()
    if args.neighbour_rebuild:
        engine.catalog.neighbours.rebuild()
    rebuild_s = time.perf_counter() - rebuild_s
    status = engine.catalog.neighbours.status()
    say(
        f"neighbour lists: {status.lists} of {status.k}, current {status.current}; "
        f"{wait_s:.1f} s waited after the last upsert"
        + (f"; a rebuild from scratch took {rebuild_s:.1f} s" if args.neighbour_rebuild else "")
    )
    return {
        "items": args.items,
        "batch": 1000,
        "neighbours_wait_seconds": round(wait_s, 2),
        "neighbours_rebuild_seconds": round(rebuild_s, 2) if args.neighbour_rebuild else None,
        "seconds": round(elapsed, 2),
        "items_per_s": round(args.items / elapsed, 1),
        "encode_seconds": round(encoder.seconds, 2),
        "sync_seconds": round(sync_s, 3),
    }


def phase_interact_bulk(engine: Engine, args: argparse.Namespace) -> Json:
    """Bulk ingest: ``engine.interact_many`` with INTERLEAVE users per call (each with
    ``events_per_call`` events), for other users than the ``interact`` phase."""
    rng = np.random.default_rng(args.seed + 2)
    pop: Population = args.population
    now = time.time()
    call_lat: list[float] = []
    sent = 0
    phase_start = time.perf_counter()
    for group in range(0, args.bulk_users, INTERLEAVE):
        uids = [f"bulk-{i:07d}" for i in range(group, min(args.bulk_users, group + INTERLEAVE))]
        histories = [make_history(rng, pop, int(rng.integers(10, 151)), now) for _ in uids]
        for pos in range(0, 150, args.events_per_call):
            batch = {
                uid: h[pos : pos + args.events_per_call]
                for uid, h in zip(uids, histories, strict=True)
                if h[pos : pos + args.events_per_call]
            }
            if not batch:
                break
            start = time.perf_counter()
            engine.interact_many(batch)
            call_lat.append(time.perf_counter() - start)
            sent += sum(len(v) for v in batch.values())
    wall = time.perf_counter() - phase_start
    return {
        "users": args.bulk_users,
        "users_per_call": INTERLEAVE,
        "events_per_user_per_call": args.events_per_call,
        "events_sent": sent,
        "calls": len(call_lat),
        "phase_seconds": round(wall, 2),
        "events_per_s": round(sent / wall, 1),
        "call_latency": latency_stats(call_lat),
    }


def phase_interact(engine: Engine, args: argparse.Namespace) -> Json:
    rng = np.random.default_rng(args.seed + 1)
    pop: Population = args.population
    now = time.time()
    call_lat: list[float] = []
    retained_before: list[int] = []  # events already in the record at each call
    sent = accepted = 0
    call_seconds = 0.0
    phase_start = time.perf_counter()
    for group in range(0, args.users, INTERLEAVE):
        uids = [user_id(i) for i in range(group, min(args.users, group + INTERLEAVE))]
        histories = [make_history(rng, pop, int(rng.integers(10, 151)), now) for _ in uids]
        pos = [0] * len(uids)
        pending = True
        while pending:
            pending = False
            for j, uid in enumerate(uids):
                events = histories[j][pos[j] : pos[j] + args.events_per_call]
                if not events:
                    continue
                pending = True
                start = time.perf_counter()
                report = engine.interact(uid, events)
                dt = time.perf_counter() - start
                call_lat.append(dt)
                call_seconds += dt
                retained_before.append(min(pos[j], engine.config.max_events))
                pos[j] += len(events)
                sent += len(events)
                accepted += report.accepted
        if args.progress and (group // INTERLEAVE) % 10 == 9:
            say(
                f"  {group + len(uids)} users, {sent} events, "
                f"{sent / (time.perf_counter() - phase_start):.0f} events/s so far"
            )
    wall = time.perf_counter() - phase_start
    stats = latency_stats(call_lat)
    lat = np.asarray(call_lat) * 1e3
    before = np.asarray(retained_before)
    by_size: Json = {}
    for lo, hi in ((0, 25), (25, 50), (50, 100), (100, 151)):
        sel = lat[(before >= lo) & (before < hi)]
        if sel.size:
            by_size[f"{lo}-{hi - 1}"] = {
                "calls": int(sel.size),
                "p50_ms": round(float(np.percentile(sel, 50)), 3),
                "p99_ms": round(float(np.percentile(sel, 99)), 3),
            }
    return {
        "users": args.users,
        "events_sent": sent,
        "events_accepted": accepted,
        "calls": len(call_lat),
        "events_per_call": args.events_per_call,
        "phase_seconds": round(wall, 2),
        "interact_seconds": round(call_seconds, 2),
        "events_per_s": round(sent / wall, 1),
        "events_per_s_in_calls": round(sent / call_seconds, 1),
        "call_latency": stats,
        "call_latency_by_events_already_stored": by_size,
    }


def phase_records(engine: Engine, args: argparse.Namespace) -> Json:
    sizes_b: list[int] = []
    for i in range(args.users):
        size = lmdb_value_size(engine, user_id(i))
        if size is not None:
            sizes_b.append(size)
    out: Json = {"all_users": percentiles(sizes_b)}
    # parts of the users at the median / p99 / max size
    order = np.argsort(sizes_b, kind="stable")
    picks = {"median": order[len(order) // 2], "p99": order[int(len(order) * 0.99)]}
    picks["max"] = order[-1]
    out["parts"] = {name: record_parts(engine, user_id(int(k))) for name, k in picks.items()}
    out["read_costs"] = read_costs(engine, min(args.users, 1000))
    out["config"] = {
        "max_events": engine.config.max_events,
        "max_record_bytes": engine.config.max_record_bytes,
    }
    # past the caps: 600 item events, and 600 search events with long queries
    rng = np.random.default_rng(args.seed + 3)
    now = time.time()
    capped: Json = {}
    for kind in ("items", "queries"):
        retained, sizes_c, lat = [], [], []
        for u in range(args.cap_users):
            uid = f"cap-{kind}-{u}"
            if kind == "items":
                events = make_history(rng, args.population, 600, now)
            else:
                events = [
                    {
                        "kind": "search",
                        "query": " ".join(make_query(rng) for _ in range(6))[:400],
                        "timestamp": _iso(now - 600 + k),
                    }
                    for k in range(600)
                ]
            for start in range(0, len(events), EVENTS_PER_CALL):
                t0 = time.perf_counter()
                engine.interact(uid, events[start : start + EVENTS_PER_CALL])
                lat.append(time.perf_counter() - t0)
            record = engine._users.record(uid)
            assert record is not None
            retained.append(len(record.events))
            sizes_c.append(lmdb_value_size(engine, uid) or 0)
        capped[kind] = {
            "parts_of_last_user": record_parts(engine, uid),
            "users": args.cap_users,
            "events_sent_per_user": 600,
            "max_events_retained": max(retained),
            "min_events_retained": min(retained),
            "max_bytes": max(sizes_c),
            "median_bytes": float(np.median(sizes_c)),
            "call_latency": latency_stats(lat),
        }
    out["past_the_caps"] = capped
    out["cap_holds"] = all(
        c["max_events_retained"] <= engine.config.max_events
        and c["max_bytes"] <= engine.config.max_record_bytes
        for c in capped.values()
    )
    return out


def phase_recommend(engine: Engine, args: argparse.Namespace) -> Json:
    rng = np.random.default_rng(args.seed + 4)
    n_q = args.queries
    users = [user_id(int(u)) for u in rng.integers(args.users, size=n_q + args.warmup)]
    topics = [f"t{int(t)}" for t in rng.integers(len(TOPIC_NAMES), size=n_q + args.warmup)]
    out: Json = {}

    def pick(seq: list[str], i: int) -> str:
        return seq[i] if i >= 0 else seq[n_q - 1 - i]

    def short(results: list[Any]) -> int:
        return sum(1 for r in results if len(r) < 10)

    def plain(i: int) -> Any:
        return engine.recommend(pick(users, i), 10)

    first_filter_s = time.perf_counter()
    engine.recommend(users[0], 10, {"topic": topics[0]})
    out["first_filtered_call_seconds"] = round(time.perf_counter() - first_filter_s, 3)

    def filtered(i: int) -> Any:
        return engine.recommend(pick(users, i), 10, {"topic": pick(topics, i)})

    def diverse(i: int) -> Any:
        return engine.recommend(pick(users, i), 10, diversity=0.3)

    def cold(i: int) -> Any:
        return engine.recommend(f"cold-{i + args.warmup + 1}", 10)

    for name, fn in (
        ("plain", plain),
        ("topic_filter", filtered),
        ("diversity_0.3", diverse),
        ("cold_start", cold),
    ):
        stats, _lat, results = time_calls(fn, n_q, args.warmup)
        stats["short_results"] = short(results)
        if name == "topic_filter":
            stats["off_filter_results"] = sum(
                1
                for k, r in enumerate(results)
                for rec in r
                if rec.item.properties.get("topic") != topics[k]
            )
        if name == "plain":
            reasons: dict[str, int] = {}
            for r in results:
                for rec in r:
                    why = rec.explanation.get("retrieved_by", "?")
                    reasons[why] = reasons.get(why, 0) + 1
            stats["retrieved_by"] = reasons
        out[name] = stats
        say(
            f"recommend {name}: p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms, "
            f"mean {stats['mean_ms']:.2f} ms ({stats['count']} calls, "
            f"{stats['short_results']} with < 10)"
        )
    # stateless: a 50-event history in the call
    hrng = np.random.default_rng(args.seed + 5)
    now = time.time()
    histories = [make_history(hrng, args.population, 50, now) for _ in range(20)]
    count = max(50, n_q // 5)
    stats, _lat, _res = time_calls(
        lambda i: engine.recommend_from_history(histories[i % 20], 10), count, 10
    )
    out["from_history_50_events"] = stats
    say(
        f"recommend_from_history (50 events): p50 {stats['p50_ms']:.2f} ms, "
        f"p99 {stats['p99_ms']:.2f} ms"
    )
    return out


def phase_reopen(path: Path, config: EngineConfig, encoder: Any, args: argparse.Namespace) -> Json:
    """The first recommend after opening the store, without and with the warm-up at
    open (``EngineConfig.warm_up_on_open``), alternated twice each: open time, first
    plain call, first topic-filtered call, then the median of the next 20 calls."""
    rng = np.random.default_rng(args.seed + 11)
    runs: dict[str, list[Json]] = {"without_warm_up": [], "with_warm_up": []}
    for _round in range(2):
        for name, warm in (("without_warm_up", False), ("with_warm_up", True)):
            opened = time.perf_counter()
            with Engine(
                path, config.model_copy(update={"warm_up_on_open": warm}), encoder=encoder
            ) as engine:
                open_s = time.perf_counter() - opened
                users = []
                while len(users) < 21:  # users the erase phase left
                    uid = user_id(int(rng.integers(args.users)))
                    if engine._users.record(uid) is not None:
                        users.append(uid)
                topic = f"t{int(rng.integers(len(TOPIC_NAMES)))}"
                start = time.perf_counter()
                engine.recommend(users[0], 10)
                first = time.perf_counter() - start
                start = time.perf_counter()
                engine.recommend(users[0], 10, {"topic": topic})
                first_filtered = time.perf_counter() - start
                later = users[1:]
                stats, _lat, _res = time_calls(
                    lambda i, e=engine, u=later: e.recommend(u[i], 10), 20, 0
                )
            runs[name].append(
                {
                    "open_ms": round(open_s * 1e3, 1),
                    "first_recommend_ms": round(first * 1e3, 2),
                    "first_filtered_ms": round(first_filtered * 1e3, 2),
                    "next_20_p50_ms": stats["p50_ms"],
                }
            )
    for name, rows in runs.items():
        say(f"reopen {name}: {rows}")
    return runs


def phase_neighbour_paths(
    path: Path, config: EngineConfig, encoder: Any, args: argparse.Namespace
) -> Json:
    """Recommend with the neighbour score summed over the stored lists against the
    dense comparison (``content_neighbours=0``), same store and users, alternated
    twice each (the VM's speed drifts: compare within a round)."""
    rng = np.random.default_rng(args.seed + 12)
    count = max(100, args.queries // 2)
    users = [user_id(int(u)) for u in rng.integers(args.users, size=count + args.warmup)]
    topics = [f"t{int(t)}" for t in rng.integers(len(TOPIC_NAMES), size=count + args.warmup)]
    runs: dict[str, list[Json]] = {"lists": [], "dense": []}
    for _round in range(2):
        for name, k in (("lists", config.content_neighbours), ("dense", 0)):
            with Engine(
                path, config.model_copy(update={"content_neighbours": k}), encoder=encoder
            ) as engine:
                row: Json = {}
                for kind, filters in (("plain", None), ("topic_filter", True)):
                    stats, _lat, _res = time_calls(
                        lambda i, e=engine, f=filters: e.recommend(
                            users[i], 10, {"topic": topics[i]} if f else None
                        ),
                        count,
                        args.warmup,
                    )
                    row[kind] = {key: stats[key] for key in ("p50_ms", "p99_ms", "mean_ms")}
            runs[name].append(row)
            say(f"neighbour path {name}: {row}")
    return runs


def phase_search(engine: Engine, args: argparse.Namespace) -> Json:
    rng = np.random.default_rng(args.seed + 6)
    n_q = args.queries
    texts = [make_query(rng) for _ in range(n_q + args.warmup)]
    users = [user_id(int(u)) for u in rng.integers(args.users, size=n_q + args.warmup)]

    def idx(i: int) -> int:
        return i if i >= 0 else n_q - 1 - i

    out: Json = {}
    stats, _l, res = time_calls(
        lambda i: engine.search(texts[idx(i)], 10, user_id=users[idx(i)]), n_q, args.warmup
    )
    stats["short_results"] = sum(1 for r in res if len(r) < 10)
    out["personalized"] = stats
    stats, _l, res = time_calls(lambda i: engine.search(texts[idx(i)], 10), n_q, args.warmup)
    stats["short_results"] = sum(1 for r in res if len(r) < 10)
    out["unpersonalized"] = stats
    enc = SyntheticEncoder()
    stats, _l, _r = time_calls(lambda i: enc.encode([texts[idx(i)]]), n_q, args.warmup)
    out["synthetic_encode_only"] = stats
    for name in ("personalized", "unpersonalized", "synthetic_encode_only"):
        s = out[name]
        say(f"search {name}: p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms")
    return out


def phase_profiles(engine: Engine, args: argparse.Namespace) -> Json:
    """cProfile samples (after the timings, so they do not skew them)."""
    rng = np.random.default_rng(args.seed + 8)
    n = args.profile_calls
    users = [user_id(int(u)) for u in rng.integers(args.users, size=n)]
    topics = [f"t{int(t)}" for t in rng.integers(len(TOPIC_NAMES), size=n)]
    now = time.time()
    histories = [make_history(rng, args.population, 100, now) for _ in range(max(1, n // 4))]
    batches = [
        (f"prof-{k}", h[s : s + EVENTS_PER_CALL])
        for k, h in enumerate(histories)
        for s in range(0, len(h), EVENTS_PER_CALL)
    ]
    texts = [make_query(rng) for _ in range(n)]
    top = args.profile_top
    out = {
        "recommend": profile(
            lambda i: engine.recommend(users[i], 10), n, top, r"catalog_store.py.*\(get_item\)"
        ),
        "recommend_topic_filter": profile(
            lambda i: engine.recommend(users[i], 10, {"topic": topics[i]}), n, top
        ),
        "interact_25_events": profile(lambda i: engine.interact(*batches[i]), len(batches), top),
        "search_personalized": profile(
            lambda i: engine.search(texts[i], 10, user_id=users[i]), n, top
        ),
        "erase": profile(lambda i: engine.erase(f"prof-{i}"), len(histories), top),
    }
    return out


def commit_floor(root: Path, count: int) -> Json:
    """Latency of a durable (sync + metasync) LMDB commit of one small key, on the same
    filesystem: what any write of the engine pays at least."""
    path = root / "commit-floor"
    env = lmdb.open(str(path), map_size=2**26, subdir=True, sync=True, metasync=True)
    try:
        lat = []
        for i in range(count + 10):
            start = time.perf_counter()
            with env.begin(write=True) as txn:
                txn.put(b"k%d" % (i % 50), b"x" * 3000)
            if i >= 10:
                lat.append(time.perf_counter() - start)
    finally:
        env.close()
        shutil.rmtree(path, ignore_errors=True)
    return latency_stats(lat)


def phase_erase(engine: Engine, args: argparse.Namespace) -> Json:
    rng = np.random.default_rng(args.seed + 9)
    count = min(args.erase, args.users)
    victims = [user_id(int(u)) for u in rng.choice(args.users, size=count, replace=False)]
    before = engine._shared.users
    with engine._env.read() as txn:
        contributing_before = before(txn)
    stats, lat, receipts = time_calls(lambda i: engine.erase(victims[i]), count, 0)
    with engine._env.read() as txn:
        contributing_after = before(txn)
    existed = sum(1 for r in receipts if r.existed)
    gone = sum(1 for v in victims[:50] if engine._users.record(v) is None)
    ms = np.asarray(lat) * 1e3
    events = np.asarray([r.events_removed for r in receipts])
    units = np.asarray([r.shared_units_subtracted for r in receipts])
    stats.update(
        existed=existed,
        checked_gone_of_50=gone,
        mean_events_removed=round(float(events.mean()), 1),
        mean_shared_units_subtracted=round(float(units.mean()), 1),
        contributing_users_before=contributing_before,
        contributing_users_after=contributing_after,
        corr_latency_vs_units=round(float(np.corrcoef(ms, units)[0, 1]), 3)
        if units.std() > 0
        else None,
    )
    unknown, _l, _r = time_calls(lambda i: engine.erase(f"never-{i}"), min(200, count), 10)
    stats["unknown_user"] = unknown
    stats["lmdb_commit_floor"] = commit_floor(args.root, min(200, count))
    say(
        f"erase: p50 {stats['p50_ms']:.2f} ms, p99 {stats['p99_ms']:.2f} ms, "
        f"mean {stats['mean_ms']:.2f} ms ({count} users, {existed} existed, "
        f"{stats['mean_shared_units_subtracted']} shared units each); "
        f"unknown user p50 {unknown['p50_ms']:.2f} ms; durable 1-key LMDB commit (floor) "
        f"p50 {stats['lmdb_commit_floor']['p50_ms']:.2f} ms, "
        f"p99 {stats['lmdb_commit_floor']['p99_ms']:.2f} ms"
    )
    return stats


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20k items, 2k users, fewer samples")
    p.add_argument("--items", type=int, help="catalog size (default 100000; quick 20000)")
    p.add_argument("--users", type=int, help="users with histories (default 10000; quick 2000)")
    p.add_argument("--queries", type=int, help="timed calls per kind (default 1000; quick 300)")
    p.add_argument("--erase", type=int, help="users erased (default 1000; quick 300)")
    p.add_argument("--warmup", type=int, default=50, help="untimed calls first (default 50)")
    p.add_argument("--cap-users", type=int, help="users pushed past the caps, per kind")
    p.add_argument("--profile-calls", type=int, help="calls per cProfile sample (0 = none)")
    p.add_argument("--profile-top", type=int, default=18, help="functions kept per profile")
    p.add_argument(
        "--blas-threads",
        type=int,
        help="limit BLAS threads (threadpoolctl) for the whole run; default: leave them as the "
        "engine does (OpenBLAS: one per core)",
    )
    p.add_argument(
        "--bulk-users", type=int, help="users sent through interact_many (default 2000; quick 500)"
    )
    p.add_argument(
        "--no-encrypt",
        dest="encrypt",
        action="store_false",
        help="store records unsealed (to measure what sealing costs; never for production)",
    )
    p.add_argument(
        "--index-kind",
        choices=("auto", "flat", "hnsw"),
        default="auto",
        help="EngineConfig.index_kind (default auto: flat below hnsw_threshold items)",
    )
    p.add_argument(
        "--neighbour-rebuild",
        action="store_true",
        help="also time a build of the content-neighbour lists from scratch",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument(
        "--events-per-call", type=int, default=EVENTS_PER_CALL, help="interact batch size (25)"
    )
    p.add_argument("--data-dir", type=Path, help="where the temporary store goes (default: tmp)")
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {
        "items": (20_000, 100_000),
        "users": (2_000, 10_000),
        "queries": (300, 1_000),
        "erase": (300, 1_000),
        "cap_users": (3, 5),
        "profile_calls": (100, 200),
        "bulk_users": (500, 2_000),
    }
    for name, (q, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, q if quick else full)
    if args.out is None:
        args.out = RESULTS_DIR / ("engine_bench_quick.json" if quick else "engine_bench.json")
    return args


def blas_info() -> Json:
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ}
    try:
        from threadpoolctl import threadpool_info

        pools = [
            {"api": p.get("internal_api"), "threads": p.get("num_threads")}
            for p in threadpool_info()
        ]
    except ImportError:  # pragma: no cover
        pools = []
    return {"env": env, "threadpools": pools}


def git_state() -> Json:
    """The engine version measured (the working tree may differ from HEAD)."""
    here = Path(__file__).resolve().parent.parent

    def git(*cmd: str) -> str:
        try:
            done = subprocess.run(
                ["git", *cmd], cwd=here, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.rstrip("\n")

    changed = [ln[3:] for ln in git("status", "--porcelain").splitlines() if ln[:2] != "??"]
    return {"head": git("rev-parse", "--short", "HEAD").strip(), "modified_files": changed}


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSES"


def print_table(result: Json) -> None:
    say("\n== summary")
    m = result["machine"]
    say(
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {m['platform']}; "
        f"load average at start {m['loadavg_at_start']}, at end {result['loadavg_at_end']}"
    )
    say(f"BLAS thread pools: {m['blas']['threadpools']} (env {m['blas']['env']})")
    say(f"engine at git {result['git']['head']}, modified files: {result['git']['modified_files']}")
    fa, fe = result["lmdb_commit_floor_at_start"], result["erase"]["lmdb_commit_floor"]
    say(
        f"durable LMDB commit floor p50 / p99 ms: at start {fa['p50_ms']:.2f} / "
        f"{fa['p99_ms']:.2f}, during erase {fe['p50_ms']:.2f} / {fe['p99_ms']:.2f}"
    )
    cat = result["catalog"]
    say(
        f"catalog: {cat['items']} items, index {result['sizes']['index_type']}, "
        f"upsert {cat['items_per_s']:.0f} items/s; users: {result['interact']['users']}"
    )
    it = result["interact"]
    rec = result["records"]
    rc = result["recommend"]
    se = result["search"]
    er = result["erase"]
    size = rec["all_users"]
    t = TARGETS
    rows: list[tuple[str, str, str, str]] = [
        ("metric", "measured", "target", ""),
        (
            f"interact ingest events/s ({result['args']['events_per_call']}/call)",
            f"{it['events_per_s']:.0f} ({it['events_per_s_in_calls']:.0f} in calls)",
            f">= {t['ingest_events_per_s']:.0f}",
            verdict(it["events_per_s"] >= t["ingest_events_per_s"]),
        ),
        (
            f"bulk ingest events/s (interact_many, {result['interact_bulk']['users_per_call']} "
            f"users x {result['args']['events_per_call']} events/call)",
            f"{result['interact_bulk']['events_per_s']:.0f}",
            f">= {t['ingest_events_per_s']:.0f}",
            verdict(result["interact_bulk"]["events_per_s"] >= t["ingest_events_per_s"]),
        ),
        (
            "interact call p50 / p99 ms",
            f"{it['call_latency']['p50_ms']:.2f} / {it['call_latency']['p99_ms']:.2f}",
            "",
            "",
        ),
        (
            "record bytes median / p90 / p99 / max",
            f"{size['median_bytes']:.0f} / {size['p90_bytes']:.0f} / "
            f"{size['p99_bytes']:.0f} / {size['max_bytes']:.0f}",
            f"median <= {t['median_record_bytes']}",
            verdict(size["median_bytes"] <= t["median_record_bytes"]),
        ),
    ]
    for kind, c in rec["past_the_caps"].items():
        rows.append(
            (
                f"past the caps ({kind}, 600 sent): events / bytes",
                f"{c['max_events_retained']} / {c['max_bytes']}",
                f"<= {rec['config']['max_events']} / {rec['config']['max_record_bytes']}",
                verdict(
                    c["max_events_retained"] <= rec["config"]["max_events"]
                    and c["max_bytes"] <= rec["config"]["max_record_bytes"]
                ),
            )
        )
    for name in ("plain", "topic_filter", "diversity_0.3", "cold_start"):
        s = rc[name]
        rows.append(
            (
                f"recommend {name} p50 / p99 / mean ms",
                f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f} / {s['mean_ms']:.2f}",
                f"p99 <= {t['recommend_p99_ms']:.0f}",
                verdict(s["p99_ms"] <= t["recommend_p99_ms"]),
            )
        )
    s = rc["from_history_50_events"]
    rows.append(
        ("recommend_from_history p50 / p99 ms", f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}", "", "")
    )
    for name in ("personalized", "unpersonalized"):
        s = se[name]
        rows.append(
            (f"search {name} p50 / p99 ms", f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}", "", "")
        )
    rows.append(
        (
            "erase p50 / p99 ms",
            f"{er['p50_ms']:.2f} / {er['p99_ms']:.2f}",
            f"p99 <= {t['erase_p99_ms']:.0f}",
            verdict(er["p99_ms"] <= t["erase_p99_ms"]),
        )
    )
    for name, runs in result["reopen"].items():
        rows.append(
            (
                f"first recommend after open, {name.replace('_', ' ')}: open / first / "
                "first filtered / next p50 ms",
                ", ".join(
                    f"{r['open_ms']:.0f} / {r['first_recommend_ms']:.1f} / "
                    f"{r['first_filtered_ms']:.1f} / {r['next_20_p50_ms']:.1f}"
                    for r in runs
                ),
                "",
                "",
            )
        )
    rows.append(("peak RSS MiB (process)", f"{result['memory']['process_peak_mb']:.0f}", "", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        say("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    busy = {k: v.get("other_processes_cpu_cores") for k, v in result["phase_memory"].items()}
    say(f"cores kept busy by other processes, per phase: {busy}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.blas_threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=args.blas_threads, user_api="blas"):
            return run(args)
    return run(args)


def run(args: argparse.Namespace) -> int:
    started = time.time()
    result: Json = {
        "machine": {**machine(), "blas": blas_info()},
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "targets": TARGETS,
        "git": git_state(),
    }
    result["cpu_probe_ms_at_start"] = machine_info.cpu_probe()
    say(f"machine: {json.dumps(result['machine'])}")
    say(
        f"CPU probe (fixed workload, lower is faster; compare across runs): "
        f"{result['cpu_probe_ms_at_start']} ms"
    )
    say(
        f"engine bench: {args.items} items, {args.users} users, {args.queries} timed calls "
        f"per kind, {args.erase} erasures (load average {result['machine']['loadavg_at_start']})"
    )
    root = Path(tempfile.mkdtemp(prefix="ownrank-engine-bench-", dir=args.data_dir))
    args.root = root
    result["lmdb_commit_floor_at_start"] = commit_floor(root, 200)
    say(
        "durable 1-key LMDB commit on this filesystem (floor for every write): "
        f"p50 {result['lmdb_commit_floor_at_start']['p50_ms']:.2f} ms, "
        f"p99 {result['lmdb_commit_floor_at_start']['p99_ms']:.2f} ms"
    )
    phase_memory: Json = {}
    encoder = TimedEncoder(SyntheticEncoder())
    config = EngineConfig(encrypt_user_records=args.encrypt, index_kind=args.index_kind)
    result["config"] = config.model_dump(mode="json", exclude={"model_dir"})
    try:
        with Engine(root / "data", config, encoder=encoder) as engine:
            phases: list[tuple[str, Callable[[], Json]]] = [
                ("catalog", lambda: build_catalog(engine, encoder, args)),
                ("interact", lambda: phase_interact(engine, args)),
                ("interact_bulk", lambda: phase_interact_bulk(engine, args)),
                ("records", lambda: phase_records(engine, args)),
                ("recommend", lambda: phase_recommend(engine, args)),
                ("search", lambda: phase_search(engine, args)),
            ]
            if args.profile_calls > 0:
                phases.append(("profiles", lambda: phase_profiles(engine, args)))
            phases.append(("erase", lambda: phase_erase(engine, args)))
            for name, run in phases:
                say(f"\n== {name} (load average {[round(x, 2) for x in os.getloadavg()]})")
                watch = Watch()
                result[name] = run()
                phase_memory[name] = watch.finish()
                say(
                    f"-- {name}: {phase_memory[name]['phase_seconds']:.1f} s, RSS "
                    f"{phase_memory[name]['rss_mb']:.0f} MiB, other processes kept "
                    f"{phase_memory[name]['other_processes_cpu_cores']} cores busy"
                )
                if name == "catalog":
                    c = result["catalog"]
                    say(f"upserted {c['items']} items at {c['items_per_s']:.0f} items/s")
                elif name == "interact":
                    it = result["interact"]
                    say(
                        f"{it['events_sent']} events in {it['calls']} calls: "
                        f"{it['events_per_s']:.0f} events/s "
                        f"({it['events_per_s_in_calls']:.0f} counting only interact time); "
                        f"call p50 {it['call_latency']['p50_ms']:.2f} ms, "
                        f"p99 {it['call_latency']['p99_ms']:.2f} ms; by events already "
                        f"stored: {it['call_latency_by_events_already_stored']}"
                    )
                elif name == "interact_bulk":
                    b = result["interact_bulk"]
                    say(
                        f"{b['events_sent']} events in {b['calls']} interact_many calls "
                        f"({b['users_per_call']} users each): {b['events_per_s']:.0f} events/s; "
                        f"call p50 {b['call_latency']['p50_ms']:.2f} ms, "
                        f"p99 {b['call_latency']['p99_ms']:.2f} ms"
                    )
                elif name == "records":
                    r = result["records"]
                    say(f"record sizes: {r['all_users']}")
                    say(f"parts (bytes): {r['parts']}")
                    say(f"per record read, after the LMDB get (us): {r['read_costs']}")
                    say(f"past the caps: {r['past_the_caps']}")
                    result["sizes"] = sizes(engine)
                elif name == "profiles":
                    for pname, text in result["profiles"].items():
                        say(f"\n-- profile: {pname}\n{text}")
            result["sizes_end"] = sizes(engine)
        say(f"\n== reopen (load average {[round(x, 2) for x in os.getloadavg()]})")
        result["reopen"] = phase_reopen(root / "data", config, encoder, args)
        say(f"\n== neighbour paths (load average {[round(x, 2) for x in os.getloadavg()]})")
        result["neighbour_paths"] = phase_neighbour_paths(root / "data", config, encoder, args)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["phase_memory"] = phase_memory
    result["memory"] = memory()
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["cpu_probe_ms_at_end"] = machine_info.cpu_probe()
    result["total_seconds"] = round(time.time() - started, 1)
    print_table(result)
    machine_info.write_results(
        result,
        args.out,
        " (other work on this 2-core machine skews the timings); CPU probe "
        f"{result['cpu_probe_ms_at_start']} ms at start, {result['cpu_probe_ms_at_end']} ms at end",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
