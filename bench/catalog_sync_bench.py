"""Device catalog sync benchmark: bytes per item on the wire, and the time of a full
sync and of a delta (1% of the items changed) at 10k and 100k items, server side
(``Catalog.changes`` + serializing each page) and client side (parsing + applying
to a ``CatalogReplica``). No model is loaded: the catalog is ``catalog_bench.py``'s
synthetic one (``SyntheticEncoder``, ``item_batches``, 384 dimensions).

Usage::

    python bench/catalog_sync_bench.py              # 10k and 100k items, ~3 minutes
    python bench/catalog_sync_bench.py --sizes 2000 # quick

Results are printed and written to ``bench/results/catalog_sync_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import machine_info
import msgpack
import numpy as np
from catalog_bench import SyntheticEncoder, item_batches

from ownrank import Engine, EngineConfig
from ownrank.engine.catalog_replica import CatalogReplica

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "catalog_sync_bench.json"
PAGE_SIZE = 1_000
Json = dict[str, Any]


def say(message: str) -> None:
    print(message, flush=True)


def open_engine(path: Path) -> Engine:
    config = EngineConfig(
        content_neighbours=0,  # the sync never reads the neighbour lists
        index_kind="flat",
        warm_up_on_open=False,
        lmdb_sync=False,
    )
    return Engine(path, config, encoder=SyntheticEncoder())


def wire(page: Any, form: str) -> bytes:
    if form == "msgpack":
        return bytes(msgpack.packb(page.to_wire(binary=True), use_bin_type=True))
    return json.dumps(page.to_wire(), separators=(",", ":"), ensure_ascii=False).encode()


def unwire(data: bytes, form: str) -> Any:
    return msgpack.unpackb(data) if form == "msgpack" else json.loads(data)


def run_sync(engine: Engine, replica: CatalogReplica, form: str) -> Json:
    """One whole sync from the replica's cursor: server and client seconds, bytes."""
    server = client = 0.0
    pages = items = changed = removed = size = 0
    while True:
        start = time.perf_counter()
        page = engine.catalog.changes(**replica.request(), page_size=PAGE_SIZE)
        data = wire(page, form)
        middle = time.perf_counter()
        done = replica.apply(unwire(data, form))
        client += time.perf_counter() - middle
        server += middle - start
        pages += 1
        items += len(page.items)
        changed += len(page.changed)
        removed += len(page.removed)
        size += len(data)
        if done:
            break
    return {
        "server_s": round(server, 3),
        "client_s": round(client, 3),
        "pages": pages,
        "items": items,
        "changed": changed,
        "removed": removed,
        "bytes": size,
        "full": page.full,
    }


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


def bytes_per_item(engine: Engine) -> list[Json]:
    out = []
    for encoding in ("f32", "f16", "i8"):
        for titles in (True, False):
            page = engine.catalog.changes(encoding=encoding, titles=titles, page_size=PAGE_SIZE)
            count = len(page.items)
            out.append(
                {
                    "encoding": encoding,
                    "titles": titles,
                    "vector_bytes": round((len(page.vectors) + len(page.scales or b"")) / count, 1),
                    "json": round(len(wire(page, "json")) / count, 1),
                    "msgpack": round(len(wire(page, "msgpack")) / count, 1),
                }
            )
    return out


def change_one_percent(engine: Engine, count: int, seed: int) -> Json:
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
    return {
        "properties": len(props),
        "texts": len(texts),
        "deleted": len(gone),
        "write_s": round(time.perf_counter() - start, 2),
    }


def run_size(count: int, root: Path, forms: list[tuple[str, str]]) -> Json:
    path = root / f"store-{count}"
    engine = open_engine(path)
    try:
        start = time.perf_counter()
        for batch in item_batches(count, 5_000, seed=count, prefix="it"):
            engine.catalog.upsert(batch)
        say(f"{count:,} items ingested in {time.perf_counter() - start:.1f} s")
        result: Json = {"items": count, "bytes_per_item": bytes_per_item(engine), "syncs": []}
        replicas: dict[tuple[str, str], CatalogReplica] = {}
        for encoding, form in forms:
            replica = CatalogReplica(encoding=encoding)  # type: ignore[arg-type]
            full = run_sync(engine, replica, form)
            replicas[(encoding, form)] = replica
            result["syncs"].append({"kind": "full", "encoding": encoding, "form": form, **full})
            say(f"  full  {encoding} {form}: {full}")
        result["change"] = change_one_percent(engine, count, seed=count + 1)
        for encoding, form in forms:
            replica = replicas[(encoding, form)]
            delta = run_sync(engine, replica, form)
            result["syncs"].append({"kind": "delta", "encoding": encoding, "form": form, **delta})
            say(f"  delta {encoding} {form}: {delta}")
            if encoding == "f32":
                result[f"exact_{form}"] = exact(engine, replica)
        return result
    finally:
        engine.close()
        shutil.rmtree(path, ignore_errors=True)


def table(results: list[Json]) -> str:
    lines = ["bytes per item (one page of 1,000; vectors only / whole page as JSON / msgpack):"]
    for res in results:
        for row in res["bytes_per_item"]:
            titles = "with titles" if row["titles"] else "no titles"
            lines.append(
                f"  {res['items']:>7,} {row['encoding']} {titles:<11} "
                f"{row['vector_bytes']:>7} {row['json']:>8} {row['msgpack']:>8}"
            )
    lines.append("sync times (server = changes + serialize; client = parse + apply):")
    for res in results:
        for s in res["syncs"]:
            lines.append(
                f"  {res['items']:>7,} {s['kind']:<5} {s['encoding']} {s['form']:<7} "
                f"server {s['server_s']:>7.3f} s  client {s['client_s']:>7.3f} s  "
                f"{s['bytes'] / 2**20:>8.2f} MiB  {s['pages']} pages"
            )
        exact = {k: v for k, v in res.items() if k.startswith("exact_")}
        lines.append(f"  {res['items']:>7,} after the delta, f32 copies bit for bit: {exact}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> Json:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    args = parser.parse_args(argv)
    forms = [("f32", "json"), ("f32", "msgpack"), ("i8", "json")]
    started = time.perf_counter()
    machine, probe = machine_info.machine(["numpy", "msgpack", "lmdb"]), machine_info.cpu_probe()
    root = Path(tempfile.mkdtemp(prefix="ownrank-sync-bench-"))
    try:
        results = [run_size(n, root, forms) for n in args.sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    say(table(results))
    report: Json = {
        "machine": machine,
        "cpu_probe_ms": probe,
        "page_size": PAGE_SIZE,
        "runs": results,
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        "total_seconds": time.perf_counter() - started,
    }
    machine_info.write_results(report, RESULTS_FILE, f", cpu probe {probe} ms")
    return report


if __name__ == "__main__":
    main()
