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

Honesty rules this runner enforces:

- speed figures that scatter from run to run (engine, encoder, index) are
  measured ``--repeats`` times (default: 1 quick; full: engine 3, encoder and index 1,
  as each already reports the median of its own timed rounds or 1000 queries, and
  index's 1M-item HNSW build takes ~13 minutes a run); each repeat's JSON is
  kept as ``<stem>_r<i>.json`` and the report shows the median and the min-max;
- ``engine_bench.py --no-encrypt`` runs once, right after the first sealed engine
  run, so the report can state what sealing user records costs;
- the machine (CPU, RAM, OS, library versions, git commit and dirty flag) and the
  load average before and after every benchmark go to
  ``bench/results/run_all[_quick].json``; the report only shows numbers found in
  the JSON files the benchmarks wrote.

Time on the 2-core development machine (sum of the scripts' own estimates and
runs): quick ~25 minutes (quality ~7, peers ~4, encoder ~3, service ~3, engine
2 x ~1.5, index ~2, scale ~2, erasure ~1.5, catalog ~1); full 1 h 52 min measured
from a fresh clone on 2026-11-23 (encoder 25.5, scale 23, index 20.5, engine
4 x 4-5, quality 7, service 6, peers 5, erasure 3, catalog 3; the service
benchmark's ``floor`` scenario, added since, takes about 1.5 minutes more);
``--repeats 3`` adds ~90 minutes (two more encoder and index runs).

A benchmark whose script does not exist (yet) is skipped with a message. The
service benchmark runs through ``scripts/bench_service.sh`` (installs wrk with
apt-get when missing, and runs ``scripts/setup.sh``). ``quality.py`` always writes
``quality.json``: in quick mode its output is moved to ``quality_quick.json`` and
a full-mode ``quality.json`` that was there is put back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import machine_info

Json = dict[str, Any]

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LOGS = RESULTS / "logs"
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
    """One benchmark script and how run_all drives it."""

    name: str
    script: str  # relative to the project root
    stem: str  # results file stem: <stem>.json, quick <stem>_quick.json
    timeout_quick_s: int
    timeout_full_s: int
    repeatable: bool = False  # noisy speed figures: run --repeats times
    full_repeats: int = 3  # runs in full mode when --repeats is not given (repeatable only)
    data_dir: bool = False  # takes --data-dir (evaluation data)
    args: tuple[str, ...] = ()
    out_flag: str | None = None  # the script's option naming its JSON output
    fixed_output: bool = False  # writes <stem>.json in quick mode too (no option to change it)
    shell: bool = False  # a bash script rather than a Python one
    # in --quick mode, after the script's own --quick: smaller sizes, so the whole
    # quick run takes minutes (its figures are smoke checks, not the headline)
    quick_args: tuple[str, ...] = ()

    def results_file(self, quick: bool) -> str:
        return f"{self.stem}_quick.json" if quick else f"{self.stem}.json"


ENGINE_QUICK = (
    *("--items", "10000", "--users", "500", "--queries", "200"),
    *("--erase", "200", "--bulk-users", "300", "--profile-calls", "0"),
)

# In run order: the headline benchmarks first, so a partial run is still useful.
BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark(
        "engine",
        "bench/engine_bench.py",
        "engine_bench",
        900,
        3600,
        True,
        args=("--no-progress",),
        quick_args=ENGINE_QUICK,
    ),
    Benchmark(
        "engine_noencrypt",
        "bench/engine_bench.py",
        "engine_bench_noencrypt",
        900,
        3600,
        args=("--no-progress", "--no-encrypt"),
        out_flag="--out",
        quick_args=ENGINE_QUICK,
    ),
    Benchmark(
        "erasure_vs_retrain",
        "bench/erasure_vs_retrain.py",
        "erasure_vs_retrain",
        900,
        1800,
        data_dir=True,
        quick_args=("--dataset", "ml-100k"),
    ),
    Benchmark(
        "encoder",
        "bench/encoder_bench.py",
        "encoder_bench",
        900,
        3600,
        True,
        full_repeats=1,  # already the median of 5 timed rounds per configuration
        quick_args=("--batches", "32"),
    ),
    Benchmark(
        "index",
        "bench/index_bench.py",
        "index_bench",
        900,
        5400,
        True,
        full_repeats=1,  # 1000 timed queries per figure; its 1M HNSW build takes ~13 min
        quick_args=("--sizes", "10000,30000", "--queries", "200"),
    ),
    Benchmark(
        "scale",
        "bench/scale_bench.py",
        "scale_bench",
        900,
        5400,
        quick_args=("--sizes", "5000,10000", "--users", "300", "--queries", "200"),
    ),
    Benchmark(
        "service",
        "scripts/bench_service.sh",
        "service_bench",
        1200,
        5400,
        shell=True,
        quick_args=("--items", "10000", "--users", "1000", "--duration", "8", "--warmup", "2"),
    ),
    Benchmark("catalog", "bench/catalog_bench.py", "catalog_bench", 900, 2400, out_flag="--out"),
    Benchmark(
        "quality",
        "bench/quality.py",
        "quality",
        1800,
        7200,
        data_dir=True,
        fixed_output=True,
        quick_args=("--datasets", "ml-1m-half"),  # the dataset the targets are stated on
    ),
    Benchmark(
        "peers",
        "bench/run_peers.py",
        "peers",
        1800,
        5400,
        data_dir=True,
        quick_args=("--datasets", "ml-100k"),
    ),
)
NAMES = tuple(b.name for b in BENCHMARKS)


def noencrypt_file(quick: bool) -> str:
    """engine_bench --no-encrypt's results file (the report reads it by this name)."""
    return "engine_bench_quick_noencrypt.json" if quick else "engine_bench_noencrypt.json"


@dataclass(frozen=True)
class Step:
    """One subprocess of the plan."""

    name: str  # the benchmark's name (what --only / --skip select)
    label: str  # unique: name, or name_r<i> for a repeat
    command: tuple[str, ...]  # run from the project root
    script: str
    log: str  # relative to bench/results
    timeout_s: int
    produces: str | None  # the JSON file the command writes (relative to bench/results)
    save_as: str | None  # where run_all keeps it, if not where it was written
    restore_previous: bool = False  # put back what ``produces`` held before
    repeat: int | None = None
    clear_glob: str | None = None  # stale repeat files removed before repeat 1


def select(only: Sequence[str] | None, skip: Sequence[str] | None) -> list[str]:
    """Benchmark names to run, in run order; unknown names raise ValueError."""
    for names in (only or (), skip or ()):
        unknown = sorted(set(names) - set(NAMES))
        if unknown:
            raise ValueError(f"unknown benchmarks {unknown}; choose from {', '.join(NAMES)}")
    chosen = [n for n in NAMES if not only or n in only]
    return [n for n in chosen if n not in (skip or ())]


def _split_names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def plan(
    quick: bool,
    only: Sequence[str] | None = None,
    skip: Sequence[str] | None = None,
    repeats: int | None = None,
    data_dir: Path | None = None,
) -> list[Step]:
    """The commands a run executes, in order (nothing is run here).

    Repeats of ``engine`` are interleaved with ``engine_noencrypt``: the unsealed run
    comes right after the first sealed one, so both see the machine in a similar state.
    """
    if repeats is not None and repeats < 1:
        raise ValueError("--repeats must be >= 1")
    names = select(only, skip)
    by_name = {b.name: b for b in BENCHMARKS}
    suffix = "_quick" if quick else ""
    steps: list[Step] = []
    for name in names:
        bench = by_name[name]
        command = _command(bench, quick, data_dir)
        timeout = bench.timeout_quick_s if quick else bench.timeout_full_s
        if name == "engine_noencrypt":
            produces = noencrypt_file(quick)
            step = Step(
                name,
                name,
                (*command, bench.out_flag or "--out", f"bench/results/{produces}"),
                bench.script,
                f"logs/{name}{suffix}.log",
                timeout,
                produces,
                None,
            )
            # right after the first sealed engine run, if that runs
            at = next((i + 1 for i, s in enumerate(steps) if s.label == "engine_r1"), len(steps))
            steps.insert(at, step)
            continue
        produces = bench.results_file(quick)
        if bench.out_flag:
            command = (*command, bench.out_flag, f"bench/results/{produces}")
        if bench.repeatable:
            n_repeats = repeats or (1 if quick else bench.full_repeats)
            stem = Path(produces).stem
            for i in range(1, n_repeats + 1):
                steps.append(
                    Step(
                        name,
                        f"{name}_r{i}",
                        command,
                        bench.script,
                        f"logs/{name}{suffix}_r{i}.log",
                        timeout,
                        produces,
                        f"{stem}_r{i}.json",
                        repeat=i,
                        clear_glob=f"{stem}_r*.json" if i == 1 else None,
                    )
                )
            continue
        fixed = bench.fixed_output and quick
        steps.append(
            Step(
                name,
                name,
                command,
                bench.script,
                f"logs/{name}{suffix}.log",
                timeout,
                f"{bench.stem}.json" if fixed else produces,
                produces if fixed else None,
                restore_previous=fixed,
            )
        )
    return steps


def _command(bench: Benchmark, quick: bool, data_dir: Path | None) -> tuple[str, ...]:
    head = ("bash", bench.script) if bench.shell else (sys.executable, bench.script)
    args = [*bench.args, *(["--quick", *bench.quick_args] if quick else [])]
    if bench.data_dir and data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return (*head, *args)


# -- machine --------------------------------------------------------------------------------


def _git(*args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.rstrip("\n")  # not strip(): porcelain lines start with a space


def _proc_field(path: str, key: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
    except OSError:
        pass
    return ""


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def describe_machine() -> Json:
    """What every timing depends on: hardware, OS, library versions, code version."""
    mem_kb = _proc_field("/proc/meminfo", "MemTotal").split()
    status = _git("status", "--porcelain")
    base = machine_info.machine(PACKAGES)
    del base["loadavg_at_start"]  # recorded per step instead
    return {
        **base,
        "ram_gib": round(int(mem_kb[0]) / 2**20, 1) if mem_kb else None,
        "os": _proc_field("/etc/os-release", "PRETTY_NAME").strip('"') or platform.system(),
        "git": {
            "commit": _git("rev-parse", "HEAD").strip(),
            "dirty": bool(status),
            "modified_files": [ln[3:] for ln in status.splitlines() if not ln.startswith("??")],
        },
    }


# -- running --------------------------------------------------------------------------------


def _stream(pipe: TextIO, log: TextIO, label: str, echo: bool) -> None:
    for line in pipe:
        log.write(line)
        log.flush()
        if echo:
            sys.stdout.write(f"[{label}] {line}")
            sys.stdout.flush()


def run_step(step: Step, results: Path, echo: bool = True) -> Json:
    """Run one step; its record for run_all.json (status ok / failed / timeout / skipped)."""
    record: Json = {
        "name": step.name,
        "label": step.label,
        "command": " ".join(step.command),
        "log": step.log,
        "json": step.save_as or step.produces,
        "repeat": step.repeat,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if not (ROOT / step.script).exists():
        record["status"] = "skipped"
        record["reason"] = f"{step.script} does not exist"
        print(f"== {step.label}: skipped, {step.script} does not exist", flush=True)
        return record
    if step.clear_glob:
        for stale in results.glob(step.clear_glob):
            stale.unlink()
    produced = results / step.produces if step.produces else None
    backup = None
    if step.restore_previous and produced is not None and produced.exists():
        backup = produced.with_name(produced.name + ".run_all-backup")
        shutil.copy2(produced, backup)
    log_path = results / step.log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    record["loadavg_before"] = loadavg()
    record["cpu_probe_ms_before"] = machine_info.cpu_probe()
    print(f"\n== {step.label}: {record['command']} (timeout {step.timeout_s} s)", flush=True)
    start, started_wall = time.perf_counter(), time.time()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    code: int | None = None
    try:
        with log_path.open("w") as log:
            log.write(f"$ {record['command']}\n")
            log.flush()
            proc = subprocess.Popen(
                step.command,
                cwd=ROOT,
                env=env,
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
        # written by this run (not a file an earlier run left there)
        fresh = (
            produced is not None
            and produced.exists()
            and produced.stat().st_mtime >= started_wall - 1.0
        )
        if code == 0 and fresh and step.save_as and produced is not None:
            shutil.copy2(produced, results / step.save_as)
    finally:
        if step.restore_previous and produced is not None:
            if backup is not None:
                shutil.move(backup, produced)
            elif step.save_as and produced.exists():
                produced.unlink()
    record["seconds"] = round(time.perf_counter() - start, 1)
    record["loadavg_after"] = loadavg()
    record["cpu_probe_ms_after"] = machine_info.cpu_probe()
    record["returncode"] = code
    record["status"] = "timeout" if code is None else ("ok" if code == 0 else "failed")
    record["json_written"] = bool(code == 0 and fresh)
    if code == 0 and not fresh and produced is not None:
        record["status"] = "failed"
        record["reason"] = f"exited 0 but wrote no new {produced.name}"
    print(f"== {step.label}: {record['status']} in {record['seconds']} s", flush=True)
    return record


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Stop the benchmark we started and its children (its own process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def manifest_path(results: Path, quick: bool) -> Path:
    return results / ("run_all_quick.json" if quick else "run_all.json")


def merge_steps(previous: Sequence[Json], current: Sequence[Json]) -> list[Json]:
    """Records of this run, plus earlier runs' records of benchmarks not run now."""
    ran = {r["name"] for r in current}
    return [r for r in previous if r.get("name") not in ran] + list(current)


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
    quick = bool(args.quick)
    try:
        steps = plan(
            quick, _split_names(args.only), _split_names(args.skip), args.repeats, args.data_dir
        )
    except ValueError as exc:
        p.error(str(exc))
    if args.dry_run:
        for step in steps:
            print(f"{step.label:<22} {' '.join(step.command)}  -> {step.save_as or step.produces}")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = manifest_path(RESULTS, quick)
    previous: list[Json] = []
    if path.exists():
        try:
            previous = list(json.loads(path.read_text()).get("steps", []))
        except (ValueError, AttributeError):
            previous = []
    manifest: Json = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "argv": list(sys.argv[1:] if argv is None else argv),
        "repeats": {s.name: s.repeat for s in steps if s.repeat is not None},  # runs per name
        "machine": describe_machine(),
        "loadavg_at_start": loadavg(),
        "steps": [],
    }
    print(f"machine: {json.dumps(manifest['machine'])}", flush=True)
    started = time.perf_counter()
    records: list[Json] = []
    for step in steps:
        records.append(run_step(step, RESULTS, echo=not args.quiet))
        manifest["steps"] = merge_steps(previous, records)
        manifest["total_seconds"] = round(time.perf_counter() - started, 1)
        path.write_text(json.dumps(manifest, indent=2) + "\n")  # kept current as we go
    manifest["loadavg_at_end"] = loadavg()
    manifest["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"\nwrote {path.relative_to(ROOT)}")
    for r in records:
        extra = f" ({r['reason']})" if "reason" in r else ""
        print(f"  {r['label']:<22} {r['status']:<8} {r.get('seconds', 0):>8} s{extra}")
    bad = [r for r in records if r["status"] in ("failed", "timeout")]
    if args.report:
        command = [sys.executable, "bench/report.py", *(["--quick"] if quick else [])]
        print(f"\n$ {' '.join(command)}", flush=True)
        done = subprocess.run(command, cwd=ROOT, check=False)
        if done.returncode != 0:
            print("report failed", file=sys.stderr)
            return 1
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
