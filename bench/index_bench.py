"""Index benchmark: what each FAISS index kind ownrank uses costs, and how exact it is.

For each catalog size and each index kind ownrank runs (``flat``: exact inner
product; ``hnsw``: the graph ``EngineConfig(index_kind="auto")`` switches to at
``hnsw_threshold`` items), built through ``ownrank.storage.vector_index.VectorIndex``
with the engine's default parameters (``EngineConfig``: M, efConstruction,
efSearch, FAISS threads), this measures:

- build: vectors added in batches of ``REBUILD_BATCH`` (how ``IndexKeeper`` builds
  an index from LMDB), seconds and vectors/s;
- memory: RSS growth over the build, the build's RSS peak above its start, the
  bytes of the index file ``VectorIndex.save`` writes, and an estimate from the
  layout (vectors, id maps, HNSW links);
- search, one query per call on one thread as the engine calls it: p50 / p99 /
  mean latency at k=10 and k=100 (warm-up calls excluded), recall@10 and
  recall@100 against exact search;
- filtered search at k=10 (``allowed=`` rows, a FAISS ID selector, the way
  ``IndexKeeper`` calls the index with a filter): each query admits one topic
  (~1/12 of the items), with efSearch = max(ef_search, 4k) as the engine uses.
  The engine takes this path for HNSW only when more than
  ``exact_filter_limit`` rows match (smaller sets are scored exactly); the JSON
  says which path the engine would take at each size.

Data: the clustered synthetic 384-d vectors of ``bench/catalog_bench.py``
(``SyntheticEncoder`` over ``item_batches`` texts, the same items as the catalog
and engine benchmarks for the same seed). Queries are fresh draws from the same
distribution (``make_query`` texts), deterministic by seed. Ground truth is exact
brute force (``faiss.knn``, BLAS) over the raw vectors, independent of the index
under test; a result whose score ties the k-th exact score within ``TIE_TOLERANCE``
counts as a hit (SIMD and BLAS inner products differ in the last bits).

Memory. Measured at 100k items: a flat index takes 1,543 B/vector in its file
(RSS +1,594 B/vector: float32 vectors, id map, IndexIDMap2's reverse hash map);
HNSW (M=32) 1,816 B/vector (RSS +1,867: ~272 B/vector more of links, levels,
offsets). At 1M x 384 float32 the raw vectors are 1.43 GiB and are kept for the
whole size (both kinds are built from them; the ground truth needs them). One
index lives at a time and is freed (``del``, ``gc.collect``, ``malloc_trim``)
before the next kind and the next size; vectors are generated into one
preallocated array and added as views, so no second copy exists. Expected peak
RSS at 1M: 1.43 GiB (vectors) + ~1.74 GiB (HNSW; flat ~1.48) + ~0.3 GiB
(Python, FAISS, queries, one 83k-row filtered slice) = ~3.5 GiB, up to ~3.7 GiB
while FAISS grows its storage (the build peaked 1.5x the final index at 100k; at
1M the last doubling happens at ~half the final size, so the transient is ~1x).

Run time of the full mode (10k, 100k, 1M; 1000 queries), estimated from 10k /
100k runs on a shared 2-core machine: ~2.5 min generating data, ~2 min exact
ground truth, ~4-5 min of flat single-query scans at 1M (~95 ms each, 3 x 1050),
and the single-threaded HNSW build at 1M, the bulk: ~1000 vectors/s, 15-30 min.
About 30-40 minutes in all; ``--flat-queries 300`` saves ~3 minutes.

Usage::

    python bench/index_bench.py --quick        # 10k and 100k items, 300 queries
    python bench/index_bench.py                # 10k, 100k and 1M items, 1000 queries
    python bench/index_bench.py --sizes 10000,50000 --kinds hnsw

Results are printed and written to ``bench/results/index_bench.json``
(``index_bench_quick.json`` with --quick).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss

# bench/ is sys.path[0] when this file is run as a script
import machine_info
import numpy as np
import numpy.typing as npt
from catalog_bench import (
    TOPIC_NAMES,
    SyntheticEncoder,
    Watch,
    item_batches,
    latency_stats,
    machine,
    make_query,
    memory,
    say,
)
from threadpoolctl import threadpool_limits

from ownrank import EngineConfig
from ownrank.engine.index_keeper import REBUILD_BATCH, IndexKeeper
from ownrank.storage.vector_index import IndexType, VectorIndex

Vectors = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]
Json = dict[str, Any]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
KINDS: tuple[IndexType, ...] = ("flat", "hnsw")
TIE_TOLERANCE = 1e-5
GENERATE_BATCH = 8_192
FINGERPRINT = "bench:index"


@dataclass(frozen=True)
class Settings:
    """What one run measures; the defaults are the engine's own parameters."""

    queries: int = 1_000
    warmup: int = 50
    flat_queries: int | None = None  # timed flat queries (None: ``queries``)
    kinds: tuple[IndexType, ...] = KINDS
    filter_topics: int = 1  # topics (of 12) a filtered query admits
    batch: int = REBUILD_BATCH
    seed: int = 1234
    config: EngineConfig = field(default_factory=EngineConfig)
    data_dir: Path | None = None  # where index files are written to measure them
    save: bool = True


# -- data -----------------------------------------------------------------------------------


def make_catalog(count: int, seed: int) -> tuple[Vectors, npt.NDArray[np.int16]]:
    """The vectors the engine would store for ``count`` synthetic items, and their topics.

    Filled into one preallocated array, batch by batch, so no second copy of the
    catalog ever exists (1.54 GB at 1M items)."""
    encoder = SyntheticEncoder()
    vectors = np.empty((count, encoder.dimension), dtype=np.float32)
    topics = np.empty(count, dtype=np.int16)
    k = 0
    for items in item_batches(count, GENERATE_BATCH, seed, "s"):
        # the text Item.embedding_text() gives the encoder: "title. body"
        vectors[k : k + len(items)] = encoder.encode([f"{i['title']}. {i['body']}" for i in items])
        topics[k : k + len(items)] = [int(str(i["properties"]["topic"])[1:]) for i in items]
        k += len(items)
    return vectors, topics


def make_queries(count: int, seed: int) -> Vectors:
    """Fresh query vectors from the catalog's distribution (topic-led query texts)."""
    rng = np.random.default_rng(seed)
    return SyntheticEncoder().encode([make_query(rng) for _ in range(count)])


def filter_sets(topics: npt.NDArray[np.int16], admitted_topics: int) -> list[Rows]:
    """The rows each of 12 filters admits: filter j admits topics j .. j+admitted_topics-1
    (mod 12), so one topic is ~8% of the catalog. Query i uses filter i % 12, whatever
    its own topic, so most filtered queries look for rows far from where they land."""
    n = len(TOPIC_NAMES)
    return [
        np.flatnonzero(np.isin(topics, [(j + t) % n for t in range(admitted_topics)])).astype(
            np.int64
        )
        for j in range(n)
    ]


def exact_top(
    queries: Vectors, vectors: Vectors, k: int, rows: Rows | None = None
) -> tuple[Scores, Rows]:
    """Exact top-``k`` by inner product (brute force through BLAS), as rows; -1 pads."""
    scores, idx = faiss.knn(
        np.ascontiguousarray(queries), vectors, k, metric=faiss.METRIC_INNER_PRODUCT
    )
    idx = np.asarray(idx, dtype=np.int64)
    if rows is not None:
        idx = np.where(idx >= 0, rows[np.maximum(idx, 0)], -1)
    return np.asarray(scores, dtype=np.float32), idx


def exact_filtered_top(
    queries: Vectors, vectors: Vectors, allowed: Sequence[Rows], k: int
) -> tuple[Scores, Rows]:
    """Exact top-``k`` of query i within ``allowed[i % len(allowed)]``."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    found = np.full((len(queries), k), -1, dtype=np.int64)
    which_set = np.arange(len(queries)) % len(allowed)
    for j, rows in enumerate(allowed):
        which = np.flatnonzero(which_set == j)
        if which.size == 0 or rows.size == 0:
            continue
        width = min(k, rows.size)
        s, r = exact_top(queries[which], np.ascontiguousarray(vectors[rows]), width, rows)
        scores[which, :width], found[which, :width] = s, r
    return scores, found


# -- measuring ------------------------------------------------------------------------------


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so the next RSS delta is honest."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def estimate_index_bytes(kind: IndexType, count: int, dimension: int, hnsw_m: int) -> int:
    """Bytes the index should take in memory, from FAISS's layout.

    Both: float32 vectors, the id map (8 B/vector) and IndexIDMap2's reverse hash map
    (~40 B/vector). HNSW: 2M level-0 link slots of 4 B, M slots per upper level
    (expected 1/(M-1) upper levels per vector), plus offsets (8 B) and levels (4 B)."""
    total = count * (dimension * 4 + 8 + 40)
    if kind == "hnsw":
        slots = 2 * hnsw_m + hnsw_m / (hnsw_m - 1)
        total += int(count * (slots * 4 + 8 + 4))
    return total


def build_index(kind: IndexType, vectors: Vectors, settings: Settings) -> VectorIndex:
    """A ``VectorIndex`` as ``IndexKeeper._build`` makes it: engine parameters, batched adds."""
    cfg = settings.config
    index = VectorIndex(
        kind,
        vectors.shape[1],
        hnsw_m=cfg.hnsw_m,
        ef_construction=cfg.hnsw_ef_construction,
        ef_search=cfg.hnsw_ef_search,
    )
    for start in range(0, len(vectors), settings.batch):
        stop = min(len(vectors), start + settings.batch)
        index.add(np.arange(start, stop, dtype=np.int64), vectors[start:stop])
    return index


def recall(found: Rows, found_scores: Scores, truth: Rows, truth_scores: Scores, k: int) -> float:
    """Share of the exact top-``k`` found; a hit whose score ties the k-th exact score
    (within ``TIE_TOLERANCE``) counts, since equal scores may come in any order."""
    hits = total = 0
    for f, fs, t, ts in zip(found, found_scores, truth, truth_scores, strict=True):
        valid = t[:k] >= 0
        want = int(valid.sum())
        if want == 0:
            continue
        kth = float(ts[want - 1])
        got = f[:k] >= 0
        ok = got & (np.isin(f[:k], t[:k][valid]) | (fs[:k] >= kth - TIE_TOLERANCE))
        hits += min(int(ok.sum()), want)
        total += want
    return round(hits / total, 4) if total else float("nan")


SearchOne = Callable[[int, Vectors], tuple[Scores, Rows]]
"""(query number, 1 x d query) -> its scores and rows, best first."""


def time_search(
    search: SearchOne, queries: Vectors, warmup: Vectors, k: int
) -> tuple[Json, Scores, Rows]:
    """Latency of one ``search`` call per query (after untimed warm-up calls), and the
    results padded to ``k`` (-1 rows); ``short_results`` counts queries with fewer."""
    for i in range(len(warmup)):
        search(i, warmup[i : i + 1])
    n = len(queries)
    seconds = np.empty(n, dtype=np.float64)
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    rows = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        q = queries[i : i + 1]
        start = time.perf_counter()
        s, r = search(i, q)
        seconds[i] = time.perf_counter() - start
        width = min(k, r.shape[0])
        scores[i, :width], rows[i, :width] = s[:width], r[:width]
    stats = latency_stats(seconds.tolist())
    stats["short_results"] = int(((rows >= 0).sum(axis=1) < k).sum())
    return stats, scores, rows


def index_search(
    index: VectorIndex,
    k: int,
    allowed: Sequence[Rows] | None = None,
    ef_search: int | None = None,
) -> SearchOne:
    """``VectorIndex.search`` of one query; with ``allowed``, query i admits
    ``allowed[i % len(allowed)]`` (an ID selector inside FAISS)."""

    def run(i: int, query: Vectors) -> tuple[Scores, Rows]:
        rows = None if allowed is None else allowed[i % len(allowed)]
        s, r = index.search(query, k, allowed=rows, ef_search=ef_search)
        return s[0], r[0]

    return run


def engine_filtered_search(
    index: VectorIndex, config: EngineConfig, k: int, allowed: Sequence[Rows]
) -> SearchOne:
    """The engine's whole filtered path for one query: ``IndexKeeper.search_within``
    (flat: ID selector; HNSW: exact scoring of small admitted sets, else the HNSW
    filtered search with exact fallback when it comes back short).

    The keeper is made without LMDB (``__new__``): that method reads only ``index``
    and ``config``, so this times the engine's own code, not a copy of it."""
    keeper = IndexKeeper.__new__(IndexKeeper)
    keeper.index = index
    keeper.config = config

    def run(i: int, query: Vectors) -> tuple[Scores, Rows]:
        found = keeper.search_within(query[0], k, allowed[i % len(allowed)])
        rows = np.fromiter((r for r, _ in found), dtype=np.int64, count=len(found))
        scores = np.fromiter((s for _, s in found), dtype=np.float32, count=len(found))
        return scores, rows

    return run


def index_file_bytes(index: VectorIndex, settings: Settings) -> tuple[int, float]:
    """Size of the file ``VectorIndex.save`` writes (streamed, no in-memory copy), and
    the seconds it took; the file is deleted at once."""
    folder = Path(tempfile.mkdtemp(prefix="ownrank-index-bench-", dir=settings.data_dir))
    try:
        path = folder / "index.faiss"
        start = time.perf_counter()
        index.save(path, fingerprint=FINGERPRINT)
        return path.stat().st_size, time.perf_counter() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_kind(
    kind: IndexType,
    vectors: Vectors,
    queries: Vectors,
    warmup: Vectors,
    truth: dict[str, tuple[Scores, Rows]],
    allowed: Sequence[Rows],
    settings: Settings,
    watch: Watch,
) -> Json:
    """Build one index kind over ``vectors`` and measure it; the index is freed on return."""
    cfg = settings.config
    release_memory()
    before = watch.mark()
    build_s, index, build_peak = watch.extra_peak(lambda: build_index(kind, vectors, settings))
    release_memory()
    after = watch.mark()
    count, dim = vectors.shape
    out: Json = {
        "kind": kind,
        "build": {
            "seconds": round(build_s, 3),
            "vectors_per_s": round(count / build_s, 1) if build_s > 0 else None,
            "batch": settings.batch,
        },
    }
    mem: Json = {
        "rss_before_mb": before["rss_mb"],
        "rss_after_mb": after["rss_mb"],
        "rss_delta_mb": round(after["rss_mb"] - before["rss_mb"], 1),
        "build_peak_above_start_mb": build_peak,
        "estimated_bytes": estimate_index_bytes(kind, count, dim, cfg.hnsw_m),
        "raw_vector_bytes": count * dim * 4,
    }
    if settings.save:
        size, save_s = index_file_bytes(index, settings)
        mem.update(
            index_file_bytes=size,
            file_bytes_per_vector=round(size / count, 1),
            save_seconds=round(save_s, 3),
        )
    out["memory"] = mem
    n_timed = len(queries)
    if kind == "flat" and settings.flat_queries is not None:
        n_timed = min(n_timed, settings.flat_queries)
    timed_queries = queries[:n_timed]
    search: Json = {}
    for k in (10, 100):
        stats, scores, rows = time_search(index_search(index, k), timed_queries, warmup, k)
        ts, tr = truth["unfiltered"]
        stats["recall"] = recall(rows, scores, tr[:n_timed], ts[:n_timed], k)
        search[f"k{k}"] = stats
    # filtered: the index's own filtered search, as IndexKeeper calls it ...
    k = 10
    ef = max(cfg.hnsw_ef_search, 4 * k) if kind == "hnsw" else None
    ts, tr = truth["filtered"][0][:n_timed], truth["filtered"][1][:n_timed]
    admitted = int(np.mean([a.size for a in allowed]))
    stats, scores, rows = time_search(index_search(index, k, allowed, ef), timed_queries, warmup, k)
    stats.update(recall=recall(rows, scores, tr, ts, k), ef_search=ef, mean_allowed_rows=admitted)
    search["filtered_k10"] = stats
    # ... and the engine's whole filtered path (exact scoring / fallback included)
    if kind == "flat":  # IndexKeeper makes exactly the call above
        stats = {**stats, "path": "flat search with an ID selector (the call above)"}
    else:
        stats, scores, rows = time_search(
            engine_filtered_search(index, cfg, k, allowed), timed_queries, warmup, k
        )
        stats["recall"] = recall(rows, scores, tr, ts, k)
        if admitted > cfg.exact_filter_limit:
            stats["path"] = (
                "hnsw search with an ID selector, exact scoring for the "
                f"{search['filtered_k10']['short_results']} queries it left short"
            )
        else:
            stats["path"] = (
                f"exact scoring (admitted rows <= exact_filter_limit {cfg.exact_filter_limit})"
            )
    search["engine_filtered_k10"] = stats
    out["search"] = search
    del index
    release_memory()
    return out


def measure_size(count: int, settings: Settings, queries: Vectors, warmup: Vectors) -> Json:
    """Every kind at one catalog size; the catalog is freed on return."""
    say(f"\n== {count} items (kinds {', '.join(settings.kinds)})")
    watch = Watch()
    start = time.perf_counter()
    vectors, topics = make_catalog(count, settings.seed + 100)
    gen_s = time.perf_counter() - start
    allowed = filter_sets(topics, settings.filter_topics)
    del topics
    say(f"generated {count} x {vectors.shape[1]} vectors in {gen_s:.1f} s")
    start = time.perf_counter()
    k_max = min(100, count)
    truth = {
        "unfiltered": exact_top(queries, vectors, k_max),
        "filtered": exact_filtered_top(queries, vectors, allowed, 10),
    }
    truth_s = time.perf_counter() - start
    say(f"exact ground truth for {len(queries)} queries in {truth_s:.1f} s")
    cfg = settings.config
    out: Json = {
        "items": count,
        "engine_auto_kind": "hnsw" if count >= cfg.hnsw_threshold else "flat",
        "generate_seconds": round(gen_s, 2),
        "truth_seconds": round(truth_s, 2),
        "raw_vector_bytes": int(vectors.nbytes),
        "memory_with_data": watch.mark(),
        "kinds": {},
    }
    for kind in settings.kinds:
        say(f"-- {kind} (load average {[round(x, 2) for x in os.getloadavg()]})")
        # filtered query i admits allowed[i % 12]
        result = measure_kind(kind, vectors, queries, warmup, truth, allowed, settings, watch)
        out["kinds"][kind] = result
        say_kind(count, result)
    del vectors, truth, allowed
    release_memory()
    out["memory"] = watch.finish()
    return out


def say_kind(count: int, r: Json) -> None:
    b, m, s = r["build"], r["memory"], r["search"]
    file_mb = f"{m['index_file_bytes'] / 2**20:.1f}" if "index_file_bytes" in m else "-"
    say(
        f"build {b['seconds']:.2f} s ({b['vectors_per_s']:.0f} vectors/s); RSS +"
        f"{m['rss_delta_mb']:.0f} MiB (build peak +{m['build_peak_above_start_mb']:.0f}), "
        f"file {file_mb} MiB, estimate {m['estimated_bytes'] / 2**20:.1f} MiB"
    )
    for name, st in s.items():
        say(
            f"{name}: p50 {st['p50_ms']:.3f} ms, p99 {st['p99_ms']:.3f} ms, mean "
            f"{st['mean_ms']:.3f} ms, recall {st['recall']} ({st['count']} queries, "
            f"{st['short_results']} short)"
        )


# -- main -----------------------------------------------------------------------------------


def parse_sizes(text: str) -> tuple[int, ...]:
    """'10000,100k,1M' -> (10000, 100000, 1000000)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip().lower()
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1:], 1)
        out.append(int(float(part[:-1] if scale > 1 else part) * scale))
    return tuple(out)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10k and 100k items, 300 queries")
    p.add_argument("--sizes", type=parse_sizes, help="e.g. 10000,100k,1M (default 10k,100k,1M)")
    p.add_argument("--queries", type=int, help="timed queries per measurement (1000; quick 300)")
    p.add_argument("--flat-queries", type=int, help="cap on timed flat queries (default: all)")
    p.add_argument("--warmup", type=int, default=50, help="untimed queries first (default 50)")
    p.add_argument("--kinds", nargs="*", default=list(KINDS), choices=list(KINDS))
    p.add_argument(
        "--filter-topics",
        type=int,
        default=1,
        help="topics of 12 a filtered query admits (default 1, ~8%%; 3 at 100k items passes "
        "exact_filter_limit, so HNSW's filtered search is what the engine runs)",
    )
    p.add_argument("--threads", type=int, help="FAISS and BLAS threads (default: engine's, 1)")
    p.add_argument("--no-save", dest="save", action="store_false", help="skip index file sizes")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data-dir", type=Path, help="where index files are written (default: tmp)")
    p.add_argument("--out", type=Path, help="JSON results file")
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = QUICK_SIZES if args.quick else FULL_SIZES
    if args.queries is None:
        args.queries = 300 if args.quick else 1_000
    if args.threads is None:
        args.threads = EngineConfig().index_threads
    if args.out is None:
        args.out = RESULTS_DIR / ("index_bench_quick.json" if args.quick else "index_bench.json")
    return args


def print_table(result: Json) -> None:
    say("\n== summary")
    m = result["machine"]
    say(
        f"machine: {m['cpu_count']} CPUs ({m['cpu_model']}), {result['threads']} FAISS/BLAS "
        f"thread(s); load average at start {m['loadavg_at_start']}, at end "
        f"{result['loadavg_at_end']}"
    )
    c = result["config"]
    say(
        f"engine parameters: hnsw M={c['hnsw_m']}, efConstruction={c['hnsw_ef_construction']}, "
        f"efSearch={c['hnsw_ef_search']} (filtered: max(efSearch, 4k)); auto picks hnsw at >= "
        f"{c['hnsw_threshold']} items"
    )
    rows: list[tuple[str, ...]] = [
        (
            "items",
            "kind",
            "build s",
            "file MiB",
            "RSS+ MiB",
            "k10 p50/p99 ms",
            "k100 p50/p99 ms",
            "R@10",
            "R@100",
            "index filt p50/p99 ms",
            "R@10",
            "short",
            "engine filt p50/p99 ms",
            "R@10",
        )
    ]
    for size in result["sizes"].values():
        for kind, r in size["kinds"].items():
            s = r["search"]
            f, e = s["filtered_k10"], s["engine_filtered_k10"]
            rows.append(
                (
                    str(size["items"]),
                    kind + ("*" if size["engine_auto_kind"] == kind else ""),
                    f"{r['build']['seconds']:.2f}",
                    f"{r['memory']['index_file_bytes'] / 2**20:.1f}"
                    if "index_file_bytes" in r["memory"]
                    else "-",
                    f"{r['memory']['rss_delta_mb']:.0f}",
                    f"{s['k10']['p50_ms']:.3f} / {s['k10']['p99_ms']:.3f}",
                    f"{s['k100']['p50_ms']:.3f} / {s['k100']['p99_ms']:.3f}",
                    f"{s['k10']['recall']:.4f}",
                    f"{s['k100']['recall']:.4f}",
                    f"{f['p50_ms']:.3f} / {f['p99_ms']:.3f}",
                    f"{f['recall']:.4f}",
                    str(f["short_results"]),
                    f"{e['p50_ms']:.3f} / {e['p99_ms']:.3f}",
                    f"{e['recall']:.4f}",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        say("  ".join(cell.rjust(w) for cell, w in zip(r, widths, strict=True)))
    say(
        "* the kind EngineConfig(index_kind='auto') uses at that size. Filtered (k=10, "
        f"{result['settings']['filter_topics']} topic(s) of 12 admitted): "
        "'index' = VectorIndex.search(allowed=...), 'short' = queries "
        "it returned < 10 rows for; 'engine' = IndexKeeper.search_within, i.e. what a "
        "filtered query costs in the engine:"
    )
    for size in result["sizes"].values():
        for kind, r in size["kinds"].items():
            say(f"  {size['items']} {kind}: {r['search']['engine_filtered_k10']['path']}")
    say(f"peak RSS of the whole run: {result['memory']['process_peak_mb']:.0f} MiB")


def run(args: argparse.Namespace) -> Json:
    """Measure every size; the result is also what ``main`` writes as JSON."""
    config = EngineConfig(index_threads=args.threads)
    settings = Settings(
        queries=args.queries,
        warmup=args.warmup,
        flat_queries=args.flat_queries,
        kinds=tuple(args.kinds),
        filter_topics=args.filter_topics,
        seed=args.seed,
        config=config,
        data_dir=args.data_dir,
        save=args.save,
    )
    started = time.time()
    result: Json = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "threads": args.threads,
        "config": config.model_dump(
            mode="json",
            include={
                "hnsw_threshold",
                "hnsw_m",
                "hnsw_ef_construction",
                "hnsw_ef_search",
                "index_threads",
                "exact_filter_limit",
            },
        ),
        "settings": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in asdict(settings).items()
            if k != "config"
        },
        "rebuild_batch": REBUILD_BATCH,
        "sizes": {},
    }
    say(f"machine: {json.dumps(result['machine'])}")
    faiss.omp_set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        both = make_queries(args.queries + args.warmup, args.seed + 2)
        queries, warmup = both[: args.queries], both[args.queries :]
        for count in args.sizes:
            result["sizes"][str(count)] = measure_size(count, settings, queries, warmup)
    result["memory"] = memory()
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = round(time.time() - started, 1)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    print_table(result)
    machine_info.write_results(result, args.out, " (other work on the machine skews the timings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
