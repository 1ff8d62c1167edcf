"""What a benchmark's timings depend on: the machine, package versions, and its load.

Light on purpose (no numpy, FAISS or torch import), so a benchmark can record it in
processes whose own import time and memory it measures.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine(packages: Sequence[str] = ()) -> dict[str, Any]:
    """CPU, platform, Python, the given packages' versions (by distribution name) and
    the load average now (the machine may be shared)."""
    return {
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {dist: package_version(dist) for dist in packages},
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def cpu_probe(rounds: int = 7) -> float:
    """Milliseconds a fixed single-threaded workload (a pure-Python loop and SHA-256 of
    4 MiB) takes, best of ``rounds`` after an untimed one.

    On one machine it stays put unless the host gives the VM less CPU, which no load
    average inside the VM shows (this development VM ran 20-60% slower for an hour):
    compare it across runs before comparing their latencies."""
    data = b"ownrank" * (600 * 1024)
    best = float("inf")
    for k in range(rounds + 1):
        start = time.perf_counter()
        total = 0
        for i in range(300_000):
            total += i * i
        hashlib.sha256(data).digest()
        if k:
            best = min(best, time.perf_counter() - start)
    return round(best * 1e3, 2)


def write_results(result: dict[str, Any], out: Path, detail: str = "") -> None:
    """Write a benchmark's JSON to ``out`` and say so, with the load average at its
    start and end (``result["machine"]["loadavg_at_start"]``, ``result["loadavg_at_end"]``)
    and ``detail`` after it."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(
        f"load average at start {result['machine']['loadavg_at_start']}, at end "
        f"{result['loadavg_at_end']}{detail}",
        flush=True,
    )
    print(f"wrote {out} (total {result['total_seconds']:.0f} s)", flush=True)
