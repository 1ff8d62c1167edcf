"""Engine benchmark: the per-user SDK surface on a synthetic catalog and synthetic users.

One temporary ``ownrank.Engine`` with default config and the synthetic encoder of
``bench/catalog_bench.py`` (clustered 384-d vectors, items with properties
``{"topic": "t<k>", "n": int}``), N items upserted in batches of 1000 (at 100k items
the index is HNSW, at 20k exact). Phases, in this order (each row has its ``phase``):

1. ``interact``: U users with 10-150 events each (mostly click / like / high ratings
   on 1-3 preferred topics, skewed to each topic's head; some dislikes / skips / low
   ratings elsewhere) through ``engine.interact`` in calls of 25 events, round-robin
   over groups of 100 users; ``interact_bulk``: other users through
   ``engine.interact_many`` (100 users x 25 events per call, one group commit).
2. ``records``: every record's size and the parts of a few; users pushed past the caps
   (600 item events; 600 long search queries): ``max_events`` and ``max_record_bytes`` hold.
3. ``recommend`` (plain, topic filter, diversity 0.3, cold start, from a 50-event
   history) and 4. ``search`` (personalized and not).
5. ``profiles``: cProfile of each operation after the timings (in ``details``).
6. ``erase`` of distinct users with histories.
7. ``reopen``: first calls after opening the store, without and with the warm-up.
8. ``neighbour_paths``: the stored neighbour lists against the dense comparison.

    python bench/engine_bench.py --quick        # 20k items, 2k users (~1-2 minutes)
    python bench/engine_bench.py --no-encrypt --out bench/results/engine_bench_noencrypt.json

Each phase records how many cores other processes kept busy meanwhile (another
benchmark on a 2-core machine skews every latency here); a CPU probe runs at the
start and the end.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import os
import pstats
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import harness
import lmdb
import machine_info
import numpy as np
from catalog_bench import (
    TOPIC_NAMES,
    SyntheticEncoder,
    TimedEncoder,
    Watch,
    item_batches,
    lists_current,
    make_query,
    memory,
    memory_rows,
    size_rows,
    sizes,
    timed,
)
from threadpoolctl import threadpool_info, threadpool_limits

from ownrank import Engine, EngineConfig

Json = dict[str, Any]
Args = argparse.Namespace
EVENTS_PER_CALL = 25  # default of --events-per-call
INTERLEAVE = 100  # users whose calls are interleaved round-robin
HISTORY_DAYS = 60
CAP_EVENTS_SENT = 600
RECOMMEND_KINDS = ("plain", "topic_filter", "diversity_0.3", "cold_start")
ERASE_EFFECTS = (
    "existed", "gone, of the first 50 checked", "events removed, mean",
    "shared units subtracted, mean", "contributing users before", "contributing users after",
)  # fmt: skip
PARTS = {  # record_parts keys -> (metric, unit)
    "total": ("stored", "B"), "events": ("events part", "B"), "model": ("model part", "B"),
    "ledger": ("ledger part", "B"), "n_events": ("events", "count"),
    "n_ledger_items": ("ledger items", "count"),
}  # fmt: skip


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


def iso(ts: float) -> str:
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
        event["timestamp"] = iso(float(ts))
        events.append(event)
    return events


def user_id(i: int) -> str:
    return f"u{i:06d}"


# -- helpers -------------------------------------------------------------------------------


def time_calls(fn: Callable[[int], Any], count: int, warmup: int) -> tuple[list[float], list[Any]]:
    """Seconds of ``fn(i)`` for i in 0..count-1 after ``warmup`` untimed calls (i from
    ``count`` on), and the results."""
    for i in range(count, count + warmup):
        fn(i)
    latencies: list[float] = []
    results: list[Any] = []
    for i in range(count):
        start = time.perf_counter()
        results.append(fn(i))
        latencies.append(time.perf_counter() - start)
    return latencies, results


def profile(fn: Callable[[int], Any], count: int, top: int, callers_of: str = "") -> str:
    """cProfile of ``count`` calls of ``fn``: the top functions by cumulative time
    (and, with ``callers_of``, who calls the functions matching that pattern)."""
    with cProfile.Profile() as prof:
        for i in range(count):
            fn(i)

    def printed(show: Callable[[pstats.Stats], Any]) -> list[str]:
        buf = io.StringIO()
        show(pstats.Stats(prof, stream=buf).strip_dirs())
        return buf.getvalue().splitlines()

    lines = printed(lambda stats: stats.sort_stats("cumulative").print_stats(top))
    # drop pstats' preamble up to the "ncalls" header, keep the total line
    total = next((ln.strip() for ln in lines if "function calls" in ln), "")
    start = next((k for k, ln in enumerate(lines) if ln.lstrip().startswith("ncalls")), 0)
    text = "\n".join([total, *(ln.rstrip() for ln in lines[start:] if ln.strip())])
    if callers_of:
        lines = printed(lambda stats: stats.print_callers(callers_of))
        start = next((k for k, ln in enumerate(lines) if "was called by" in ln), len(lines))
        body = [ln.rstrip() for ln in lines[start + 2 :] if ln.strip()]
        text += f"\ncallers of {callers_of} (ncalls, tottime, cumtime):\n" + "\n".join(body)
    return text


def record_rows(run: harness.Run, parts: Json | None, **labels: harness.Label) -> None:
    """``engine.diagnostics.record_parts`` as rows."""
    for key, value in (parts or {}).items():
        metric, unit = PARTS[key]
        run.add(metric, value, unit, **labels)


def ingest_rows(
    run: harness.Run, users: int, sent: int, wall: float, calls: list[float], phase: str
) -> None:
    """What both ingest phases report: events/s over the phase, and each call's latency."""
    run.add("users", users, "count", phase=phase)
    run.add("events sent", sent, "count", phase=phase)
    run.add("ingest time", wall, "s", phase=phase)
    run.add("ingest", sent / wall, "events/s", phase=phase)
    run.latency("call", calls, phase=phase, mean_max=True)


def commit_floor(run: harness.Run, root: Path, count: int, phase: str) -> None:
    """Latency of a durable (sync + metasync) LMDB commit of one small key, on the same
    filesystem: what any write of the engine pays at least."""
    path = root / "commit-floor"
    env = lmdb.open(str(path), map_size=2**26, subdir=True, sync=True, metasync=True)

    def commit(i: int) -> None:
        with env.begin(write=True) as txn:
            txn.put(b"k%d" % (i % 50), b"x" * 3000)

    try:
        lat, _ = time_calls(commit, count, 10)
    finally:
        env.close()
        shutil.rmtree(path, ignore_errors=True)
    run.latency("durable commit", lat, phase=phase, mean_max=True)


def ingest_rounds(
    rng: np.random.Generator, pop: Population, ids: list[str], per_call: int
) -> Iterator[tuple[int, int, dict[str, list[Json]]]]:
    """Histories of 10-150 events for ``ids``, sent in rounds over groups of INTERLEAVE
    users: (users before the group, events before the round, {user: next events})."""
    now = time.time()
    for group in range(0, len(ids), INTERLEAVE):
        uids = ids[group : group + INTERLEAVE]
        histories = [make_history(rng, pop, int(rng.integers(10, 151)), now) for _ in uids]
        for pos in range(0, 150, per_call):
            batch = {
                u: h[pos : pos + per_call]
                for u, h in zip(uids, histories, strict=True)
                if len(h) > pos
            }
            if batch:
                yield group, pos, batch


# -- phases ---------------------------------------------------------------------------------


def build_catalog(
    run: harness.Run, engine: Engine, encoder: TimedEncoder, args: Args
) -> Population:
    topics: list[int] = []
    elapsed = 0.0
    for items in item_batches(args.items, 1000, args.seed + 100, "s"):
        topics += [int(str(item["properties"]["topic"])[1:]) for item in items]
        elapsed += timed(lambda items=items: engine.catalog.upsert(items))[0]
    sync_s, _ = timed(engine.catalog.keeper.sync)
    # the content-neighbour lists: kept in step by cheap writes, by a background
    # thread past the sync budget; the ranking phases start once they are current
    wait_s = lists_current(engine)
    labels: Any = {"phase": "catalog"}
    run.add("upsert", args.items / elapsed, "items/s", **labels)
    run.add("upsert time", elapsed, "s", **labels)
    run.add("encode time", encoder.seconds, "s", **labels)
    run.add("index sync", sync_s * 1e3, "ms", **labels)
    run.add("neighbour lists wait", wait_s, "s", **labels)
    if args.neighbour_rebuild:
        run.add(
            "neighbour lists rebuild", timed(engine.catalog.neighbours.rebuild)[0], "s", **labels
        )
    status = engine.catalog.neighbours.status()
    run.details["neighbour_lists"] = {**dataclasses.asdict(status), "current": status.current}
    return Population(np.asarray(topics), "s")


def phase_interact(run: harness.Run, engine: Engine, pop: Population, args: Args) -> None:
    rng = np.random.default_rng(args.seed + 1)
    call_lat: list[float] = []
    retained_before: list[int] = []  # events already in the record at each call
    sent = accepted = 0
    phase_start = time.perf_counter()
    ids = [user_id(i) for i in range(args.users)]
    for group, pos, batch in ingest_rounds(rng, pop, ids, args.events_per_call):
        if args.progress and pos == 0 and group and group % (10 * INTERLEAVE) == 0:
            rate = sent / (time.perf_counter() - phase_start)
            print(f"  {group} users, {sent} events, {rate:.0f} events/s so far")
        for uid, events in batch.items():
            start = time.perf_counter()
            report = engine.interact(uid, events)
            call_lat.append(time.perf_counter() - start)
            retained_before.append(min(pos, engine.config.max_events))
            sent += len(events)
            accepted += report.accepted
    wall = time.perf_counter() - phase_start
    labels: Any = {"phase": "interact"}
    ingest_rows(run, args.users, sent, wall, call_lat, **labels)
    run.add("events accepted", accepted, "count", **labels)
    run.add("time in calls", sum(call_lat), "s", **labels)
    run.add("ingest in calls", sent / sum(call_lat), "events/s", **labels)
    lat, before = np.asarray(call_lat), np.asarray(retained_before)
    for lo, hi in ((0, 25), (25, 50), (50, 100), (100, 151)):
        chosen = lat[(before >= lo) & (before < hi)]
        if chosen.size:
            run.latency("call", list(chosen), stored=f"{lo}-{hi - 1}", **labels)


def phase_interact_bulk(run: harness.Run, engine: Engine, pop: Population, args: Args) -> None:
    """Bulk ingest: ``engine.interact_many`` with INTERLEAVE users per call (each with
    ``events_per_call`` events), for other users than the ``interact`` phase."""
    rng = np.random.default_rng(args.seed + 2)
    call_lat: list[float] = []
    sent = 0
    phase_start = time.perf_counter()
    ids = [f"bulk-{i:07d}" for i in range(args.bulk_users)]
    for _group, _pos, batch in ingest_rounds(rng, pop, ids, args.events_per_call):
        start = time.perf_counter()
        engine.interact_many(batch)
        call_lat.append(time.perf_counter() - start)
        sent += sum(len(v) for v in batch.values())
    wall = time.perf_counter() - phase_start
    ingest_rows(run, args.bulk_users, sent, wall, call_lat, phase="interact_bulk")


def phase_records(run: harness.Run, engine: Engine, pop: Population, args: Args) -> None:
    diag = engine.diagnostics
    labels: Any = {"phase": "records"}
    found = [(i, diag.record_size(user_id(i))) for i in range(args.users)]
    known = [(i, size) for i, size in found if size is not None]
    sizes_b = np.asarray([size for _i, size in known], dtype=np.float64)
    p50, p90, p99 = np.percentile(sizes_b, [50, 90, 99])
    figures = {"median": p50, "p90": p90, "p99": p99, "max": sizes_b.max(), "mean": sizes_b.mean()}
    run.add("records", len(known), "count", users="all", **labels)
    for name, value in figures.items():
        run.add(f"record {name}", float(value), "B", users="all", **labels)
    # parts of the users at the median / p99 / max size
    order = np.argsort(sizes_b, kind="stable")
    picks = {"median": len(order) // 2, "p99": int(len(order) * 0.99), "max": -1}
    for name, k in picks.items():
        record_rows(run, diag.record_parts(user_id(known[order[k]][0])), record=name, **labels)
    costs = diag.read_costs(user_id(i) for i in range(min(args.users, 1000)))
    for step, seconds in costs.items():
        run.add("reads", len(seconds), "count", step=step, **labels)
        run.add("read p50", harness.percentile(seconds, 50) * 1e6, "us", step=step, **labels)
        run.add("read mean", float(np.mean(seconds)) * 1e6, "us", step=step, **labels)
    # past the caps: 600 item events, and 600 search events with long queries
    rng = np.random.default_rng(args.seed + 3)
    now = time.time()
    for kind in ("items", "queries"):
        retained, sizes_c, lat = [], [], []
        for u in range(args.cap_users):
            uid = f"cap-{kind}-{u}"
            if kind == "items":
                events = make_history(rng, pop, CAP_EVENTS_SENT, now)
            else:
                events = [
                    {
                        "kind": "search",
                        "query": " ".join(make_query(rng) for _ in range(6))[:400],
                        "timestamp": iso(now - 600 + k),
                    }
                    for k in range(CAP_EVENTS_SENT)
                ]
            for start in range(0, len(events), EVENTS_PER_CALL):
                t0 = time.perf_counter()
                engine.interact(uid, events[start : start + EVENTS_PER_CALL])
                lat.append(time.perf_counter() - t0)
            retained.append(diag.retained_events(uid) or 0)
            sizes_c.append(diag.record_size(uid) or 0)
        users = f"past caps: {kind}"
        run.add("records", args.cap_users, "count", users=users, **labels)
        run.add("record median", float(np.median(sizes_c)), "B", users=users, **labels)
        run.add("record max", max(sizes_c), "B", users=users, **labels)
        run.add("events retained min", min(retained), "count", users=users, **labels)
        run.add("events retained max", max(retained), "count", users=users, **labels)
        run.latency("interact", lat, users=users, **labels, mean_max=True)
        record_rows(run, diag.record_parts(uid), record=f"{users}, last user", **labels)


def phase_recommend(run: harness.Run, engine: Engine, pop: Population, args: Args) -> None:
    rng = np.random.default_rng(args.seed + 4)
    n_q = args.queries
    users = [user_id(int(u)) for u in rng.integers(args.users, size=n_q + args.warmup)]
    topics = [f"t{int(t)}" for t in rng.integers(len(TOPIC_NAMES), size=n_q + args.warmup)]

    first_filter_s, _ = timed(lambda: engine.recommend(users[0], 10, {"topic": topics[0]}))
    calls: dict[str, Callable[[int], Any]] = {
        "plain": lambda i: engine.recommend(users[i], 10),
        "topic_filter": lambda i: engine.recommend(users[i], 10, {"topic": topics[i]}),
        "diversity_0.3": lambda i: engine.recommend(users[i], 10, diversity=0.3),
        "cold_start": lambda i: engine.recommend(f"cold-{i}", 10),
    }
    for kind, fn in calls.items():
        lat, results = time_calls(fn, n_q, args.warmup)
        labels: Any = {"phase": "recommend", "kind": kind}
        run.latency("recommend", lat, **labels, mean_max=True)
        run.add("short results", sum(1 for r in results if len(r) < 10), "count", **labels)
        if kind == "topic_filter":
            run.add("first call", first_filter_s * 1e3, "ms", **labels)
            off = sum(
                rec.item.properties.get("topic") != topics[k]
                for k, r in enumerate(results)
                for rec in r
            )
            run.add("off-filter results", off, "count", **labels)
        if kind == "plain":
            reasons = Counter(
                rec.explanation.get("retrieved_by", "?") for r in results for rec in r
            )
            for why, n in reasons.items():
                run.add("results", n, "count", retrieved_by=why, **labels)
    # stateless: a 50-event history in the call
    hrng = np.random.default_rng(args.seed + 5)
    histories = [make_history(hrng, pop, 50, time.time()) for _ in range(20)]
    lat, _res = time_calls(
        lambda i: engine.recommend_from_history(histories[i % 20], 10), max(50, n_q // 5), 10
    )
    run.latency("recommend", lat, phase="recommend", kind="from_history_50_events", mean_max=True)


def phase_search(run: harness.Run, engine: Engine, pop: Population, args: Args) -> None:
    rng = np.random.default_rng(args.seed + 6)
    n_q = args.queries
    texts = [make_query(rng) for _ in range(n_q + args.warmup)]
    users = [user_id(int(u)) for u in rng.integers(args.users, size=n_q + args.warmup)]

    enc = SyntheticEncoder()
    calls: dict[str, Callable[[int], Any]] = {
        "personalized": lambda i: engine.search(texts[i], 10, user_id=users[i]),
        "unpersonalized": lambda i: engine.search(texts[i], 10),
        "synthetic_encode_only": lambda i: enc.encode([texts[i]]),
    }
    for kind, fn in calls.items():
        lat, results = time_calls(fn, n_q, args.warmup)
        run.latency("search", lat, phase="search", kind=kind, mean_max=True)
        if kind != "synthetic_encode_only":
            short = sum(1 for r in results if len(r) < 10)
            run.add("short results", short, "count", phase="search", kind=kind)


def phase_profiles(run: harness.Run, engine: Engine, pop: Population, args: Args) -> None:
    """cProfile samples (after the timings, so they do not skew them), as details."""
    rng = np.random.default_rng(args.seed + 8)
    n = args.profile_calls
    users = [user_id(int(u)) for u in rng.integers(args.users, size=n)]
    topics = [f"t{int(t)}" for t in rng.integers(len(TOPIC_NAMES), size=n)]
    now = time.time()
    histories = [make_history(rng, pop, 100, now) for _ in range(max(1, n // 4))]
    batches = [
        (f"prof-{k}", h[s : s + EVENTS_PER_CALL])
        for k, h in enumerate(histories)
        for s in range(0, len(h), EVENTS_PER_CALL)
    ]
    texts = [make_query(rng) for _ in range(n)]
    top = args.profile_top
    run.details["profiles"] = {
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
    for name, text in run.details["profiles"].items():
        print(f"-- profile: {name}\n{text}")


def phase_erase(run: harness.Run, engine: Engine, pop: Population, args: Args) -> None:
    rng = np.random.default_rng(args.seed + 9)
    count = min(args.erase, args.users)
    victims = [user_id(int(u)) for u in rng.choice(args.users, size=count, replace=False)]
    diag = engine.diagnostics
    contributing_before = diag.contributing_users()
    lat, receipts = time_calls(lambda i: engine.erase(victims[i]), count, 0)
    contributing_after = diag.contributing_users()
    labels: Any = {"phase": "erase"}
    run.latency("erase", lat, user="known", **labels, mean_max=True)
    events = np.asarray([r.events_removed for r in receipts])
    units = np.asarray([r.shared_units_subtracted for r in receipts])
    effects = (
        sum(1 for r in receipts if r.existed),
        sum(1 for v in victims[:50] if diag.retained_events(v) is None),
        float(events.mean()),
        float(units.mean()),
        contributing_before,
        contributing_after,
    )
    for metric, value in zip(ERASE_EFFECTS, effects, strict=True):
        run.add(metric, value, "count", **labels)
    if units.std() > 0:
        corr = float(np.corrcoef(np.asarray(lat) * 1e3, units)[0, 1])
        run.add("latency vs units correlation", corr, "r", **labels)
    lat, _r = time_calls(lambda i: engine.erase(f"never-{i}"), min(200, count), 10)
    run.latency("erase", lat, user="unknown", **labels, mean_max=True)
    commit_floor(run, args.root, min(200, count), "erase")


def phase_reopen(run: harness.Run, reopen: Callable[..., Engine], args: Args) -> None:
    """The first recommend after opening the store, without and with the warm-up at
    open (``EngineConfig.warm_up_on_open``), alternated twice each: open time, first
    plain call, first topic-filtered call, then the median of the next 20 calls."""
    rng = np.random.default_rng(args.seed + 11)

    def first_calls(engine: Engine) -> list[float]:
        """Seconds of the first plain call, the first filtered one, the next 20 calls."""
        users: list[str] = []
        while len(users) < 21:  # users the erase phase left
            uid = user_id(int(rng.integers(args.users)))
            if engine.diagnostics.retained_events(uid) is not None:
                users.append(uid)
        topic = f"t{int(rng.integers(len(TOPIC_NAMES)))}"
        first, _ = timed(lambda: engine.recommend(users[0], 10))
        filtered, _ = timed(lambda: engine.recommend(users[0], 10, {"topic": topic}))
        later, _ = time_calls(lambda i: engine.recommend(users[i + 1], 10), 20, 0)
        return [first, filtered, harness.percentile(later, 50)]

    for round_ in (1, 2):
        for warm in (False, True):
            opened = time.perf_counter()
            with reopen(warm_up_on_open=warm) as engine:
                figures = [time.perf_counter() - opened, *first_calls(engine)]
            names = ("open", "first recommend", "first filtered", "next 20 p50")
            for name, seconds in zip(names, figures, strict=True):
                run.add(name, seconds * 1e3, "ms", phase="reopen", warm_up=warm, round=round_)


def phase_neighbour_paths(run: harness.Run, reopen: Callable[..., Engine], args: Args) -> None:
    """Recommend with the neighbour score summed over the stored lists against the
    dense comparison (``content_neighbours=0``), same store and users, alternated
    twice each (the VM's speed drifts: compare within a round)."""
    rng = np.random.default_rng(args.seed + 12)
    count = max(100, args.queries // 2)
    users = [user_id(int(u)) for u in rng.integers(args.users, size=count + args.warmup)]
    topics = [f"t{int(t)}" for t in rng.integers(len(TOPIC_NAMES), size=count + args.warmup)]
    for round_ in (1, 2):
        for name, update in (("lists", {}), ("dense", {"content_neighbours": 0})):
            with reopen(**update) as engine:
                calls = {
                    "plain": lambda i, e=engine: e.recommend(users[i], 10),
                    "topic_filter": lambda i, e=engine: e.recommend(
                        users[i], 10, {"topic": topics[i]}
                    ),
                }
                for kind, call in calls.items():
                    lat, _res = time_calls(call, count, args.warmup)
                    labels: Any = {"phase": "neighbour_paths", "neighbours": name}
                    run.latency("recommend", lat, round=round_, kind=kind, **labels, mean_max=True)


# -- main -----------------------------------------------------------------------------------


SIZES = {  # option: (quick, full, what)
    "items": (20_000, 100_000, "catalog size"),
    "users": (2_000, 10_000, "users with histories"),
    "queries": (300, 1_000, "timed calls per kind"),
    "erase": (300, 1_000, "users erased"),
    "cap_users": (3, 5, "users pushed past the caps, per kind"),
    "profile_calls": (100, 200, "calls per cProfile sample (0 = none)"),
    "bulk_users": (500, 2_000, "users sent through interact_many"),
}


def parse_args(argv: Sequence[str] | None = None) -> Args:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="20k items, 2k users, fewer samples")
    for name, (quick, full, what) in SIZES.items():
        flag = "--" + name.replace("_", "-")
        p.add_argument(flag, type=int, help=f"{what} (default {full}; quick {quick})")
    p.add_argument("--warmup", type=int, default=50, help="untimed calls first (default 50)")
    p.add_argument("--profile-top", type=int, default=18, help="functions kept per profile")
    p.add_argument(
        "--blas-threads", type=int, help="limit BLAS threads (threadpoolctl; default: one per core)"
    )
    p.add_argument(
        "--no-encrypt",
        dest="encrypt",
        action="store_false",
        help="store records unsealed (what sealing costs; never for production)",
    )
    p.add_argument(
        "--index-kind",
        choices=("auto", "flat", "hnsw", "ivf"),
        default="auto",
        help="EngineConfig.index_kind (auto: flat below hnsw_threshold items, IVF from "
        "ivf_threshold)",
    )
    p.add_argument(
        "--content-neighbours",
        type=int,
        help="EngineConfig.content_neighbours (default: the engine's; 0: no lists, the "
        "neighbour score compares candidates with rated items, as before the lists; at 1M "
        "items the lists take hours to build and the catalog phase waits for them)",
    )
    p.add_argument(
        "--neighbour-rebuild",
        action="store_true",
        help="also time a build of the content-neighbour lists from scratch",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--events-per-call", type=int, default=EVENTS_PER_CALL, help="interact batch")
    p.add_argument("--data-dir", type=Path, help="where the temporary store goes (default: tmp)")
    p.add_argument("--out", type=Path, help="results file (default bench/results/engine_bench*)")
    args = p.parse_args(argv)
    for name, (quick, full, _what) in SIZES.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.out = args.out or harness.default_out("engine_bench", args.quick)
    return args


def declare(run: harness.Run, config: EngineConfig, items: int) -> None:
    """The tables and the targets (issue 5; the caps are the config's own promise)."""

    def timed(op: str) -> list[str]:
        return [f"{op} {m}" for m in ("calls", "p50", "p99", "mean", "max")]

    tables: list[tuple[str, list[str], dict[str, Any], list[str]]] = [
        ("Catalog", [], {"phase": "catalog"}, ["upsert", "upsert time", "encode time",
         "index sync", "neighbour lists wait", "neighbour lists rebuild"]),
        ("Ingest (interact: calls of 25 events round-robin; interact_bulk: interact_many)",
         ["phase"], {}, ["users", "events sent", "events accepted", "ingest", "ingest in calls",
         "ingest time", "time in calls"]),
        ("Ingest call latency, by events already in the record", ["phase", "stored"], {},
         timed("call")),
        (f"Record sizes (past caps: {CAP_EVENTS_SENT} events sent)", ["users"],
         {"phase": "records"}, ["records", "record median", "record p90", "record p99",
         "record max", "record mean", "events retained min", "events retained max",
         "interact p50", "interact p99"]),
        ("Record parts (msgpack; stored: the whole value)", ["record"], {},
         [metric for metric, _unit in PARTS.values()]),
        ("Record read, after the LMDB get", ["step"], {}, ["reads", "read p50", "read mean"]),
        ("Recommend", ["kind"], {"phase": "recommend"},
         [*timed("recommend"), "short results", "off-filter results", "first call"]),
        ("Plain recommend results by retrieval", ["retrieved_by"], {}, ["results"]),
        ("Search", ["kind"], {"phase": "search"}, [*timed("search"), "short results"]),
        ("Erase", ["user"], {}, timed("erase")),
        ("Erase effects", [], {}, [*ERASE_EFFECTS, "latency vs units correlation"]),
        ("Durable 1-key LMDB commit (the floor under every write)", ["phase"], {},
         timed("durable commit")),
        ("First recommend after open", ["warm_up", "round"], {},
         ["open", "first recommend", "first filtered", "next 20 p50"]),
        ("Neighbour score: stored lists vs dense (compare within a round)",
         ["round", "kind", "neighbours"], {"phase": "neighbour_paths"},
         ["recommend p50", "recommend p99", "recommend mean"]),
        ("Store sizes", ["phase"], {}, ["catalog items", "index type", "index vectors",
         "index file", "LMDB file", "LMDB used"]),
        ("LMDB databases", ["db", "phase"], {}, ["entries", "pages", "size", "per entry"]),
        ("Phases (other cores busy: other processes' load meanwhile)", ["phase"], {},
         ["phase", "RSS", "RSS anonymous", "RSS file-backed", "RSS peak", "phase peak RSS",
          "process peak RSS", "other cores busy", "CPU probe"]),
    ]  # fmt: skip
    for title, by, where, metrics in tables:
        run.table(title, by, where=where, metrics=metrics, plot=title == "Recommend")
    for kind in RECOMMEND_KINDS:
        where = {"phase": "recommend", "kind": kind}
        run.target(f"recommend p99 ({kind})", "recommend p99", "<=", 10.0, where, "issue 5")
    for phase in ("interact", "interact_bulk"):
        run.target(f"ingest ({phase})", "ingest", ">=", 5_000.0, {"phase": phase}, "issue 5")
    where = {"phase": "erase", "user": "known"}
    run.target("erase p99", "erase p99", "<=", 5.0, where, "issue 5")
    where = {"phase": "records", "users": "all"}
    run.target("median user record", "record median", "<=", 4_080.0, where, "issue 5")
    for kind in ("items", "queries"):
        where = {"users": f"past caps: {kind}"}
        bound: float = config.max_events
        run.target(f"events kept past the caps ({kind})", "events retained max", "<=", bound,
                   where, "EngineConfig.max_events")  # fmt: skip
        bound = config.max_record_bytes
        run.target(f"record past the caps ({kind})", "record max", "<=", bound,
                   where, "EngineConfig.max_record_bytes")  # fmt: skip
    if items != 100_000:
        run.note(f"{items:,} items: the recommend target is stated at 100k items")
    run.note("timings on a shared machine: see other cores busy per phase, and the CPU probe")


def store_sizes(run: harness.Run, engine: Engine, phase: str) -> None:
    """Index, LMDB and database sizes (``catalog_bench.sizes``) as rows."""
    found = sizes(engine)
    run.add("index type", found["index_type"], "", phase=phase)
    size_rows(run, found, phase=phase)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with threadpool_limits(limits=args.blas_threads, user_api="blas"):  # None: no limit
        return bench(args)


def bench(args: Args) -> int:
    run = harness.Run("engine_bench", vars(args), quick=args.quick)
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS") if k in os.environ}
    pools = [(p.get("internal_api"), p.get("num_threads")) for p in threadpool_info()]
    run.details["blas"] = {"env": env, "threadpools": pools}
    run.details["versions"] = machine_info.machine(("numpy", "faiss-cpu", "lmdb"))["versions"]
    run.add("CPU probe", machine_info.cpu_probe(), "ms", phase="start")
    print(
        f"engine bench: {args.items} items, {args.users} users, {args.queries} timed calls "
        f"per kind, {args.erase} erasures, records {'sealed' if args.encrypt else 'unsealed'}"
    )
    root = Path(tempfile.mkdtemp(prefix="ownrank-engine-bench-", dir=args.data_dir))
    args.root = root
    commit_floor(run, root, 200, "start")
    encoder = TimedEncoder(SyntheticEncoder())
    lists = (
        {} if args.content_neighbours is None else {"content_neighbours": args.content_neighbours}
    )
    config = EngineConfig(encrypt_user_records=args.encrypt, index_kind=args.index_kind, **lists)
    run.details["config"] = config.model_dump(mode="json", exclude={"model_dir"})
    declare(run, config, args.items)
    phases = [phase_interact, phase_interact_bulk, phase_records, phase_recommend, phase_search]
    if args.profile_calls > 0:
        phases.append(phase_profiles)
    phases.append(phase_erase)

    def reopen(**update: Any) -> Engine:  # the store again, with settings changed
        return Engine(root / "data", config.model_copy(update=update), encoder=encoder)

    def timed_phase(name: str, fn: Callable[[], Any]) -> Any:
        print(f"== {name} (load average {[round(x, 2) for x in os.getloadavg()]})", flush=True)
        watch = Watch()
        out = fn()
        memory_rows(run, watch.finish(), phase=name)
        return out

    try:
        with Engine(root / "data", config, encoder=encoder) as engine:
            pop = timed_phase("catalog", lambda: build_catalog(run, engine, encoder, args))
            for fn in phases:
                name = fn.__name__.removeprefix("phase_")
                timed_phase(name, lambda fn=fn: fn(run, engine, pop, args))
                if name == "records":
                    store_sizes(run, engine, "records")
            store_sizes(run, engine, "end")
        timed_phase("reopen", lambda: phase_reopen(run, reopen, args))
        timed_phase("neighbour_paths", lambda: phase_neighbour_paths(run, reopen, args))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    memory_rows(run, memory(), phase="end")
    run.add("CPU probe", machine_info.cpu_probe(), "ms", phase="end")
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
