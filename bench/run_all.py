"""Every ownrank benchmark in one command, then the report: the numbers anyone can reproduce.

    python bench/run_all.py --quick            # each benchmark's quick mode: ~25 min
    python bench/run_all.py                    # full sizes, engine 3x: ~1 h 52 min
    python bench/run_all.py --only engine,erasure_vs_retrain --repeats 5
    python bench/run_all.py --skip service,index --data-dir /path/to/movielens

Benchmarks run one after another, never in parallel (they measure speed on the
same cores), each as a subprocess of this Python (``sys.executable``) from the
project root, its output streamed to ``bench/results/logs/<label>[_quick].log``
and echoed here, under a per-benchmark timeout (the process group is killed when
it runs out; the next benchmark still runs).

Speed figures that scatter from run to run (engine, encoder, index) are measured
``--repeats`` times (default: 1 quick; full: engine 3, the others 1, as each already
reports medians); each repeat is kept as ``<stem>_r<i>.json`` and the report shows the
median and the range. ``engine_bench.py --no-encrypt`` runs right after the first sealed
engine run, so the report can state what sealing user records costs. The machine, and a
CPU probe before and after every benchmark, go to ``bench/results/run_all[_quick].json``.
A benchmark whose script does not exist is skipped with a message. The service
benchmark runs through ``scripts/bench_service.sh`` (installs wrk when missing).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import harness
import machine_info

ROOT = harness.ROOT
RESULTS = harness.RESULTS
PACKAGES = (
    "numpy",
    "scipy",
    "faiss-cpu",
    "torch",
    "onnxruntime",
    "sentence-transformers",
    "lmdb",
    "implicit",
    "lightfm",
    "matplotlib",
)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark script and how run_all drives it. Every script takes ``--out``."""

    name: str
    script: str  # relative to the project root
    stem: str  # results file: <stem>.json, quick <stem>_quick.json
    timeout_quick_s: int
    timeout_full_s: int
    repeatable: bool = False  # noisy speed figures: run --repeats times
    full_repeats: int = 3  # runs in full mode when --repeats is not given (repeatable only)
    data_dir: bool = False  # takes --data-dir (evaluation data)
    args: tuple[str, ...] = ()  # in both modes
    quick_args: tuple[str, ...] = ("--quick",)  # in --quick mode (smaller sizes)

    def out(self, quick: bool, repeat: int | None = None) -> str:
        """The results file, relative to bench/results."""
        name = harness.default_out(self.stem, quick).stem
        return f"{name}_r{repeat}.json" if repeat else f"{name}.json"


ENGINE_QUICK = (
    *("--quick", "--items", "10000", "--users", "500", "--queries", "200"),
    *("--erase", "200", "--bulk-users", "300", "--profile-calls", "0"),
)

# In run order: the headline benchmarks first, so a partial run is still useful.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "engine", "bench/engine_bench.py", "engine_bench", 900, 3600, True,
        args=("--no-progress",), quick_args=ENGINE_QUICK,
    ),
    Benchmark(
        "engine_noencrypt", "bench/engine_bench.py", "engine_bench_noencrypt", 900, 3600,
        args=("--no-progress", "--no-encrypt"), quick_args=ENGINE_QUICK,
    ),
    Benchmark(
        "erasure_vs_retrain", "bench/erasure_vs_retrain.py", "erasure_vs_retrain", 900, 1800,
        data_dir=True, quick_args=("--quick", "--dataset", "ml-100k"),
    ),
    Benchmark(
        "encoder", "bench/encoder_bench.py", "encoder_bench", 900, 3600, True,
        full_repeats=1,  # already the median of 5 timed rounds per configuration
        quick_args=("--quick", "--batches", "32"),
    ),
    Benchmark(
        "index", "bench/index_bench.py", "index_bench", 900, 5400, True,
        full_repeats=1,  # 1000 timed queries per figure; its 1M HNSW build takes ~13 min
        quick_args=("--quick", "--sizes", "10000,30000", "--queries", "200"),
    ),
    Benchmark(
        "scale", "bench/scale_bench.py", "scale_bench", 900, 5400,
        quick_args=("--quick", "--sizes", "5000,10000", "--users", "300", "--queries", "200"),
    ),
    Benchmark(
        "service", "scripts/bench_service.sh", "service_bench", 1200, 5400,
        quick_args=(
            *("--quick", "--items", "10000", "--users", "1000"),
            *("--duration", "8", "--warmup", "2"),
        ),
    ),
    Benchmark("catalog", "bench/catalog_bench.py", "catalog_bench", 900, 2400),
    Benchmark(
        "quality", "bench/quality.py", "quality", 1800, 7200, data_dir=True,
        quick_args=("--quick", "--datasets", "ml-1m-half"),  # the targets' dataset
    ),
    Benchmark(
        "peers", "bench/run_peers.py", "peers", 1800, 5400, data_dir=True,
        quick_args=("--quick", "--datasets", "ml-100k"),
    ),
    Benchmark(
        "collaborative", "bench/collaborative_bench.py", "collaborative_bench", 1800, 5400
    ),
    Benchmark(
        "tune_defaults", "bench/tune_defaults.py", "tune_defaults", 3600, 14400, data_dir=True
    ),
    Benchmark("record_size", "bench/record_size.py", "record_size", 900, 900, quick_args=()),
    Benchmark("blas_threads", "bench/blas_threads_bench.py", "blas_threads_bench", 900, 1800),
    Benchmark(
        "sync", "bench/sync_bench.py", "sync_bench", 600, 900, quick_args=("--calls", "100")
    ),
    Benchmark(
        "catalog_sync", "bench/catalog_sync_bench.py", "catalog_sync_bench", 900, 1800
    ),
)  # fmt: skip
NAMES = tuple(b.name for b in BENCHMARKS)


@dataclass(frozen=True)
class Step:
    """One subprocess of the plan."""

    name: str  # the benchmark's name (what --only / --skip select)
    label: str  # unique: name, or name_r<i> for a repeat
    command: tuple[str, ...]  # run from the project root; ends with --out <out>
    script: str
    out: str  # the results file it writes, relative to bench/results
    log: str  # relative to bench/results
    timeout_s: int
    clear_glob: str | None = None  # an earlier run's repeat files, removed before repeat 1


def select(only: Sequence[str] | None, skip: Sequence[str] | None) -> list[str]:
    """Benchmark names to run, in run order; unknown names raise ValueError."""
    for names in (only or (), skip or ()):
        unknown = sorted(set(names) - set(NAMES))
        if unknown:
            raise ValueError(f"unknown benchmarks {unknown}; choose from {', '.join(NAMES)}")
    chosen = [n for n in NAMES if not only or n in only]
    return [n for n in chosen if n not in (skip or ())]


def plan(
    quick: bool,
    only: Sequence[str] | None = None,
    skip: Sequence[str] | None = None,
    repeats: int | None = None,
    data_dir: Path | None = None,
) -> list[Step]:
    """The commands a run executes, in order (nothing is run here).

    The unsealed engine run comes right after the first sealed one, so both see the
    machine in a similar state."""
    if repeats is not None and repeats < 1:
        raise ValueError("--repeats must be >= 1")
    by_name = {b.name: b for b in BENCHMARKS}
    steps: list[Step] = []
    for name in select(only, skip):
        bench = by_name[name]
        runs = (repeats or (1 if quick else bench.full_repeats)) if bench.repeatable else 0
        for repeat in range(1, runs + 1) if runs else [None]:
            out = bench.out(quick, repeat)
            head = ("bash",) if bench.script.endswith(".sh") else (sys.executable,)
            args = [*bench.args, *(bench.quick_args if quick else ())]
            if bench.data_dir and data_dir is not None:
                args += ["--data-dir", str(data_dir)]
            label = f"{name}_r{repeat}" if repeat else name
            step = Step(
                name,
                label,
                (*head, bench.script, *args, "--out", f"bench/results/{out}"),
                bench.script,
                out,
                f"logs/{Path(out).stem}.log",
                bench.timeout_quick_s if quick else bench.timeout_full_s,
                f"{Path(bench.out(quick)).stem}_r*.json" if repeat == 1 else None,
            )
            if name == "engine_noencrypt":
                at = next((i + 1 for i, s in enumerate(steps) if s.label == "engine_r1"), None)
                steps.insert(len(steps) if at is None else at, step)
            else:
                steps.append(step)
    return steps


# -- running --------------------------------------------------------------------------------


def _stream(pipe: TextIO, log: TextIO, label: str, echo: bool) -> None:
    for line in pipe:
        log.write(line)
        log.flush()
        if echo:
            sys.stdout.write(f"[{label}] {line}")
            sys.stdout.flush()


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Stop the benchmark we started and its children (its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=10)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def run_step(step: Step, results: Path, echo: bool = True) -> dict[str, object]:
    """Run one step; its record (status ok / failed / timeout / skipped)."""
    record: dict[str, object] = {"step": step.label, "command": " ".join(step.command)}
    if not (ROOT / step.script).exists():
        print(f"== {step.label}: skipped, {step.script} does not exist", flush=True)
        return {**record, "status": "skipped", "reason": f"{step.script} does not exist"}
    out, log_path = results / step.out, results / step.log
    for stale in results.glob(step.clear_glob) if step.clear_glob else ():
        stale.unlink()  # not to be mixed with this run's repeats
    log_path.parent.mkdir(parents=True, exist_ok=True)
    record["cpu probe before"] = machine_info.cpu_probe()
    print(f"\n== {step.label}: {record['command']} (timeout {step.timeout_s} s)", flush=True)
    start, started_wall = time.perf_counter(), time.time()
    code: int | None = None
    with log_path.open("w") as log:
        log.write(f"$ {record['command']}\n")
        log.flush()
        proc = subprocess.Popen(
            step.command,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a timeout kills all of it
        )
        assert proc.stdout is not None
        reader = threading.Thread(target=_stream, args=(proc.stdout, log, step.label, echo))
        reader.start()
        try:
            code = proc.wait(timeout=step.timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
        except BaseException:  # Ctrl-C reaches only us (new session): stop it too
            _kill_group(proc)
            raise
        finally:
            reader.join(timeout=30)
    fresh = out.exists() and out.stat().st_mtime >= started_wall - 1.0
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["cpu probe after"] = machine_info.cpu_probe()
    record["status"] = "timeout" if code is None else ("ok" if code == 0 else "failed")
    if code == 0 and not fresh:
        record["status"] = "failed"
        record["reason"] = f"exited 0 but wrote no new {step.out}"
    print(f"== {step.label}: {record['status']} in {record['seconds']} s", flush=True)
    return record


def describe_machine() -> dict[str, object]:
    """What every timing depends on beyond the CPU: RAM, OS, library versions."""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    kb = next((ln.split()[1] for ln in meminfo.splitlines() if ln.startswith("MemTotal")), None)
    os_release = Path("/etc/os-release")
    pretty = next(
        (
            ln.split("=", 1)[1].strip('"')
            for ln in (os_release.read_text().splitlines() if os_release.exists() else [])
            if ln.startswith("PRETTY_NAME=")
        ),
        platform.system(),
    )
    return {
        **machine_info.machine(PACKAGES),
        "ram_gib": round(int(kb) / 2**20, 1) if kb else None,
        "os": pretty,
    }


def record_run(run: harness.Run, records: Sequence[dict[str, object]]) -> None:
    """Each step's time, status and CPU probes as rows of run_all's own result file."""
    for r in records:
        step = str(r["step"])
        run.add("status", str(r["status"]), "", step=step)
        for metric, unit in (
            ("seconds", "s"),
            ("cpu probe before", "ms"),
            ("cpu probe after", "ms"),
        ):
            if metric in r:
                run.add(metric, r[metric], unit, step=step)  # type: ignore[arg-type]
    run.details["steps"] = list(records)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n")[0],
        epilog=f"benchmarks: {', '.join(NAMES)}",
    )
    p.add_argument("--quick", action="store_true", help="each benchmark's quick mode")
    p.add_argument("--only", help="comma-separated benchmarks to run")
    p.add_argument("--skip", help="comma-separated benchmarks not to run")
    p.add_argument("--repeats", type=int, help="runs of engine/encoder/index (quick 1; full 3/1/1)")
    p.add_argument("--data-dir", type=Path, help="evaluation data (quality, peers, erasure)")
    p.add_argument("--no-report", dest="report", action="store_false", help="skip the report")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--quiet", action="store_true", help="only the logs get benchmark output")
    args = p.parse_args(argv)

    def names(text: str | None) -> list[str] | None:
        return None if text is None else [n.strip() for n in text.split(",") if n.strip()]

    try:
        steps = plan(args.quick, names(args.only), names(args.skip), args.repeats, args.data_dir)
    except ValueError as exc:
        p.error(str(exc))
    if args.dry_run:
        for step in steps:
            print(f"{step.label:<22} {' '.join(step.command)}")
        return 0
    run = harness.Run("run_all", vars(args), quick=args.quick)
    run.machine = describe_machine()
    run.table(
        "Steps", by=["step"], metrics=["status", "seconds", "cpu probe before", "cpu probe after"]
    )
    run.note("compare the CPU probe of two runs before comparing their latencies")
    records = [run_step(step, RESULTS, echo=not args.quiet) for step in steps]
    record_run(run, records)
    run.finish(harness.default_out("run_all", args.quick))
    if args.report:
        command = [sys.executable, "bench/report.py", *(["--quick"] if args.quick else [])]
        print(f"\n$ {' '.join(command)}", flush=True)
        if subprocess.run(command, cwd=ROOT, check=False).returncode != 0:
            print("report failed", file=sys.stderr)
            return 1
    return 1 if any(r["status"] in ("failed", "timeout") for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())
