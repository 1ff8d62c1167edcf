"""What a benchmark's timings depend on: the machine, package versions, and its load;
and this process's memory and CPU time.

Light on purpose (no numpy, FAISS or torch import), so a benchmark can record it in
processes whose own import time and memory it measures.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import resource
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
    average inside the VM shows: compare it across runs before comparing their latencies."""
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


def proc_status_mib() -> dict[str, float]:
    """VmRSS, VmHWM (peak), RssAnon, RssFile and RssShmem of this process in MiB, from
    /proc/self/status (Linux; empty elsewhere)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[name] = int(value.split()[0]) / 1024  # kB
    except OSError:
        pass
    return out


def own_cpu_seconds(children: bool = False) -> float:
    """User + system CPU seconds of this process (``children``: of its waited-for
    child processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (Linux), else NaN: its
    growth over a phase, less the process's own, is what others used meanwhile."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its living descendants (Linux)."""
    stats: dict[int, tuple[int, int]] = {}  # pid: (parent pid, clock ticks)
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    ticks, todo = 0, [pid]
    while todo:
        parent = todo.pop()
        ticks += stats.get(parent, (0, 0))[1]
        todo += [child for child, (up, _) in stats.items() if up == parent]
    return ticks / os.sysconf("SC_CLK_TCK")
