"""Candidates from the content-neighbour lists against index searches around each
interest (issue 19), call by call and by quality.

``speed``: the engine benchmark's synthetic catalog and users (as ``ivf_codes_ab.py``
builds them, the same cached store), copied twice: one copy ranks with the retrieval
before (``interest_queries=3``, ``neighbour_candidates=0``), the other with the
defaults (no interest query; 90 candidates from the lists of the user's liked items).
Both answer the same calls (recommend plain, with a topic filter, with diversity 0.3),
alternating from call to call (the VM's speed drifts between processes more than
the change measured). Prints p50 / p99, their ratios and how many of each list's
items the two settings share.

``quality``: ml-1m-half (``../shared/data``) is below ``full_rank_limit``, so the
quality benchmark never retrieves; here ``full_rank_limit=0`` makes every call
retrieve, and each setting's NDCG@10 and Recall@10 are printed beside full ranking,
for the chosen shared-statistics modes and protocols (one store per mode and
protocol, reopened per setting).

    python bench/retrieval_ab.py speed                 # 100k items, 1,500 users
    python bench/retrieval_ab.py speed --items 5000 --users 100 --calls 50
    python bench/retrieval_ab.py quality --modes none,popularity --protocols chrono20,cold20
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import engine_bench
import harness
import ivf_codes_ab
import numpy as np

from ownrank import Engine, EngineConfig
from ownrank.engine.config import RankingConfig

SETTINGS: dict[str, dict[str, int]] = {
    "interest searches (before)": {"interest_queries": 3, "neighbour_candidates": 0},
    "neighbour lists (default)": {},
}


def recommend_calls(
    users: list[str], topics: list[str]
) -> dict[str, Callable[[Engine, int], list[Any]]]:
    return {
        "recommend": lambda e, i: e.recommend(users[i], 10),
        "recommend, topic filter": lambda e, i: e.recommend(users[i], 10, {"topic": topics[i]}),
        "recommend, diversity 0.3": lambda e, i: e.recommend(users[i], 10, diversity=0.3),
    }


def open_copy(path: Path, setting: dict[str, int]) -> Engine:
    """A copy of the store with a retrieval ``setting``, its index warmed up."""
    config = EngineConfig(index_kind="ivf", ranking=RankingConfig(**setting))
    engine = Engine(path, config, encoder=engine_bench.SyntheticEncoder())
    engine.catalog.keeper.warm_up()
    return engine


def speed(args: argparse.Namespace) -> list[list[str]]:
    """Both settings call by call on copies of one store; one row per call kind."""
    store = ivf_codes_ab.cached_store(args.cache, args.items, args.users, args.seed)
    work = args.cache / "retrieval-copies"
    rows: list[list[str]] = []
    opening = {name: functools.partial(open_copy, setting=s) for name, s in SETTINGS.items()}
    with ivf_codes_ab.engines_on_copies(store, work, opening) as engines:
        count = args.calls + args.warmup
        users, topics = ivf_codes_ab.call_inputs(args.users, count, args.seed)
        names = list(engines)
        for kind, call in recommend_calls(users, topics).items():
            took, results = ivf_codes_ab.in_turn(engines, call, args.warmup, count)
            shared = []
            for found in results:
                before, after = ({r.item_id for r in found[n]} for n in names)
                shared.append(len(before & after) / max(len(before), 1))
            a, b = (took[n] for n in names)
            rows.append(
                [
                    kind,
                    ivf_codes_ab.spread(a),
                    ivf_codes_ab.spread(b),
                    f"{np.percentile(b, 50) / np.percentile(a, 50):.3f}",
                    f"{np.percentile(b, 99) / np.percentile(a, 99):.3f}",
                    f"{np.mean(shared):.2f}",
                ]
            )
            print(rows[-1], flush=True)
    header = [
        "call",
        f"{names[0]} p50 / p99 (ms)",
        f"{names[1]} p50 / p99 (ms)",
        "p50 ratio",
        "p99 ratio",
        "items shared",
    ]
    print(harness.markdown_table(header, rows))
    return rows


def quality(args: argparse.Namespace) -> list[list[str]]:
    """ml-1m-half with every call retrieving: each setting beside full ranking."""
    import quality as quality_bench  # (the peers' imports only when asked for)
    from eval_data import load_dataset
    from protocols import chrono20, cold20

    # the quality benchmark's usual choices on inner validation (none: personal only)
    weights = {
        "none": {"personal_weight": 1.0, "neighbour_weight": 1.0, "popularity_weight": 0.0},
        "popularity": {"personal_weight": 0.03, "neighbour_weight": 0.01},
        "collaborative": {},
    }
    data = load_dataset("ml-1m-half", args.data_dir)
    encoder = quality_bench.cached_encoder(data.name)
    rows: list[list[str]] = []
    for protocol in args.protocols.split(","):
        split = (chrono20 if protocol == "chrono20" else cold20)(data.ratings)
        for mode in args.modes.split(","):
            chosen = weights[mode]
            settings = {"full ranking": {}} | {
                name: {"full_rank_limit": 0, **setting} for name, setting in SETTINGS.items()
            }
            with tempfile.TemporaryDirectory() as tmp:
                base = EngineConfig(shared_statistics=mode, ranking=RankingConfig(**chosen))
                engine, _built = quality_bench.build_store(Path(tmp), data, split, encoder, base)
                engine.close()
                for name, setting in settings.items():
                    ranking = RankingConfig(**chosen, **setting)
                    config = base.model_copy(update={"ranking": ranking})
                    with Engine(Path(tmp), config, encoder=encoder) as engine:
                        metrics = quality_bench.ownrank_metrics(engine, split)
                    rows.append(
                        [
                            protocol,
                            mode,
                            name,
                            f"{metrics['NDCG@10']:.4f}",
                            f"{metrics['Recall@10']:.4f}",
                        ]
                    )
                    print(rows[-1], flush=True)
    header = ["protocol", "shared statistics", "candidates", "NDCG@10", "Recall@10"]
    print(harness.markdown_table(header, rows))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=["speed", "quality"])
    p.add_argument("--items", type=int, default=100_000)
    p.add_argument("--users", type=int, default=1_500)
    p.add_argument("--calls", type=int, default=500, help="timed calls per kind and setting")
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--cache", type=Path, default=ivf_codes_ab.CACHE, help="the built stores")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--modes", default="none,popularity")
    p.add_argument("--protocols", default="chrono20,cold20")
    args = p.parse_args(argv)
    (speed if args.what == "speed" else quality)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
