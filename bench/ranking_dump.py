"""Dump an engine's rankings over a store, to check that a speed change kept them.

    python bench/ranking_dump.py STORE_DIR OUT.jsonl [--users 200] [--config JSON]

For ``--users`` users (fixed seed), one JSON line per call: plain recommend (n=10),
topic-filtered recommend, diversity 0.3 with n=20, plus one cold user; each line
holds the ids, the scores as exact float reprs and the explanations. Run it with the
old and the new code over the same store and ``cmp`` the files: equal files mean
equal results, bit for bit. The last line is the SHA-256 of the lines before it.

    python bench/ranking_dump.py --compare A.jsonl B.jsonl [--out PATH]

compares two dumps meant to differ (another index kind, say): per kind of call, the
identical results and the mean share of A's ids that B also returned.

Dumping also times each call (the whole ``Engine.recommend``) after an untimed round
for ``WARM_UP_USERS`` users, and prints p50 / p99 by kind of call (written to
``--out``): with ``--config`` this measures a setting's latency and, through
``--compare``, its agreement with another on the same calls.

``STORE_DIR`` is a benchmark store's data directory (synthetic encoder, e.g.
``bench/results/service-store/*/data``), copied first: opening an engine may save
its index or reconcile, and the cached store stays as it was.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import harness
import numpy as np
from catalog_bench import TOPIC_NAMES, SyntheticEncoder, lists_current
from engine_bench import user_id

from ownrank import Engine, EngineConfig

WARM_UP_USERS = 20  # their calls run once, untimed, before the timed dump


def population(store: Path) -> int:
    """How many users the benchmark put in the store (``built.json`` beside it)."""
    built = store.parent / "built.json"
    if not built.exists():
        raise SystemExit(f"{built} not found: is {store} a benchmark store's data directory?")
    return int(json.loads(built.read_text())["users"])


def known_users(engine: Engine, among: int, wanted: int, seed: int) -> list[str]:
    """Up to ``wanted`` distinct benchmark users (``user_id(k)``, k < ``among``) with events."""
    rng = np.random.default_rng(seed)
    picked = (user_id(int(k)) for k in rng.permutation(among))
    return list(itertools.islice((u for u in picked if engine.export(u).get("events")), wanted))


def flat(explanation: Mapping[str, Any]) -> dict[str, Any]:
    """An explanation with its score ``parts`` beside the other fields (the form from
    before they were grouped), so dumps from either side compare equal."""
    out = {k: v for k, v in explanation.items() if k != "parts"}
    out.update(explanation.get("parts", {}))
    return out


def line(kind: str, user: str, results: list[Any]) -> str:
    ids = [r.item_id for r in results]
    scores = [repr(r.score) for r in results]  # exact
    explanations = [flat(r.explanation) for r in results]
    doc = {"call": kind, "user": user, "ids": ids, "scores": scores, "explanations": explanations}
    return json.dumps(doc, sort_keys=True)


def dump(
    engine: Engine, users: Sequence[str], seed: int, seconds: dict[str, list[float]] | None = None
) -> list[str]:
    """The dump's lines; each call's wall time appended to ``seconds`` by kind of call."""
    rng = np.random.default_rng(seed + 1)
    out = []

    def call(kind: str, user: str, *args: Any, **kwargs: Any) -> None:
        start = time.perf_counter()
        results = engine.recommend(user, *args, **kwargs)
        if seconds is not None:
            seconds.setdefault(kind.split()[0], []).append(time.perf_counter() - start)
        out.append(line(kind, user, results))

    for user in users:
        topic = f"t{int(rng.integers(len(TOPIC_NAMES)))}"
        call("plain", user, 10)
        call(f"topic {topic}", user, 10, {"topic": topic})
        call("diversity", user, 20, diversity=0.3)
    call("cold", "never-seen", 10)
    return out


def compare(first: Path, second: Path) -> dict[str, dict[str, float]]:
    """Per kind of call: calls, identical results, mean overlap of the returned ids."""

    def calls(path: Path) -> list[dict[str, Any]]:
        rows = [json.loads(raw) for raw in path.read_text().splitlines()]
        return [r for r in rows if "call" in r]

    out: dict[str, dict[str, float]] = {}
    for a, b in zip(calls(first), calls(second), strict=True):
        if (a["call"], a["user"]) != (b["call"], b["user"]):
            raise SystemExit("the dumps are not of the same calls")
        kind = a["call"].split()[0]
        entry = out.setdefault(kind, {"calls": 0, "identical": 0, "overlap": 0.0})
        entry["calls"] += 1
        entry["identical"] += a == b
        entry["overlap"] += len(set(a["ids"]) & set(b["ids"])) / max(1, len(a["ids"]))
    for entry in out.values():
        entry["overlap"] = round(entry["overlap"] / entry["calls"], 3)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("store", type=Path, nargs="?", help="data directory (copied first)")
    p.add_argument("dump", type=Path, nargs="?", metavar="OUT", help="JSON lines file to write")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--config",
        type=json.loads,
        default={},
        help="EngineConfig fields as JSON, e.g. '{\"exact_filter_limit\": 1000}'",
    )
    p.add_argument("--compare", type=Path, nargs=2, metavar=("A", "B"), help="compare two dumps")
    p.add_argument("--out", type=Path, default=harness.default_out("ranking_dump", False),
                   help="results: the latencies of a dump, or --compare's comparison")  # fmt: skip
    args = p.parse_args(argv)
    if args.compare:
        first, second = args.compare
        run = harness.Run("ranking_dump", vars(args), quick=False)
        for kind, entry in compare(first, second).items():
            for metric, value in entry.items():
                run.add(metric, value, "share" if metric == "overlap" else "count", call=kind)
        run.table(f"{first.name} vs {second.name} (overlap: share of A's ids B returned)", ["call"])
        run.finish(args.out)
        return 0
    if args.store is None or args.dump is None:
        p.error("give STORE and OUT, or --compare A B")
    with tempfile.TemporaryDirectory(prefix="ranking-dump-") as tmp:
        data = Path(tmp) / "data"
        shutil.copytree(args.store, data)
        seconds: dict[str, list[float]] = {}
        with Engine(data, EngineConfig(**args.config), encoder=SyntheticEncoder()) as engine:
            lists = engine.catalog.neighbours.status()
            if lists.k > 0 and not lists.current:  # at 1M items a build takes hours
                print(f"waiting for the content-neighbour lists of the copy (k={lists.k})")
            lists_current(engine)  # never time calls against a build of the lists
            users = known_users(engine, population(args.store), args.users, args.seed)
            dump(engine, users[:WARM_UP_USERS], args.seed + 100)  # untimed: first calls
            lines = dump(engine, users, args.seed, seconds)
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    args.dump.write_text("\n".join([*lines, json.dumps({"sha256": digest})]) + "\n")
    print(f"{len(lines)} calls, {len(users)} users, sha256 {digest}")
    run = harness.Run("ranking_dump", vars(args), quick=False)
    for kind, taken in seconds.items():
        run.latency("recommend", taken, call=kind)
    run.table(f"Recommend latency while dumping (after {WARM_UP_USERS} users' calls)", ["call"])
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
