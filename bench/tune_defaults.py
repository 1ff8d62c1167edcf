"""How the ranking defaults were chosen: a grid on ml-1m-half's inner validation only.

``RankingConfig``'s defaults are one set for every dataset and protocol. They
were chosen here, on the inner validation split of ml-1m-half (chrono20 and
cold20; ``bench/protocols.py``: the protocol applied to the training data, so
test data is never seen), with the collaborative layer on, and then checked
unchanged on the outer splits and on ml-100k by ``bench/quality.py``.

    python bench/tune_defaults.py            # every inner user (about 25 minutes)
    python bench/tune_defaults.py --quick    # 500 inner users a setting

Each row is one setting: the defaults with the named fields changed. The rule
used to pick: best chrono20 NDCG@10, unless it costs cold20 (where the
collaborative part cannot help: new items have no pairs) more than the gain; a
difference within about one standard error (0.003 NDCG@10 over the ~2,900
inner users) is no reason to move a default; and a dislike weight high enough
for the demo's "taste before popularity" test
(``tests/test_taste_before_popularity.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.eval_data import default_data_dir, load_dataset
from bench.protocols import chrono20, cold20, inner_validation
from bench.quality import RESULTS, CachedEncoder, build_store, evaluate_subset
from ownrank import Engine, EngineConfig
from ownrank.engine.config import RankingConfig

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
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="500 inner users a setting")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    dataset = load_dataset("ml-1m-half", args.data_dir or default_data_dir())
    encoder = CachedEncoder(RESULTS / "cache" / "ml-1m-half-embeddings.npz")
    base = EngineConfig(shared_statistics="collaborative", lmdb_sync=False)
    rows: dict[str, dict[str, float]] = {json.dumps(g): {} for g in GRID}
    for protocol, make in (("chrono20", chrono20), ("cold20", cold20)):
        inner = inner_validation(make(dataset.ratings))
        with tempfile.TemporaryDirectory() as tmp:
            engine, _ = build_store(Path(tmp) / "inner", dataset, inner, encoder, base)
            engine.close()
            for change in GRID:
                config = EngineConfig(
                    shared_statistics="collaborative",
                    lmdb_sync=False,
                    ranking=RankingConfig(**change),
                )
                engine = Engine(Path(tmp) / "inner", config, encoder=encoder)
                ndcg = evaluate_subset(engine, inner, args.quick)["NDCG@10"]
                engine.close()
                rows[json.dumps(change)][protocol] = ndcg
                print(
                    f"{protocol} {json.dumps(change) or 'defaults'}: NDCG@10 {ndcg:.4f}", flush=True
                )
    print(f"\n{'setting (defaults, changed)':70} {'chrono20':>9} {'cold20':>9}")
    for key, found in rows.items():
        name = "defaults" if key == "{}" else key
        print(f"{name:70} {found['chrono20']:9.4f} {found['cold20']:9.4f}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "tune_defaults.json"
    out.write_text(json.dumps({"inner_ndcg@10": rows, "quick": args.quick}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
