"""How big a user's record is: median, p99 and max sealed bytes on ML-1M histories.

Every training user of ml-1m-half's chrono20 split is ingested in bulk (each
user's newest 1,000 ratings, the collaborative layer on), and the sealed records
are measured. Item vectors come from a hash of the item text: a record's size does
not depend on what the vectors say, and no model is loaded. ``--ids`` sends every
event with a random client id (as a syncing device would); ``--ownrank PATH``
imports ``ownrank`` from PATH instead (a folder holding an ``ownrank`` package laid
out as installed, e.g. built from another commit), to measure two versions in one
run. The guide's cap: median <= 4,080 B at default caps, max <= 32 KiB.

    python bench/record_size.py            # events without ids, as bench/ ingests
    python bench/record_size.py --ids      # a client id on every event
    python bench/record_size.py --ownrank /tmp/old --out bench/results/record_size_old.json
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import harness
import numpy as np


class HashEncoder:
    """Unit vectors from a hash of each text: deterministic, no model (the size of a
    record does not depend on the vectors)."""

    fingerprint = "bench:hash:384"
    dimension = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dimension), np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vector = np.random.default_rng(seed).standard_normal(self.dimension)
            out[i] = vector / np.linalg.norm(vector)
        return out


def older_record_sizes(engine: Any) -> list[int]:
    """COMPATIBILITY, for ``--ownrank`` only: the stored bytes of every record in an
    ownrank from before ``Engine.diagnostics``, read the one way that version allows
    (its private attributes). This measures OTHER code than this tree's; the current
    package is always measured through ``engine.diagnostics.record_sizes()``."""
    with engine._env.read() as txn:
        return [len(raw) for _key, raw in engine._users.records.scan(txn)]


def measure(run: harness.Run, with_ids: bool, seed: int = 1) -> None:
    # imported here: after main() chose which ownrank to import
    from collaborative_bench import ml_1m_half_training

    from ownrank import Engine, EngineConfig

    catalog, users = ml_1m_half_training()
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        config = EngineConfig(shared_statistics="collaborative")
        engine = Engine(Path(tmp) / "store", config, encoder=HashEncoder())  # type: ignore[arg-type]
        for start in range(0, len(catalog), 1000):
            engine.catalog.upsert(catalog[start : start + 1000])
        started = time.perf_counter()
        for start in range(0, len(users), 100):
            batch = {}
            for uid, events in users[start : start + 100]:
                if with_ids:
                    events = [
                        {**e, "id": str(uuid.UUID(bytes=rng.bytes(16), version=4))} for e in events
                    ]
                batch[uid] = events[-1000:]
            engine.interact_many(batch)
        seconds = time.perf_counter() - started
        diagnostics = getattr(engine, "diagnostics", None)
        sizes = diagnostics.record_sizes() if diagnostics else older_record_sizes(engine)
        engine.close()
    run.details["ownrank"] = str(Path(sys.modules["ownrank"].__file__ or "").parent)
    labels: Any = {"client_ids": with_ids}
    run.add("records", len(sizes), "count", **labels)
    run.add("record median", float(np.median(sizes)), "B", **labels)
    run.add("record p99", float(np.percentile(sizes, 99)), "B", **labels)
    run.add("record max", max(sizes), "B", **labels)
    run.add("ingest time", seconds, "s", **labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--ids", action="store_true", help="a random client id on every event")
    parser.add_argument("--ownrank", type=Path, help="import ownrank from this folder instead")
    parser.add_argument("--out", type=Path, default=harness.default_out("record_size", False))
    args = parser.parse_args(argv)
    if args.ownrank:
        sys.path.insert(0, str(args.ownrank.resolve()))
        # the editable install's finder would still win: leave only plain paths
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in f.__module__]
    run = harness.Run("record_size", vars(args), quick=False)
    measure(run, args.ids)
    run.table("User records, ml-1m-half chrono20 training users (sealed bytes)", ["client_ids"])
    run.target("median record", "record median", "<=", 4_080, source="issue 5")
    run.target("largest record", "record max", "<=", 32 * 1024, source="max_record_bytes")
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
