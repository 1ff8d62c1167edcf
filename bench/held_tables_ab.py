"""What the tables a process keeps for retrieved pools save (issue 19), call by call.

A catalog too big to rank whole reads, each call, the popularity counts of its
~280 candidates (one LMDB lookup each) and the content-neighbour lists of the
user's rated items (one lookup each, when the lists are too many to hold whole).
Two tables keep what was read: the counts by row for one LMDB snapshot
(``engine/counts_by_row.py``) and the lists by owner for one version of the lists
(``storage/lists_by_owner.py``). This script opens copies of the engine
benchmark's 100k store (as ``ivf_codes_ab.py`` builds it, the same cached store)
three ways: neither table (``neighbour_lists_held=0`` and the counts read from
LMDB every call, as before them), the lists held only, and both (the defaults).
The three answer the same calls (recommend plain, with a topic filter, with
diversity 0.3), rotating from call to call (the VM's speed drifts between
processes more than the change measured); every call's list is compared with the
first setting's (ids, scores and explanations). Prints p50 / p99 and their ratios.

    python bench/held_tables_ab.py                          # 100k items, 1,500 users
    python bench/held_tables_ab.py --items 5000 --users 100 --calls 50
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import engine_bench
import harness
import ivf_codes_ab
import numpy as np
from retrieval_ab import recommend_calls

from ownrank import Engine, EngineConfig

SETTINGS: dict[str, dict[str, Any]] = {
    "neither (before)": {"neighbour_lists_held": 0, "counts_held": False},
    "lists held": {"counts_held": False},
    "both (default)": {},
}


class CountsFromLmdb:
    """Stands in for ``CountsByRow``: every count read from LMDB, as before the table."""

    def __init__(self, read: Any) -> None:
        self._read = read

    def counts(self, txn: Any, _rows: np.ndarray, ids: Sequence[str]) -> np.ndarray:
        return np.asarray(self._read(txn, ids))

    def forget(self) -> None:
        """Nothing held."""


def open_engine(path: Path, setting: dict[str, Any], whole: int | None = None) -> Engine:
    """The store at ``path`` with ``setting``; ``whole``: ``neighbour_lists_in_memory``
    (None: the engine's; a catalog of 10k items or fewer is held whole by default)."""
    held = {k: v for k, v in setting.items() if k != "counts_held"}
    if whole is not None:
        held["neighbour_lists_in_memory"] = whole
    config = EngineConfig(index_kind="ivf", **held)
    engine = Engine(path, config, encoder=engine_bench.SyntheticEncoder())
    if not setting.get("counts_held", True):
        popularity = engine._users.ranking.popularity
        popularity.by_row = CountsFromLmdb(popularity.shared.counts)  # type: ignore[assignment]
    return engine


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_500)
    p.add_argument("--calls", type=int, default=500, help="timed calls per kind and setting")
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--cache", type=Path, default=ivf_codes_ab.CACHE, help="the built stores")
    p.add_argument("--whole", type=int, help="neighbour_lists_in_memory (default: the engine's)")
    args = p.parse_args(argv)
    store = ivf_codes_ab.cached_store(args.cache, args.items, args.users, args.seed)
    work = args.cache / "held-tables-copies"
    rows: list[list[str]] = []
    opening = {
        name: functools.partial(open_engine, setting=setting, whole=args.whole)
        for name, setting in SETTINGS.items()
    }
    with ivf_codes_ab.engines_on_copies(store, work, opening) as engines:
        count = args.calls + args.warmup
        users, topics = ivf_codes_ab.call_inputs(args.users, count, args.seed)
        names = list(engines)
        for kind, call in recommend_calls(users, topics).items():
            took, results = ivf_codes_ab.in_turn(engines, call, args.warmup, count)
            differ = 0
            for found in results:
                lists = [[(r.item_id, r.score, r.explanation) for r in found[n]] for n in names]
                differ += any(one != lists[0] for one in lists)
            base = took[names[0]]
            row = [kind]
            for name in names:
                ms = took[name]
                p50 = np.percentile(ms, 50) / np.percentile(base, 50)
                p99 = np.percentile(ms, 99) / np.percentile(base, 99)
                row.append(f"{ivf_codes_ab.spread(ms)} ({p50:.3f}, {p99:.3f})")
            row.append(str(differ))
            rows.append(row)
            print(rows[-1], flush=True)
    header = [
        "call",
        *(f"{n}: p50 / p99 ms (ratios to the first)" for n in names),
        "calls whose lists differ",
    ]
    print(harness.markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
