"""Scale benchmark: the engine's latencies as the catalog grows (10k, 100k, 1M items).

Runs ``bench/engine_bench.py`` once per catalog size, each in its own process (one
size's memory is gone before the next starts, and a crash at 1M leaves the smaller
sizes' results), writing ``<results-dir>/scale_engine[_quick]_<items>.json`` and the
``.log`` beside it. Then collects, per size (rows labelled with ``items``): recommend
latency (plain, topic-filtered, diversity, cold start, from a history), search,
interact events/s and call latency, user record sizes, catalog upsert rate, erase
latency, peak RSS, and how busy other processes kept the CPUs in each phase.

Users stay at 2000 at every size, so the sizes differ only in the catalog; 1000
timed calls per kind (300 at 1M), no cProfile samples. About 30 minutes on 2 cores,
most of it upserting 1M items (HNSW inserts); plan for a 3-5 GB peak RSS at 1M.

    python bench/scale_bench.py --quick        # 10k and 20k items, 500 users (~2-3 minutes)
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
INTERACT: Where = {"phase": "interact", "stored": None}
RECORDS: Where = {"phase": "records", "users": "all"}
COLLECTED: tuple[tuple[str, Mapping[str, harness.Label]], ...] = (
    *((f"recommend {q}", {"phase": "recommend", "kind": k}) for k in RECOMMEND_KINDS
      for q in LATENCY),
    *((f"search {q}", {"phase": "search", "kind": k}) for k in ("personalized", "unpersonalized")
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


# --quick or not: (catalog sizes, users, timed calls per kind, erasures, users past the caps)
MODES = {
    True: ((10_000, 20_000), 500, 300, 100, 2),
    False: ((10_000, 100_000, 1_000_000), 2_000, 1_000, 300, 3),
}


def plans(args: argparse.Namespace) -> tuple[SizePlan, ...]:
    """One plan per size: the mode's users and calls (300 calls at 1M items), or those
    given with --users / --queries."""
    sizes, users, queries, erase, cap_users = MODES[args.quick]
    if args.users is not None:
        # half the users at most: engine_bench's reopen phase needs some left
        users, erase = args.users, min(erase, args.users // 2)
    if args.queries is not None:
        queries = args.queries
    out = []
    for items in args.sizes or sizes:
        calls = 300 if items >= 1_000_000 and args.queries is None else queries
        out.append(SizePlan(items, users, calls, erase, cap_users))
    return tuple(out)


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
    out += [
        harness.Row("queries", doc["params"]["queries"], "count"),
        harness.Row("load average at start", doc["machine"]["loadavg_at_start"][0], "load"),
        harness.Row("load average at end", doc["loadavg_at_end"][0], "load"),
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
    p.add_argument(
        "--content-neighbours",
        type=int,
        help="engine_bench --content-neighbours (0: no lists; at 1M they take hours)",
    )
    p.add_argument("--index-kind", help="engine_bench --index-kind (default auto)")
    p.add_argument("--data-dir", type=Path, help="where engine_bench's stores go (default: tmp)")
    p.add_argument("--results-dir", type=Path, default=harness.RESULTS,
                   help="where the per-size engine_bench results and logs go")  # fmt: skip
    p.add_argument("--collect-only", action="store_true", help="re-read earlier runs' results")
    p.add_argument("--out", type=Path, help="JSON results file (default bench/results/...)")
    args = p.parse_args(argv)
    args.plans = plans(args)
    args.out = args.out or harness.default_out("scale_bench", args.quick)
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
    for kind, bound in (("plain", 10.0), ("topic_filter", 25.0)):
        where = {"phase": "recommend", "kind": kind, "items": 1_000_000}
        run.target(f"recommend p99 at 1M items, {kind}", "recommend p99", "<=", bound, where,
                   "issue 24")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = harness.Run("scale_bench", vars(args), quick=args.quick)
    run.details["plan"] = [asdict(p) for p in args.plans]
    failed: dict[str, str] = {}
    declare(run)
    for plan in args.plans:
        out = result_path(args.results_dir, plan.items, args.quick)
        if not args.collect_only:
            passed = ("seed", "warmup", "data_dir", "blas_threads", "content_neighbours",
                      "index_kind")  # fmt: skip
            options = {k: getattr(args, k) for k in passed}
            cmd = engine_bench_command(plan, out, **options)
            print(f"\n== {plan.items} items: {' '.join(cmd[1:])}", flush=True)
            rc = run_engine_bench(cmd, out.with_suffix(".log"), f"[{plan.items}] ")
            if rc != 0:
                failed[str(plan.items)] = f"engine_bench exited {rc}; see {out.with_suffix('.log')}"
                continue
        try:
            run.rows += collect(out)
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
