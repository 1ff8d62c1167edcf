"""Scale benchmark: the engine's latencies as the catalog grows (10k, 100k, 1M items).

Runs ``bench/engine_bench.py`` once per catalog size, each in its own process (so
one size's memory is gone before the next starts, and a crash at 1M leaves the
smaller sizes' results), with its JSON written to
``bench/results/scale_engine_<items>.json`` (``scale_engine_quick_<items>.json``
with --quick) and its output to the ``.log`` beside it. Then collects, per size:
recommend p50 / p99 / mean (plain, topic-filtered, diversity, cold start, from a
history), personalized search, interact events/s and call latency, the median
(and p90 / p99) user record size, catalog upsert rate, erase latency, peak RSS,
and how busy other processes kept the CPUs, into ``bench/results/scale_bench.json``
(``scale_bench_quick.json``), and prints a table.

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
    python bench/scale_bench.py --collect-only # re-read the per-size JSON files, print
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

Json = dict[str, Any]

BENCH_DIR = Path(__file__).resolve().parent
ENGINE_BENCH = BENCH_DIR / "engine_bench.py"
RESULTS_DIR = BENCH_DIR / "results"
RECOMMEND_KINDS = ("plain", "topic_filter", "diversity_0.3", "cold_start", "from_history_50_events")


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


def engine_bench_command(
    plan: SizePlan,
    out: Path,
    *,
    seed: int | None = None,
    warmup: int | None = None,
    data_dir: Path | None = None,
    blas_threads: int | None = None,
) -> list[str]:
    """The engine_bench command line of one size (same interpreter as this process)."""
    cmd = [
        sys.executable,
        str(ENGINE_BENCH),
        "--items",
        str(plan.items),
        "--users",
        str(plan.users),
        "--queries",
        str(plan.queries),
        "--erase",
        str(plan.erase),
        "--cap-users",
        str(plan.cap_users),
        "--profile-calls",
        "0",
        "--no-progress",
        "--out",
        str(out),
    ]
    for flag, value in (
        ("--seed", seed),
        ("--warmup", warmup),
        ("--data-dir", data_dir),
        ("--blas-threads", blas_threads),
    ):
        if value is not None:
            cmd += [flag, str(value)]
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
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            fh.write(line)
            if echo:
                print(f"{prefix}{line}", end="", flush=True)
        return proc.wait()


def _get(data: Json, *path: str) -> Any:
    """``data[path[0]][path[1]]...``, or a ValueError naming the missing field."""
    node: Any = data
    for i, key in enumerate(path):
        if not isinstance(node, dict) or key not in node:
            raise ValueError(f"engine_bench JSON has no {'.'.join(path[: i + 1])}")
        node = node[key]
    return node


def _latency(stats: Json) -> Json:
    return {k: stats[k] for k in ("count", "p50_ms", "p99_ms", "mean_ms") if k in stats}


def collect(path: Path) -> Json:
    """The figures of one engine_bench JSON this benchmark compares across sizes."""
    data = json.loads(path.read_text())
    recommend = {name: _latency(_get(data, "recommend", name)) for name in RECOMMEND_KINDS}
    records = _get(data, "records", "all_users")
    interact = _get(data, "interact")
    phases = _get(data, "phase_memory")
    return {
        "source": str(path),
        "items": _get(data, "catalog", "items"),
        "users": _get(data, "interact", "users"),
        "queries": _get(data, "args", "queries"),
        "index_type": _get(data, "sizes", "index_type"),
        "recommend": recommend,
        "search": {
            name: _latency(_get(data, "search", name))
            for name in ("personalized", "unpersonalized")
        },
        "interact": {
            "events_per_s": _get(interact, "events_per_s"),
            "events_per_s_in_calls": _get(interact, "events_per_s_in_calls"),
            "call_p50_ms": _get(interact, "call_latency", "p50_ms"),
            "call_p99_ms": _get(interact, "call_latency", "p99_ms"),
        },
        "record_bytes": {
            "median": _get(records, "median_bytes"),
            "p90": _get(records, "p90_bytes"),
            "p99": _get(records, "p99_bytes"),
            "max": _get(records, "max_bytes"),
        },
        "catalog": {
            "upsert_items_per_s": _get(data, "catalog", "items_per_s"),
            "upsert_seconds": _get(data, "catalog", "seconds"),
        },
        "erase": _latency(_get(data, "erase")),
        "peak_rss_mb": _get(data, "memory", "process_peak_mb"),
        "other_processes_cpu_cores": {
            name: phase.get("other_processes_cpu_cores") for name, phase in phases.items()
        },
        "loadavg_at_start": _get(data, "machine", "loadavg_at_start"),
        "loadavg_at_end": _get(data, "loadavg_at_end"),
        "total_seconds": _get(data, "total_seconds"),
    }


def print_table(sizes: Sequence[Json]) -> None:
    """One column per catalog size."""
    if not sizes:
        print("no results")
        return

    def lat(s: Json) -> str:
        return f"{s['p50_ms']:.2f} / {s['p99_ms']:.2f}"

    rows: list[tuple[str, ...]] = [
        ("items", *(f"{s['items']:,}" for s in sizes)),
        ("index", *(str(s["index_type"]) for s in sizes)),
        ("users / timed calls", *(f"{s['users']} / {s['queries']}" for s in sizes)),
    ]
    labels = {
        "plain": "recommend p50 / p99 ms",
        "topic_filter": "  topic-filtered",
        "diversity_0.3": "  diversity 0.3",
        "cold_start": "  cold start",
        "from_history_50_events": "  from history (50 ev.)",
    }
    for name, label in labels.items():
        rows.append((label, *(lat(s["recommend"][name]) for s in sizes)))
    rows += [
        ("search personalized p50 / p99", *(lat(s["search"]["personalized"]) for s in sizes)),
        ("interact events/s", *(f"{s['interact']['events_per_s']:.0f}" for s in sizes)),
        (
            "interact call p50 / p99 ms",
            *(
                f"{s['interact']['call_p50_ms']:.2f} / {s['interact']['call_p99_ms']:.2f}"
                for s in sizes
            ),
        ),
        ("record bytes median", *(f"{s['record_bytes']['median']:.0f}" for s in sizes)),
        ("erase p50 / p99 ms", *(lat(s["erase"]) for s in sizes)),
        ("catalog upsert items/s", *(f"{s['catalog']['upsert_items_per_s']:.0f}" for s in sizes)),
        ("peak RSS MiB", *(f"{s['peak_rss_mb']:.0f}" for s in sizes)),
        (
            "other cores busy (recommend)",
            *(str(s["other_processes_cpu_cores"].get("recommend")) for s in sizes),
        ),
        (
            "load avg start -> end",
            *(f"{s['loadavg_at_start'][0]} -> {s['loadavg_at_end'][0]}" for s in sizes),
        ),
        ("run seconds", *(f"{s['total_seconds']:.0f}" for s in sizes)),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            ),
            flush=True,
        )


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
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--collect-only", action="store_true", help="re-read earlier runs' JSON only")
    p.add_argument("--out", type=Path, help="JSON results file")
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
                min(p.erase, args.users) if args.users is not None else p.erase,
                p.cap_users,
            )
            for p in plans
        )
    args.plans = plans
    if args.out is None:
        args.out = args.results_dir / (
            "scale_bench_quick.json" if args.quick else "scale_bench.json"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    result: Json = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "plan": [asdict(p) for p in args.plans],
        "sizes": {},
        "failed": {},
    }
    for plan in args.plans:
        out = result_path(args.results_dir, plan.items, args.quick)
        if not args.collect_only:
            cmd = engine_bench_command(
                plan,
                out,
                seed=args.seed,
                warmup=args.warmup,
                data_dir=args.data_dir,
                blas_threads=args.blas_threads,
            )
            print(f"\n== {plan.items} items: {' '.join(cmd[1:])}", flush=True)
            rc = run_engine_bench(cmd, out.with_suffix(".log"), f"[{plan.items}] ")
            if rc != 0:
                result["failed"][str(plan.items)] = (
                    f"engine_bench exited {rc}; see {out.with_suffix('.log')}"
                )
                continue
        try:
            result["sizes"][str(plan.items)] = collect(out)
        except (OSError, ValueError) as exc:
            result["failed"][str(plan.items)] = f"{type(exc).__name__}: {exc}"
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = round(time.time() - started, 1)
    print("\n== scale summary (CPU shared with other work: see load and busy cores)")
    print_table(list(result["sizes"].values()))
    for items, why in result["failed"].items():
        print(f"FAILED {items}: {why}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (total {result['total_seconds']:.0f} s)", flush=True)
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
