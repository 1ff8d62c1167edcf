"""Device catalog sync benchmark: bytes per item on the wire, and the time of a full
sync and of a delta (1% of the items changed) at 10k and 100k items, server side
(``Catalog.changes`` + serializing each page) and client side (parsing + applying
to a ``CatalogReplica``). No model is loaded: the catalog is ``catalog_bench.py``'s
synthetic one (``SyntheticEncoder``, ``item_batches``, 384 dimensions).

Usage::

    python bench/catalog_sync_bench.py              # 10k and 100k items, ~3 minutes
    python bench/catalog_sync_bench.py --quick      # 10k items
    python bench/catalog_sync_bench.py --sizes 2000
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import harness
import machine_info
import msgpack
import numpy as np
from catalog_bench import SyntheticEncoder, item_batches

from ownrank import Engine, EngineConfig
from ownrank.engine.catalog_replica import CatalogReplica

PAGE_SIZE = 1_000
FORMS = [("f32", "json"), ("f32", "msgpack"), ("i8", "json")]  # (encoding, wire format)


def wire(page: Any, form: str) -> bytes:
    if form == "msgpack":
        return bytes(msgpack.packb(page.to_wire(binary=True), use_bin_type=True))
    return json.dumps(page.to_wire(), separators=(",", ":"), ensure_ascii=False).encode()


def unwire(data: bytes, form: str) -> Any:
    return msgpack.unpackb(data) if form == "msgpack" else json.loads(data)


def run_sync(run: harness.Run, engine: Engine, replica: CatalogReplica, **labels: Any) -> None:
    """One whole sync from the replica's cursor: server and client time, bytes, pages."""
    form = labels["format"]
    server = client = 0.0
    size = 0
    counts = dict.fromkeys(("pages", "items sent", "changed", "removed"), 0)
    done = False
    while not done:
        start = time.perf_counter()
        page = engine.catalog.changes(**replica.request(), page_size=PAGE_SIZE)
        data = wire(page, form)
        middle = time.perf_counter()
        done = replica.apply(unwire(data, form))
        client += time.perf_counter() - middle
        server += middle - start
        size += len(data)
        counts["pages"] += 1
        counts["items sent"] += len(page.items)
        counts["changed"] += len(page.changed)
        counts["removed"] += len(page.removed)
    run.add("server", 1e3 * server, "ms", **labels)
    run.add("client", 1e3 * client, "ms", **labels)
    run.add("size", size / 1e6, "MB", **labels)  # 3 significant figures
    for metric, value in counts.items():
        run.add(metric, value, "count", **labels)
    run.add("full", page.full, "", **labels)  # the server sent the whole catalog


def exact(engine: Engine, replica: CatalogReplica) -> bool:
    """Whether the replica holds the server's ids and f32 vectors, bit for bit."""
    catalog = engine.catalog
    with catalog.env.read() as txn:
        found = list(catalog.store.iter_vectors(txn, catalog.keeper.dimension))
    order = np.argsort(replica.rows)  # the copy keeps no particular order
    ids = replica.ids
    return (
        np.array_equal(np.array([r for r, _i, _v in found], np.int64), replica.rows[order])
        and [i for _r, i, _v in found] == [ids[k] for k in order]
        and np.stack([v for _r, _i, v in found]).tobytes() == replica.vectors[order].tobytes()
    )


def bytes_per_item(run: harness.Run, engine: Engine, count: int) -> None:
    """One page of ``PAGE_SIZE`` items per encoding, with and without titles: the
    vectors' bytes (with i8 scales), and the whole page as JSON and as msgpack."""
    for encoding in ("f32", "f16", "i8"):
        for titles in (True, False):
            page = engine.catalog.changes(encoding=encoding, titles=titles, page_size=PAGE_SIZE)
            n = len(page.items)
            labels: Any = {"items": count, "encoding": encoding, "titles": titles}
            vector_bytes = (len(page.vectors) + len(page.scales or b"")) / n
            run.add("bytes per item", vector_bytes, "B", **labels, format="vectors only")
            for form in ("json", "msgpack"):
                run.add("bytes per item", len(wire(page, form)) / n, "B", **labels, format=form)


def change_one_percent(run: harness.Run, engine: Engine, count: int, seed: int) -> None:
    """1% of the items: half get new properties (same row), a quarter a new text
    (a new row), a quarter are deleted."""
    rng = np.random.default_rng(seed)
    ids = [f"it{i:07d}" for i in rng.choice(count, size=max(4, count // 100), replace=False)]
    quarter = len(ids) // 4
    props, texts, gone = ids[: 2 * quarter], ids[2 * quarter : 3 * quarter], ids[3 * quarter :]
    start = time.perf_counter()
    for item_id in props:
        engine.catalog.update_properties(item_id, {"price": int(rng.integers(100))})
    engine.catalog.upsert(
        [{**engine.catalog.get(i).model_dump(), "title": f"Rewritten {i}"} for i in texts]
    )
    engine.catalog.delete(gone)
    run.add("delta write", 1e3 * (time.perf_counter() - start), "ms", items=count)
    for name, part in (("new properties", props), ("new texts", texts), ("deleted", gone)):
        run.add(name, len(part), "count", items=count)


def run_size(run: harness.Run, count: int, root: Path) -> None:
    path = root / f"store-{count}"
    # content_neighbours=0: the sync never reads the neighbour lists
    config = EngineConfig(
        content_neighbours=0, index_kind="flat", warm_up_on_open=False, lmdb_sync=False
    )
    engine = Engine(path, config, encoder=SyntheticEncoder())
    try:
        start = time.perf_counter()
        for batch in item_batches(count, 5_000, seed=count, prefix="it"):
            engine.catalog.upsert(batch)
        run.add("ingest", time.perf_counter() - start, "s", items=count)
        bytes_per_item(run, engine, count)
        replicas: dict[tuple[str, str], CatalogReplica] = {}
        for sync in ("full", "delta"):
            if sync == "delta":
                change_one_percent(run, engine, count, seed=count + 1)
            for encoding, form in FORMS:
                labels: Any = {"items": count, "encoding": encoding, "format": form}
                replica = replicas.setdefault((encoding, form), CatalogReplica(encoding=encoding))
                run_sync(run, engine, replica, **labels, sync=sync)
                if sync == "delta" and encoding == "f32":
                    run.add(
                        "bit-exact after the delta", exact(engine, replica), "", **labels, sync=sync
                    )
    finally:
        engine.close()
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k items only")
    parser.add_argument("--sizes", type=int, nargs="+", help="items (default 10000 100000)")
    parser.add_argument("--out", type=Path, help="JSON results file (default bench/results/...)")
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([10_000] if args.quick else [10_000, 100_000])
    args.out = args.out or harness.default_out("catalog_sync_bench", args.quick)
    run = harness.Run("catalog_sync_bench", vars(args), quick=args.quick)
    run.details["page_size"] = PAGE_SIZE
    run.details["versions"] = machine_info.machine(["numpy", "msgpack", "lmdb"])["versions"]
    probe = machine_info.cpu_probe()
    run.add("CPU probe", probe, "ms")
    run.table(
        f"Bytes per item (one page of {PAGE_SIZE:,})",
        by=["items", "encoding", "titles"],
        columns="format",
        metrics=["bytes per item"],
    )
    run.table(
        f"Sync (server: changes + serialize; client: parse + apply; pages of {PAGE_SIZE:,})",
        by=["items", "sync", "encoding", "format"],
        metrics=["server", "client", "size", "pages", "items sent", "changed", "removed", "full",
                 "bit-exact after the delta"],
        plot=True,
    )  # fmt: skip
    run.table(
        "Per size: ingest, and the 1% delta (half new properties, a quarter new texts, "
        "a quarter deleted)",
        by=["items"],
        metrics=["ingest", "new properties", "new texts", "deleted", "delta write"],
    )
    root = Path(tempfile.mkdtemp(prefix="ownrank-sync-bench-"))
    try:
        for count in args.sizes:
            run_size(run, count, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    run.note(f"CPU probe {probe} ms: compare it across runs before comparing their times")
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
