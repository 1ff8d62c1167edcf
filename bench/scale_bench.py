"""Scale benchmark: the engine's latencies as the catalog grows (10k, 100k, 1M items).

Runs ``bench/engine_bench.py`` once per catalog size, each in its own process (so
one size's memory is gone before the next starts, and a crash at 1M leaves the
smaller sizes' results), with its result file written to
``<results-dir>/scale_engine_<items>.json`` (``scale_engine_quick_<items>.json``
with --quick) and its output to the ``.log`` beside it. Then collects, per size:
recommend latency (plain, topic-filtered, diversity, cold start, from a history),
search, interact events/s and call latency, the median (and p90 / p99 / max) user
record size, catalog upsert rate, erase latency, peak RSS, and how busy other
processes kept the CPUs in each phase, as rows labelled with ``items``.

Users stay at 2000 at every size (so the sizes differ only in the catalog) with
1000 timed calls per kind, 300 at 1M; no cProfile samples (``--profile-calls 0``).

Expected run time (2 cores): 10k ~1 min, 100k ~2-3 min, 1M ~20-25 min (upserting
1M items: LMDB writes plus single-threaded incremental HNSW inserts, ~1000
items/s once the graph is large); ~30 minutes in all. --quick took 130 s on a
machine where other work kept 1.5 of the 2 cores busy.

Memory at 1M (an estimate; engine_bench measured a 0.76 GB peak at 100k items and
10k users): the HNSW index ~1.74 GiB (1,816 B/vector, see index_bench.py), the
property table (one small dict per item, ~470 B/item measured) ~0.45 GiB, Python
and LMDB bookkeeping ~0.3 GB, plus file-backed LMDB pages (the file is ~2.5 GB;
the kernel can evict them): plan for a peak RSS of 3-5 GB, with nothing else of
this benchmark alive at the time (each size is its own process).

Usage::

    python bench/scale_bench.py --quick        # 10k and 20k items, 500 users (~2-3 minutes)
    python bench/scale_bench.py                # 10k, 100k and 1M items, 2000 users
    python bench/scale_bench.py --collect-only # re-read the per-size result files
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import harness

BENCH_DIR = Path(__file__).resolve().parent
ENGINE_BENCH = BENCH_DIR / "engine_bench.py"
RECOMMEND_KINDS = ("plain", "topic_filter", "diversity_0.3", "cold_start", "from_history_50_events")
LATENCY = ("calls", "p50", "p99", "mean")

# The engine_bench rows collected per size: (metric, labels the row must have; None:
# the label must be absent).
Where = dict[str, harness.Label]
RECOMMEND: Where = {"phase": "recommend"}
SEARCH: Where = {"phase": "search"}
INTERACT: Where = {"phase": "interact", "stored": None}
RECORDS: Where = {"phase": "records", "users": "all"}
COLLECTED: tuple[tuple[str, Mapping[str, harness.Label]], ...] = (
    *((f"recommend {q}", {**RECOMMEND, "kind": k}) for k in RECOMMEND_KINDS for q in LATENCY),
    *((f"search {q}", {**SEARCH, "kind": k}) for k in ("personalized", "unpersonalized")
      for q in LATENCY),
    *((m, INTERACT) for m in ("users", "ingest", "ingest in calls", "call p50", "call p99")),
    *((f"record {q}", RECORDS) for q in ("median", "p90", "p99", "max")),
    *((m, {"phase": "catalog"}) for m in ("upsert", "upsert time")),
    *((f"erase {q}", {"phase": "erase", "user": "known"}) for q in LATENCY),
    ("process peak RSS", {"phase": "end"}),
    ("index type", {"phase": "records"}),
)  # fmt: skip


@dataclass(frozen=True)
class SizePlan:
    """One engine_bench run: catalog size and how many users / timed calls go with it."""

    items: int
    users: int
    queries: int
    erase: int
    cap_users: int


FULL_PLAN = (
    SizePlan(10_000, 2_000, 1_000, 300, 3),
    SizePlan(100_000, 2_000, 1_000, 300, 3),
    SizePlan(1_000_000, 2_000, 300, 300, 3),
)
QUICK_PLAN = (
    SizePlan(10_000, 500, 300, 100, 2),
    SizePlan(20_000, 500, 300, 100, 2),
)


def plan_for(items: int, quick: bool) -> SizePlan:
    """The plan of a size given with --sizes: the users and calls of the mode's plan."""
    base = QUICK_PLAN[0] if quick else FULL_PLAN[0]
    queries = 300 if items >= 1_000_000 else base.queries
    return SizePlan(items, base.users, queries, base.erase, base.cap_users)


def parse_sizes(text: str) -> list[int]:
    """'10000,100k,1M' -> [10000, 100000, 1000000]."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        out.append(int(float(part[:-1] if scale > 1 else part) * scale))
    return out


def result_path(results_dir: Path, items: int, quick: bool) -> Path:
    return results_dir / f"scale_engine_{'quick_' if quick else ''}{items}.json"


def engine_bench_command(plan: SizePlan, out: Path, **options: object) -> list[str]:
    """The engine_bench command line of one size (same interpreter as this process);
    ``options`` are further engine_bench options (``data_dir=...``; None: its default)."""
    cmd = [sys.executable, str(ENGINE_BENCH), "--items", str(plan.items), "--users",
           str(plan.users), "--queries", str(plan.queries), "--erase", str(plan.erase),
           "--cap-users", str(plan.cap_users), "--profile-calls", "0", "--no-progress",
           "--out", str(out)]  # fmt: skip
    for name, value in options.items():
        if value is not None:
            cmd += ["--" + name.replace("_", "-"), str(value)]
    return cmd


def run_engine_bench(cmd: Sequence[str], log: Path, prefix: str, echo: bool = True) -> int:
    """Run one engine_bench, its output into ``log`` (and echoed with ``prefix``);
    the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with (
        log.open("w") as fh,
        subprocess.Popen(
            list(cmd),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},  # its progress, as it comes
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if echo:
                print(f"{prefix}{line}", end="", flush=True)
        return proc.wait()


def collect(path: Path) -> list[harness.Row]:
    """The rows of one engine_bench result this benchmark compares across sizes, each
    labelled with the catalog size; a ValueError names a row that is missing."""
    doc = harness.load(path)
    rows = harness.rows_of(doc)
    items = doc["params"]["items"]
    out: list[harness.Row] = []
    for metric, where in COLLECTED:
        row = next((r for r in rows if r.matches({"metric": metric, **where})), None)
        if row is None:
            raise ValueError(f"engine_bench result {path.name} has no {metric!r} row {where}")
        out.append(row)
    out += [r for r in rows if r.metric == "other cores busy"]  # one per phase
    load = (doc["machine"]["loadavg_at_start"][0], doc["loadavg_at_end"][0])
    out += [
        harness.Row("queries", doc["params"]["queries"], "count"),
        harness.Row("load average at start", load[0], "load"),
        harness.Row("load average at end", load[1], "load"),
        harness.Row("run time", doc["seconds"], "s"),
    ]
    return [harness.Row(r.metric, r.value, r.unit, {**r.labels, "items": items}) for r in out]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10k and 20k items, 500 users")
    p.add_argument("--sizes", type=parse_sizes, help="item counts, e.g. 10000,100k,1M")
    p.add_argument("--users", type=int, help="users per size (default 2000; quick 500)")
    p.add_argument("--queries", type=int, help="timed calls per kind (default 1000, 300 at 1M)")
    p.add_argument("--warmup", type=int, help="engine_bench --warmup (its default 50)")
    p.add_argument("--seed", type=int, help="engine_bench --seed (its default)")
    p.add_argument("--blas-threads", type=int, help="engine_bench --blas-threads")
    p.add_argument("--data-dir", type=Path, help="where engine_bench's stores go (default: tmp)")
    p.add_argument("--results-dir", type=Path, default=harness.RESULTS,
                   help="where the per-size engine_bench results and logs go")  # fmt: skip
    p.add_argument("--collect-only", action="store_true", help="re-read earlier runs' results")
    p.add_argument("--out", type=Path, help="JSON results file (default bench/results/...)")
    args = p.parse_args(argv)
    plans: tuple[SizePlan, ...] = QUICK_PLAN if args.quick else FULL_PLAN
    if args.sizes:
        plans = tuple(plan_for(n, args.quick) for n in args.sizes)
    if args.users is not None or args.queries is not None:
        plans = tuple(
            SizePlan(
                p.items,
                args.users if args.users is not None else p.users,
                args.queries if args.queries is not None else p.queries,
                # half the users at most: engine_bench's reopen phase needs some left
                min(p.erase, args.users // 2) if args.users is not None else p.erase,
                p.cap_users,
            )
            for p in plans
        )
    args.plans = plans
    if args.out is None:
        args.out = harness.default_out("scale_bench", args.quick)
    return args


def declare(run: harness.Run) -> None:
    """One line per catalog size (and kind); the recommend target of issue 5."""
    for op in ("recommend", "search"):
        run.table(
            f"{op.capitalize()} latency by catalog size",
            by=["items", "kind"],
            where={"phase": op},
            metrics=[f"{op} {q}" for q in LATENCY],
            plot=op == "recommend",
        )
    run.table(
        "Engine by catalog size (interact: calls of 25 events; erase: known users)",
        by=["items"],
        metrics=["index type", "users", "queries", "ingest", "ingest in calls", "call p50",
                 "call p99", "record median", "record p90", "record p99", "record max",
                 "erase p50", "erase p99", "upsert", "process peak RSS"],
    )  # fmt: skip
    run.table(
        "Cores other processes kept busy, per engine_bench phase",
        by=["items"],
        columns="phase",
        metrics=["other cores busy"],
    )
    run.table(
        "Runs", by=["items"], metrics=["run time", "load average at start", "load average at end"]
    )
    where: Where = {"phase": "recommend", "kind": "plain", "items": 100_000}
    run.target("recommend p99 at 100k items", "recommend p99", "<=", 10.0, where, "issue 5")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = harness.Run("scale_bench", vars(args), quick=args.quick)
    run.details["plan"] = [asdict(p) for p in args.plans]
    failed: dict[str, str] = {}
    declare(run)
    for plan in args.plans:
        out = result_path(args.results_dir, plan.items, args.quick)
        if not args.collect_only:
            options = {k: getattr(args, k) for k in ("seed", "warmup", "data_dir", "blas_threads")}
            cmd = engine_bench_command(plan, out, **options)
            print(f"\n== {plan.items} items: {' '.join(cmd[1:])}", flush=True)
            rc = run_engine_bench(cmd, out.with_suffix(".log"), f"[{plan.items}] ")
            if rc != 0:
                failed[str(plan.items)] = f"engine_bench exited {rc}; see {out.with_suffix('.log')}"
                continue
        try:
            for row in collect(out):
                run.add(row.metric, row.value, row.unit, **row.labels)
        except (OSError, ValueError) as exc:
            failed[str(plan.items)] = f"{type(exc).__name__}: {exc}"
    run.details["failed"] = failed
    run.details["sources"] = [str(result_path(args.results_dir, p.items, args.quick))
                              for p in args.plans]  # fmt: skip
    for items, why in failed.items():
        run.note(f"FAILED at {items} items: {why}")
    run.note("the CPU is shared with other work: see the cores other processes kept busy")
    run.finish(args.out)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
