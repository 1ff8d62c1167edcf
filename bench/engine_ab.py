"""Recommend speed of a base revision and of the working tree in one process, on the
engine benchmark's synthetic catalog (issue 19's target at 100k items).

``engine_bench.py`` times one version per process, and the VM's speed drifts from
process to process: the code before issue 19 read a plain recommend p99 of 5.81 to
11.04 ms in seven runs of one session (bench/README.md, 2026-12-07), so the ratio
of two runs says little. Here each version has its own store of the same catalog and
users (``engine_bench``'s generator, sizes and seed), written by that version with
its own defaults (before issue 19: an HNSW index; now, from 100k items, IVF and the
content-neighbour lists), built once and kept beside the store the other A/B scripts
share (``ivf_codes_ab.cached_store``, which is the working tree's; the base
revision's is named after it). One process opens both, and every call goes to
both engines, which one first alternating from call to call. Prints each version's
p50 / p99 per call kind (recommend plain, with a topic filter, with diversity 0.3)
and the ratios base / new: above 1, the working tree is faster. Both engines share
the CPU's caches, so the ratios are the measure, not the absolute times.

    python bench/engine_ab.py --base d2dc4f7^      # before issue 19: 100k items, 1,500 users
    python bench/engine_ab.py --base HEAD --items 5000 --users 100 --calls 50
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import engine_bench
import harness
import ivf_codes_ab
import numpy as np
from recommend_ab import forget_revision, import_revision, revision_id
from retrieval_ab import recommend_calls

import ownrank

CACHE = ivf_codes_ab.CACHE  # (the working tree's store is the one the A/B scripts share)


def build_store(package: ModuleType, path: Path, items: int, users: int, seed: int) -> None:
    """The catalog and users ``engine_bench`` makes for these sizes and seed, written by
    ``package``'s engine with its default settings (``ivf_codes_ab.populate``)."""
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    encoder = engine_bench.SyntheticEncoder()
    with package.Engine(tmp, package.EngineConfig(), encoder=encoder) as engine:
        ivf_codes_ab.populate(engine, items, users, seed)
    tmp.rename(path)


def compare(engines: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each recommend kind on both engines in turn; one summary row per kind."""
    count = args.calls + args.warmup
    users, topics = ivf_codes_ab.call_inputs(args.users, count, args.seed)
    rows = []
    for kind, call in recommend_calls(users, topics).items():
        took, _results = ivf_codes_ab.in_turn(engines, call, args.warmup, count)
        base, new = took["base"], took["new"]
        rows.append(
            {
                "call": kind,
                "base p50 / p99 (ms)": ivf_codes_ab.spread(base),
                "new p50 / p99 (ms)": ivf_codes_ab.spread(new),
                "base / new p50": round(float(np.percentile(base, 50) / np.percentile(new, 50)), 2),
                "base / new p99": round(float(np.percentile(base, 99) / np.percentile(new, 99)), 2),
                "median per-call base / new": round(float(np.median(base / new)), 2),
            }
        )
        print(rows[-1], flush=True)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--base", default="HEAD", help="the git revision to compare against")
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_500)
    p.add_argument("--calls", type=int, default=1_000, help="timed calls per kind")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--cache", type=Path, default=CACHE, help="where the built stores are kept")
    args = p.parse_args(argv)
    rev = revision_id(args.base)
    stores = {
        "base": args.cache / f"{rev}-{args.items}-{args.users}-{args.seed}",
        "new": ivf_codes_ab.cached_store(args.cache, args.items, args.users, args.seed),
    }
    engines: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.cache) as tmp:
        packages = {"base": import_revision(rev, Path(tmp) / "export"), "new": ownrank}
        try:
            if not stores["base"].exists():
                print(f"building {stores['base']} with {rev} (once)", flush=True)
                build_store(packages["base"], stores["base"], args.items, args.users, args.seed)
            for name, package in packages.items():
                shutil.copytree(stores[name], Path(tmp) / name)
                engine = package.Engine(
                    Path(tmp) / name,
                    package.EngineConfig(),
                    encoder=engine_bench.SyntheticEncoder(),
                )
                engines[name] = engine
                if hasattr(engine, "warm_up"):  # (what every call shares, before timing)
                    engine.warm_up()
            rows = compare(engines, args)
        finally:
            for engine in engines.values():
                engine.close()
            forget_revision(Path(tmp) / "export")
    print(f"{args.items:,} items, {args.users:,} users: the working tree against {rev}")
    header = list(rows[0])
    print(harness.markdown_table(header, [[str(r[h]) for h in header] for r in rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
