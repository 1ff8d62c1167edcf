"""Base encoder benchmark: torch vs ONNX Runtime (fp32, int8, int8-rowwise), issue 5.

Throughput: texts/s embedding short (15 words) and long (60 words) texts cut
deterministically from the ml-1m plots, at batch 32 and 128, with 1 and 2
threads, for each backend. Every (backend, threads) pair runs in a fresh worker
process, so its load time (imports + weights + first text) and RSS growth after
load are those of a cold process. The configurations of a worker are measured
round-robin, ``--repeats`` rounds after one warm-up batch, and reported as
median with min/max; texts per CPU-second are given too, as they suffer less
than wall time from other processes sharing the machine (whose busy cores are
recorded per worker).

Agreement: every ONNX variant against torch on the demo catalog texts and the
ml-1m titles (``Title (year)`` as in movies.dat; the full run adds the rich
texts bench/quality.py embeds): per-text cosine min/mean and mean top-10
neighbour overlap. Issue 5's rule: a backend may become the default only with
cosine >= 0.99 on every text and overlap >= 0.95, on both sets.

Usage::

    python bench/encoder_bench.py --quick   # ~4 minutes on 2 quiet cores
    python bench/encoder_bench.py           # full: 1024/512 texts, 5 rounds, rich ml-1m texts

Results are printed and written to ``bench/results/encoder_bench.json``
(``encoder_bench_quick.json`` with ``--quick``). ONNX exports are cached in
``--cache-dir`` (default ``~/.cache/ownrank/onnx/...``); the first run exports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import machine_info
import numpy as np
from eval_data import ItemInfo, item_text, load_dataset

Json = dict[str, Any]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BACKENDS = ("torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-rowwise")
KINDS = {"short": 15, "long": 60}  # words per text
TARGET_SHORT_TEXTS_PER_S = 600.0
TARGET_THREADS = 2


def say(message: str) -> None:
    print(message, flush=True)


# -- texts ----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _items() -> list[ItemInfo]:
    dataset = load_dataset("ml-1m-half")
    return [dataset.items[i] for i in sorted(dataset.items)]


def bench_texts(kind: str, count: int, seed: int) -> list[str]:
    """``count`` texts of ``KINDS[kind]`` consecutive words of the ml-1m plots."""
    words = " ".join(info.plot or info.title for info in _items()).split()
    size = KINDS[kind]
    rng = np.random.default_rng([seed, size])
    starts = rng.integers(0, len(words) - size, count)
    return [" ".join(words[s : s + size]) for s in starts]


def title_texts() -> list[str]:
    return [f"{i.title} ({i.year})" if i.year else i.title for i in _items()]


def rich_texts() -> list[str]:
    return [item_text(i, rich=bool(i.plot or i.director)) for i in _items()]


def demo_texts() -> list[str]:
    from ownrank import Item
    from ownrank.demo import CATALOG_PATH

    with open(CATALOG_PATH) as fh:
        return [Item(**json.loads(line)).embedding_text() for line in fh if line.strip()]


# -- process measurements -------------------------------------------------------------------


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (Linux), else NaN."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def spread(values: Sequence[float], digits: int = 1) -> Json:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": len(values),
    }


# -- worker: one backend, one thread count --------------------------------------------------


def make_encoder(backend: str, threads: int, cache_dir: str | None) -> Any:
    """``BaseEncoder`` or ``OnnxEncoder`` (both have a settable ``batch_size``)."""
    from ownrank.engine.encoder import BaseEncoder
    from ownrank.engine.onnx_encoder import VARIANTS, OnnxEncoder

    if backend == "torch-fp32":
        return BaseEncoder(threads=threads)
    for variant in VARIANTS:
        if backend == f"onnx-{variant}":
            return OnnxEncoder(variant=variant, threads=threads, cache_dir=cache_dir)
    raise ValueError(f"unknown backend {backend!r}")


def worker(spec: Json) -> Json:
    texts = {kind: bench_texts(kind, spec["counts"][kind], spec["seed"]) for kind in KINDS}
    busy0, cpu0, wall0 = _busy_cpu_seconds(), _cpu_seconds(), time.perf_counter()
    rss0 = _status_mb("VmRSS")
    start = time.perf_counter()
    encoder = make_encoder(spec["backend"], spec["threads"], spec.get("cache_dir"))
    encoder.encode(["warm up the model"])
    load_s = time.perf_counter() - start
    rss_loaded = _status_mb("VmRSS")

    configs = [(kind, batch) for kind in KINDS for batch in spec["batches"]]
    wall: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    cpu: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    for kind, batch in configs:  # warm-up: one batch of each shape
        encoder.batch_size = batch
        encoder.encode(texts[kind][:batch])
    for _ in range(spec["repeats"]):
        for kind, batch in configs:
            encoder.batch_size = batch
            c0, t0 = _cpu_seconds(), time.perf_counter()
            vectors = encoder.encode(texts[kind])
            wall[(kind, batch)].append(len(texts[kind]) / (time.perf_counter() - t0))
            cpu[(kind, batch)].append(len(texts[kind]) / (_cpu_seconds() - c0))
            assert vectors.shape == (len(texts[kind]), encoder.dimension)

    elapsed = time.perf_counter() - wall0
    other = (_busy_cpu_seconds() - busy0) - (_cpu_seconds() - cpu0)
    return {
        "backend": spec["backend"],
        "threads": spec["threads"],
        "fingerprint": encoder.fingerprint,
        "load_seconds": round(load_s, 3),
        "rss_before_load_mb": round(rss0, 1),
        "rss_delta_after_load_mb": round(rss_loaded - rss0, 1),
        "peak_rss_mb": round(_status_mb("VmHWM"), 1),
        "texts": {kind: len(t) for kind, t in texts.items()},
        "texts_per_s": {f"{k}_b{b}": spread(wall[(k, b)]) for k, b in configs},
        "texts_per_cpu_s": {f"{k}_b{b}": spread(cpu[(k, b)]) for k, b in configs},
        "seconds": round(elapsed, 1),
        "other_processes_cpu_cores": round(max(other, 0.0) / elapsed, 2),
    }


def agreement_worker(spec: Json) -> Json:
    """Torch vectors once per text set, then every ONNX variant against them."""
    from ownrank.engine.onnx_encoder import VARIANTS, vector_agreement

    sets = {"demo": demo_texts(), "ml1m_titles": title_texts()}
    if spec.get("rich"):
        sets["ml1m_rich"] = rich_texts()
    sets = {name: list(dict.fromkeys(texts)) for name, texts in sets.items()}
    torch_encoder = make_encoder("torch-fp32", spec["threads"], None)
    start = time.perf_counter()
    reference = {name: torch_encoder.encode(texts) for name, texts in sets.items()}
    out: Json = {"torch_seconds": round(time.perf_counter() - start, 1), "variants": {}}
    for variant in VARIANTS:
        encoder = make_encoder(f"onnx-{variant}", spec["threads"], spec.get("cache_dir"))
        result: Json = {}
        for name, texts in sets.items():
            result[name] = vector_agreement(reference[name], encoder.encode(texts)).as_dict()
        result["passes"] = all(r["passes"] for r in result.values())
        out["variants"][f"onnx-{variant}"] = result
        say(f"  onnx-{variant}: {json.dumps(result)}")
    return out


def run_worker(kind: str, spec: Json) -> Json:
    """Run ``kind`` in a fresh interpreter; its last stdout line is the JSON result."""
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), f"--{kind}", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {spec} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    for line in lines[:-1]:
        say(line)
    result: Json = json.loads(lines[-1])
    return result


# -- main -----------------------------------------------------------------------------------


def machine() -> Json:
    packages = ("numpy", "torch", "onnxruntime", "onnx", "tokenizers", "sentence-transformers")
    return machine_info.machine(packages)


def ensure_exports(cache_dir: str | None) -> Json:
    """Export (or find cached) every ONNX variant before any worker is timed."""
    from ownrank.engine.encoder import bundled_model_dir
    from ownrank.engine.onnx_encoder import VARIANTS, OnnxEncoder, onnx_file

    out: Json = {}
    for variant in VARIANTS:
        encoder = OnnxEncoder(bundled_model_dir(), variant=variant, cache_dir=cache_dir)
        cached = onnx_file(encoder.cache_dir, variant).is_file()
        start = time.perf_counter()
        path = encoder.onnx_path
        out[variant] = {
            "path": str(path),
            "bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - start, 2),
            "was_cached": cached,
            "fingerprint": encoder.fingerprint,
        }
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="128 texts of each kind, 3 rounds")
    p.add_argument("--short-texts", type=int, help="short texts per timed run (default 1024)")
    p.add_argument("--long-texts", type=int, help="long texts per timed run (default 512)")
    p.add_argument("--repeats", type=int, help="timed rounds per configuration (default 5)")
    p.add_argument("--batches", type=int, nargs="+", default=[32, 128])
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--no-agreement", action="store_true", help="skip the agreement phase")
    p.add_argument("--rich", action=argparse.BooleanOptionalAction, help="agreement on rich texts")
    p.add_argument("--cache-dir", help="ONNX export cache (default ~/.cache/ownrank/onnx/...)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--out", type=Path, help="JSON results file")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--agreement-worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    args.short_texts = args.short_texts or (128 if quick else 1024)
    args.long_texts = args.long_texts or (128 if quick else 512)
    args.repeats = args.repeats or (3 if quick else 5)
    if args.rich is None:
        args.rich = not quick
    if args.out is None:
        args.out = RESULTS_DIR / ("encoder_bench_quick.json" if quick else "encoder_bench.json")
    return args


def _cell(stats: Json) -> str:
    return f"{stats['median']:.0f} ({stats['min']:.0f}-{stats['max']:.0f})"


def print_tables(result: Json) -> None:
    m = result["machine"]
    say(f"\n== throughput, texts/s: median (min-max) of {result['args']['repeats']} rounds")
    say(f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), load avg {m['loadavg_at_start']}")
    runs = result["throughput"]
    if runs:
        columns = list(runs[0]["texts_per_s"])
        header = ("backend", "thr", *columns, "load s", "RSS+ MiB", "other cores")
        rows = [header]
        for r in runs:
            rows.append(
                (
                    r["backend"],
                    str(r["threads"]),
                    *(_cell(r["texts_per_s"][c]) for c in columns),
                    f"{r['load_seconds']:.2f}",
                    f"{r['rss_delta_after_load_mb']:.0f}",
                    f"{r['other_processes_cpu_cores']:.2f}",
                )
            )
        _print_rows(rows)
        say("\ntexts per CPU-second (less sensitive to other processes), median:")
        rows = [("backend", "thr", *columns)]
        for r in runs:
            rows.append(
                (
                    r["backend"],
                    str(r["threads"]),
                    *(f"{r['texts_per_cpu_s'][c]['median']:.0f}" for c in columns),
                )
            )
        _print_rows(rows)
    agreement = result.get("agreement")
    if agreement:
        say("\n== agreement with torch (cosine per text; top-10 neighbour overlap)")
        rows = [("variant", "set", "texts", "cos min", "cos mean", "overlap", "passes")]
        for variant, sets in agreement["variants"].items():
            for name, a in sets.items():
                if name == "passes":
                    continue
                rows.append(
                    (
                        variant,
                        name,
                        str(a["texts"]),
                        f"{a['cosine_min']:.4f}",
                        f"{a['cosine_mean']:.5f}",
                        f"{a['neighbour_overlap']:.4f}",
                        "yes" if a["passes"] else "NO",
                    )
                )
        _print_rows(rows)
    say("\n" + result["verdict"])


def _print_rows(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        say(
            "  ".join(
                cell.ljust(w) if i < 2 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )


def verdict(result: Json) -> str:
    """Which backends meet the speed target, and which pass the acceptance rule."""
    passing = {"torch-fp32"} | {
        v for v, r in result.get("agreement", {}).get("variants", {}).items() if r["passes"]
    }
    lines = []
    for r in result["throughput"]:
        if r["threads"] != TARGET_THREADS:
            continue
        best = max(
            (s["median"], key) for key, s in r["texts_per_s"].items() if key.startswith("short")
        )
        ok = "meets" if best[0] >= TARGET_SHORT_TEXTS_PER_S else "misses"
        accepted = (
            "passes the acceptance rule"
            if r["backend"] in passing
            else ("fails the acceptance rule" if result.get("agreement") else "agreement not run")
        )
        lines.append(
            f"{r['backend']}: {best[0]:.0f} short texts/s ({best[1]}, {TARGET_THREADS} threads), "
            f"{ok} the {TARGET_SHORT_TEXTS_PER_S:.0f}/s target; {accepted}"
        )
    return "verdict:\n  " + "\n  ".join(lines) if lines else "verdict: no 2-thread runs"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.agreement_worker:
        print(json.dumps(agreement_worker(json.loads(args.agreement_worker))))
        return 0
    started = time.time()
    result: Json = {
        "machine": machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    say(f"machine: {json.dumps(result['machine'])}")
    result["exports"] = ensure_exports(args.cache_dir)
    say(f"exports: {json.dumps(result['exports'])}")
    counts = {"short": args.short_texts, "long": args.long_texts}
    result["throughput"] = []
    for threads in args.threads:
        for backend in args.backends:
            spec = {
                "backend": backend,
                "threads": threads,
                "batches": args.batches,
                "repeats": args.repeats,
                "counts": counts,
                "seed": args.seed,
                "cache_dir": args.cache_dir,
            }
            say(f"\n-- {backend}, {threads} thread(s)")
            run = run_worker("worker", spec)
            say(json.dumps({k: run[k] for k in ("load_seconds", "texts_per_s")}))
            result["throughput"].append(run)
    if not args.no_agreement:
        say("\n-- agreement with torch")
        # One thread: the figures do not depend on it, and it suffers least from other work.
        spec = {"threads": 1, "rich": args.rich, "cache_dir": args.cache_dir}
        result["agreement"] = run_worker("agreement-worker", spec)
    result["verdict"] = verdict(result)
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = round(time.time() - started, 1)
    print_tables(result)
    machine_info.write_results(result, args.out, " (other work on the machine skews the timings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
