"""How the ranking defaults were chosen: a grid on ml-1m-half's inner validation only.

``RankingConfig``'s defaults are one set for every dataset and protocol, chosen here
on the inner validation split of ml-1m-half (chrono20 and cold20 applied to the
training data, ``bench/protocols.py``: test data is never seen) with the collaborative
layer on, then checked unchanged on the outer splits and ml-100k by ``bench/quality.py``.

    python bench/tune_defaults.py            # every inner user (691 s on 2026-12-06)
    python bench/tune_defaults.py --quick    # 500 inner users a setting

Each row is one setting: the defaults with the named fields changed (``learner``: the
personal head's ``LearnerConfig``, which needs a store of its own, since heads are fit
when events are written). The rule used to pick: best chrono20 NDCG@10, unless it
costs cold20 (where the collaborative part cannot help: new items have no pairs) more
than the gain; a difference within about one standard error is no reason to move a
default (each line is also set against the defaults on the same users: the mean
per-user difference and its paired standard error, which is what tells a change from
noise; the standard error of one mean is about 0.003 NDCG@10 over ~2,900 inner
users); and a dislike weight high enough for ``tests/test_taste_before_popularity.py``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness
import numpy as np
from eval_data import load_dataset
from protocols import chrono20, cold20, inner_validation, ndcg_per_user
from quality import build_store, cached_encoder, evaluated, ownrank_ranker

from ownrank import Engine, EngineConfig
from ownrank.engine.config import RankingConfig
from ownrank.engine.personal_model import LearnerConfig

# the defaults, then one or two fields changed at a time
GRID: list[dict[str, Any]] = [
    {},
    {"collaborative_weight": 0.0, "dislike_weight": 0.0},
    {"collaborative_weight": 0.5},
    {"collaborative_weight": 2.0},
    {"collaborative_query_items": 64, "collaborative_half_life_items": 0.0},
    {"collaborative_query_items": 8, "collaborative_half_life_items": 0.0},
    {"collaborative_query_items": 16},
    {"collaborative_half_life_items": 4.0},
    {"collaborative_alpha": 0.3},
    {"collaborative_alpha": 0.7},
    {"collaborative_shrink": 100.0},
    {"collaborative_min_count": 1},
    {"collaborative_min_count": 3},
    {"dislike_weight": 0.0},
    {"dislike_weight": 1.5},
    {"popularity_fade_items": 30.0},
    {"collaborative_ramp_items": 0.0},
    {"dislike_like_offset": 1.0},
    {"personal_weight": 0.1, "neighbour_weight": 0.06},
    {"personal_weight": 0.15, "neighbour_weight": 0.1},
    # the personal head's settings (LearnerConfig): each such row builds its own store
    {"learner": {"negative_target": -0.5}},
    {"learner": {"negative_target": -0.25}},
    {"learner": {"implicit_weight": 800.0}},
    {"learner": {"l2": 3.0}},
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 inner users a setting")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/")
    args = parser.parse_args(argv)
    args.out = args.out or harness.default_out("tune_defaults", args.quick)
    run = harness.Run("tune_defaults", vars(args), quick=args.quick)
    dataset = load_dataset("ml-1m-half", args.data_dir)  # None: the default folder
    encoder = cached_encoder("ml-1m-half")
    settings: dict[str, Any] = {"shared_statistics": "collaborative", "lmdb_sync": False}
    for protocol, make in (("chrono20", chrono20), ("cold20", cold20)):
        inner = inner_validation(make(dataset.ratings))
        with tempfile.TemporaryDirectory() as tmp:
            stores: dict[str, Path] = {}  # one store per learner setting (heads fit on write)
            users = evaluated(inner, args.quick)
            defaults: np.ndarray | None = None  # the first row's per-user NDCG@10
            for change in GRID:
                ranking = {k: v for k, v in change.items() if k != "learner"}
                learner = LearnerConfig(**change.get("learner", {}))
                config = EngineConfig(**settings, ranking=RankingConfig(**ranking), learner=learner)
                key = learner.model_dump_json()
                if key not in stores:
                    stores[key] = Path(tmp) / f"inner{len(stores)}"
                    engine, _ = build_store(stores[key], dataset, inner, encoder, config)
                    engine.close()
                with Engine(stores[key], config, encoder=encoder) as engine:
                    per_user = ndcg_per_user(users, ownrank_ranker(engine))
                defaults = per_user if defaults is None else defaults
                ndcg, (gain, error) = float(per_user.mean()), paired(per_user, defaults)
                setting = json.dumps(change) if change else "defaults"
                labels = {"dataset": dataset.name, "protocol": protocol, "setting": setting}
                run.add("inner NDCG@10", ndcg, "NDCG@10", **labels)
                run.add("against the defaults", gain, "NDCG@10", **labels)
                run.add("its paired SE", error, "NDCG@10", **labels)
                print(f"{protocol} {setting}: NDCG@10 {ndcg:.4f}, {gain:+.4f} +- {error:.4f}")
    run.table("ml-1m-half inner validation, collaborative mode: the defaults, one change a line",
              ["setting"], "protocol", {"metric": "inner NDCG@10"})  # fmt: skip
    run.table("Each line against the defaults, on the same users: mean difference, paired SE",
              ["protocol", "setting"], "metric",
              metrics=["against the defaults", "its paired SE"])  # fmt: skip
    run.finish(args.out)


def paired(values: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean per-user difference of ``values`` from ``reference`` (the same users) and its
    standard error.

    >>> gain, error = paired(np.array([0.5, 0.25, 1.0]), np.array([0.25, 0.25, 0.5]))
    >>> gain, round(error, 4)  # differences 0.25, 0, 0.5: SD 0.25, over sqrt(3)
    (0.25, 0.1443)
    """
    diff = values - reference
    if len(diff) < 2:
        return float(diff.mean()) if len(diff) else 0.0, 0.0
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff)))


if __name__ == "__main__":
    main()
