"""Recommend speed of two versions of ownrank in one process, call by call (issue 19).

The VM's speed drifts from hour to hour and from process to process: processes of
the same code, one after the other, measured a recommend p50 of 0.77 and 1.07 ms
(bench/README.md, 2026-12-07, fourth session), so a change of a few percent cannot
be read from separate runs. This script imports a base revision of the package under
another name (``ownrank_base``, exported with ``git archive``: the package's own
imports are relative), opens a copy of the same store with each version and ranks
every test user of a chrono20 split with one version and then the other, the order
alternating from user to user. It prints each version's p50 / mean / p99, the ratio
of the p50s and the median of the per-call ratios, and how many of the users' lists
are identical (ids, scores and explanations) and how many have the same ids. The two
engines share the CPU's caches, so their absolute times are not a lone process's:
the ratio is the measure. The working tree against its own HEAD read 0.994x (median
of per-call ratios 0.991x): differences of a percent are noise.

The store is built once per base revision, dataset and mode with the base version
(the newer version migrates an older format on open), under bench/results/cache/.

    python bench/recommend_ab.py --base HEAD        # the working tree against HEAD
    python bench/recommend_ab.py --base main~3 --mode collaborative --rounds 3
"""

from __future__ import annotations

import argparse
import importlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import harness
import numpy as np
from eval_data import load_dataset
from protocols import chrono20
from quality import cached_encoder, catalog_items, user_histories

import ownrank

ROOT = Path(__file__).resolve().parent.parent
BASE_NAME = "ownrank_base"
# the package's folders (pyproject.toml's package-dir) a ranking call imports
PACKAGE_DIRS = {"sdk": ".", "engine": "engine", "storage": "storage"}


def import_revision(rev: str, dest: Path) -> ModuleType:
    """The package as of git revision ``rev``, imported as ``ownrank_base`` from a copy
    under ``dest`` (once per process: a second revision would need another name)."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", rev, *PACKAGE_DIRS],
        check=True,
        capture_output=True,
    ).stdout
    source = dest / "source"
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(source, filter="data")
    package = dest / BASE_NAME
    for folder, inside in PACKAGE_DIRS.items():
        shutil.copytree(source / folder, package / inside, dirs_exist_ok=True)
    sys.path.insert(0, str(dest))
    return importlib.import_module(BASE_NAME)


def forget_revision(dest: Path) -> None:
    """Undo ``import_revision(..., dest)``: another revision may then be imported."""
    if str(dest) in sys.path:
        sys.path.remove(str(dest))
    for module in [m for m in sys.modules if m.split(".")[0] == BASE_NAME]:
        del sys.modules[module]


def revision_id(rev: str) -> str:
    """The commit ``rev`` names (its first 12 hex digits)."""
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short=12", f"{rev}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def build_store(package: ModuleType, path: Path, dataset: str, mode: str) -> list[int]:
    """The chrono20 training data of ``dataset`` in a store at ``path``, written with
    ``package``'s engine; returns the test users."""
    data = load_dataset(dataset)  # type: ignore[arg-type]
    split = chrono20(data.ratings)
    config = package.EngineConfig(shared_statistics=mode)
    with package.Engine(path, config, encoder=cached_encoder(dataset)) as engine:
        items = catalog_items(data, split)
        for start in range(0, len(items), 1000):
            engine.catalog.upsert(items[start : start + 1000])
        step = config.max_events_per_call
        for user, events in user_histories(split):
            for start in range(0, len(events), step):
                engine.interact(user, events[start : start + step])
    return sorted(int(u) for u in split.test)


@dataclass
class Comparison:
    """Both versions' seconds per call (in call order) and how their lists compare."""

    seconds: dict[str, list[float]] = field(default_factory=lambda: {"base": [], "new": []})
    identical: int = 0  # lists equal in ids, scores and explanations
    same_ids: int = 0
    users: int = 0

    def summary(self) -> str:
        base, new = (1000 * np.array(self.seconds[k]) for k in ("base", "new"))
        rows = [
            f"{name}: p50 {np.median(ms):.3f} ms, mean {ms.mean():.3f}, "
            f"p99 {np.percentile(ms, 99):.3f} ({len(ms)} calls)"
            for name, ms in (("base", base), ("new", new))
        ]
        rows.append(
            f"new / base: p50 {np.median(new) / np.median(base):.3f}x, "
            f"median of per-call ratios {np.median(new / base):.3f}x"
        )
        rows.append(
            f"lists: {self.identical} of {self.users} identical, {self.same_ids} with the same ids"
        )
        return "\n".join(rows)


def compare(
    engines: dict[str, Any],
    users: Sequence[int],
    rounds: int,
    n: int = 10,
    diversity: float = 0.0,
) -> Comparison:
    """Each user ranked by both engines (``base``, ``new``) ``rounds`` times, which
    goes first alternating; the lists of the first round compared."""
    out = Comparison(users=len(users))
    for round_ in range(rounds):
        for k, user in enumerate(users):
            order = ("base", "new") if (k + round_) % 2 == 0 else ("new", "base")
            lists: dict[str, list[tuple[str, float, Any]]] = {}
            for name in order:
                t0 = time.perf_counter()
                recs = engines[name].recommend(
                    str(user), n, filters={"candidate": True}, diversity=diversity
                )
                out.seconds[name].append(time.perf_counter() - t0)
                lists[name] = [(r.item_id, r.score, r.explanation) for r in recs]
            if round_ == 0:
                out.identical += lists["base"] == lists["new"]
                ids = [[item for item, _s, _e in lists[name]] for name in ("base", "new")]
                out.same_ids += ids[0] == ids[1]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare against")
    parser.add_argument("--dataset", default="ml-1m-half")
    parser.add_argument("--mode", default="popularity", help="shared_statistics")
    parser.add_argument("--rounds", type=int, default=2, help="passes over the test users")
    parser.add_argument("--diversity", type=float, default=0.0, help="recommend's diversity")
    parser.add_argument(
        "--weights", default=None, help="personal,neighbour,popularity weights (default: "
        "the engine's); quality.py's inner validation chose 0.03,0.01,1 on 2026-12-07"
    )  # fmt: skip
    args = parser.parse_args(argv)
    rev = revision_id(args.base)
    with tempfile.TemporaryDirectory() as tmp:
        base = import_revision(rev, Path(tmp))
        stores = harness.RESULTS / "cache" / "ab-stores"
        built = stores / f"{args.dataset}-{args.mode}-{rev}"
        users_file = built / "test-users.txt"
        if not users_file.exists():
            shutil.rmtree(built, ignore_errors=True)
            users = build_store(base, built / "store", args.dataset, args.mode)
            users_file.write_text("\n".join(map(str, users)))
        users = [int(u) for u in users_file.read_text().split()]
        engines: dict[str, Any] = {}
        for name, package in (("base", base), ("new", ownrank)):
            ranking: dict[str, float] = {}
            if args.weights:
                names = ("personal_weight", "neighbour_weight", "popularity_weight")
                values = map(float, args.weights.split(","))
                ranking = dict(zip(names, values, strict=True))
            config = package.EngineConfig(shared_statistics=args.mode)
            config = config.model_copy(
                update={"ranking": config.ranking.model_copy(update=ranking)}
            )
            shutil.copytree(built / "store", Path(tmp) / name)
            engines[name] = package.Engine(Path(tmp) / name, config)
        try:
            for engine in engines.values():  # what every call shares, before timing
                compare({"base": engine, "new": engine}, users[:50], 1)
            result = compare(engines, users, args.rounds, diversity=args.diversity)
        finally:
            for engine in engines.values():
                engine.close()
    print(
        f"{args.dataset} chrono20, {args.mode}, diversity {args.diversity:g}: "
        f"the working tree against {rev}"
    )
    print(result.summary())


if __name__ == "__main__":
    main()
