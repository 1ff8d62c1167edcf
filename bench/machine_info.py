"""What a benchmark's timings depend on: the machine, package versions, and its load.

Light on purpose (no numpy, FAISS or torch import), so a benchmark can record it in
processes whose own import time and memory it measures.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
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
