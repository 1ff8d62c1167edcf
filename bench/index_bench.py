"""Index benchmark: what each FAISS index kind ownrank uses costs, and how exact it is.

For each catalog size and index kind (``flat``: exact inner product; ``hnsw``: the
graph ``index_kind="auto"`` switches to at ``hnsw_threshold`` items; ``ivf``:
inverted lists, from ``ivf_threshold`` items), built as ``IndexKeeper`` builds it
(engine parameters, IVF trained on the keeper's sample, adds in batches of
``REBUILD_BATCH``):

- build: seconds, rate, RSS growth and peak, the size of the file
  ``VectorIndex.save`` writes and an estimate from FAISS's layout;
- search, one query per call on one thread as the engine calls it, k=10 and k=100:
  latency (after warm-up calls) and recall against exact search;
- filtered search at k=10, each query admitting one topic (~1/12 of the items):
  ``path=index`` is the index's call with an ID selector (efSearch = max(ef_search,
  4k); IVF scans the nearest lists holding admitted rows), ``path=engine`` the engine's whole
  path (``IndexKeeper.search_within``, exact scoring up to ``exact_filter_limit``
  admitted rows); ``route`` says which;
- IVF only: the index saved and read back mapped from its file, as the engine opens it
  (``index_mmap``): the same searches, and how much of the process's memory is its own
  (anonymous) and how much file-backed (shared by every process mapping the file).

Data: the clustered synthetic vectors of ``bench/catalog_bench.py``, queries fresh
draws from the same distribution. Ground truth is brute force (``faiss.knn``); a
result tying the k-th exact score within ``TIE_TOLERANCE`` counts as a hit (SIMD and
BLAS inner products differ in the last bits). One index lives at a time, so an RSS
delta is that index's. The full mode takes 30-40 minutes on 2 cores (mostly the HNSW
build at 1M); ``--flat-queries 300`` saves a few minutes.

    python bench/index_bench.py --quick        # 10k and 100k items, 300 queries
    python bench/index_bench.py                # 10k, 100k and 1M items, 1000 queries
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import faiss
import harness
import numpy as np
import numpy.typing as npt
from catalog_bench import (
    TOPIC_NAMES,
    SyntheticEncoder,
    Watch,
    item_batches,
    make_query,
    memory,
    memory_rows,
    timed,
)
from threadpoolctl import threadpool_limits

from ownrank import EngineConfig
from ownrank.engine.index_keeper import REBUILD_BATCH, IndexKeeper
from ownrank.engine.index_sizing import (
    ef_search_for,
    ivf_lists_for,
    ivf_nprobe_for,
    ivf_training_stride,
)
from ownrank.storage.vector_index import IndexType, VectorIndex

Vectors = npt.NDArray[np.float32]
Scores = npt.NDArray[np.float32]
Rows = npt.NDArray[np.int64]

KINDS: tuple[IndexType, ...] = ("flat", "hnsw", "ivf")
# not run unless asked for: IVF holding float32 vectors (ivf_codes="float32"), to
# compare with the engine's float16 codes in the same run
IVF_FLOAT32 = "ivf-float32"
TIE_TOLERANCE = 1e-5
GENERATE_BATCH = 8_192
FINGERPRINT = "bench:index"


@dataclass(frozen=True)
class Settings:
    """What one run measures; the defaults are the engine's own parameters."""

    flat_queries: int | None = None  # timed flat queries (None: ``queries``)
    kinds: tuple[str, ...] = KINDS  # (and IVF_FLOAT32)
    filter_topics: int = 1  # topics (of 12) a filtered query admits
    seed: int = 1234
    config: EngineConfig = field(default_factory=EngineConfig)
    data_dir: Path | None = None  # where index files are written to measure them
    save: bool = True
    ef_sweep: tuple[int, ...] = ()  # HNSW: unfiltered search again at each efSearch
    nprobe_sweep: tuple[int, ...] = ()  # IVF: unfiltered search again at each nprobe


# -- data -----------------------------------------------------------------------------------


def make_catalog(count: int, seed: int) -> tuple[Vectors, npt.NDArray[np.int16]]:
    """The vectors the engine would store for ``count`` synthetic items, and their
    topics; filled into one preallocated array, so no second copy ever exists."""
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
    admitted = ([(j + t) % n for t in range(admitted_topics)] for j in range(n))
    return [np.flatnonzero(np.isin(topics, a)).astype(np.int64) for a in admitted]


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
    """Collect garbage and hand freed heap back to the OS (honest RSS deltas)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def estimate_index_bytes(
    kind: IndexType, count: int, dimension: int, hnsw_m: int, ivf_codes: str = "float32"
) -> int:
    """Bytes the index should take in memory, from FAISS's layout.

    All: float32 vectors, the ids (8 B/vector) and a hash map from id to position
    (~40 B/vector: IndexIDMap2's reverse map, IVF's direct map). HNSW: 2M level-0 link
    slots of 4 B, M slots per upper level (expected 1/(M-1) upper levels per vector),
    plus offsets (8 B) and levels (4 B). IVF: the centroids and their HNSW graph; with
    float16 codes, 2 B a dimension more and the table's rows (8 B/vector)."""
    total = count * (dimension * 4 + 8 + 40)
    if kind == "ivf" and ivf_codes == "float16":
        total += count * (dimension * 2 + 8)
    slots = 2 * hnsw_m + hnsw_m / (hnsw_m - 1)
    if kind == "hnsw":
        total += int(count * (slots * 4 + 8 + 4))
    if kind == "ivf":
        lists = ivf_lists_for(count)
        total += int(lists * (dimension * 4 + slots * 4 + 8 + 4))
    return total


def build_index(kind: IndexType, vectors: Vectors, settings: Settings) -> VectorIndex:
    """A ``VectorIndex`` as ``IndexKeeper`` builds it: engine parameters, batched adds."""
    cfg = settings.config
    lists = ivf_lists_for(len(vectors)) if kind == "ivf" else 0
    index = VectorIndex(
        kind,
        vectors.shape[1],
        hnsw_m=cfg.hnsw_m,
        ef_construction=cfg.hnsw_ef_construction,
        ef_search=ef_search_for(len(vectors), cfg.hnsw_ef_search),
        ivf_lists=lists,
        nprobe=ivf_nprobe_for(lists, cfg.ivf_nprobe),
        training=vectors[:: ivf_training_stride(len(vectors), lists)] if lists else None,
        trained_on=len(vectors),
        ivf_codes=cfg.ivf_codes,
    )
    for start in range(0, len(vectors), REBUILD_BATCH):
        stop = min(len(vectors), start + REBUILD_BATCH)
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


def measure_search(
    run: harness.Run,
    search: SearchOne,
    queries: tuple[Vectors, Vectors],
    truth: tuple[Scores, Rows],
    k: int,
    paths: Sequence[str],
    **labels: harness.Label,
) -> int:
    """Time one ``search`` call per query (``queries``: timed, then untimed warm-up
    calls first); latency, recall@k and short answers (fewer than k rows) as rows of
    each of ``paths`` (two paths making the same call share one measurement).
    Returns the short answers."""
    timed, warmup = queries
    for i in range(len(warmup)):
        search(i, warmup[i : i + 1])
    n = len(timed)
    seconds: list[float] = []
    scores = np.full((n, k), -np.inf, dtype=np.float32)
    rows = np.full((n, k), -1, dtype=np.int64)
    for i in range(n):
        start = time.perf_counter()
        s, r = search(i, timed[i : i + 1])
        seconds.append(time.perf_counter() - start)
        width = min(k, r.shape[0])
        scores[i, :width], rows[i, :width] = s[:width], r[:width]
    found = recall(rows, scores, truth[1][:n], truth[0][:n], k)
    short = int(((rows >= 0).sum(axis=1) < k).sum())
    for path in paths:
        run.latency("search", seconds, k=k, **labels, path=path, mean_max=True)
        run.add(f"recall@{k}", found, "recall", k=k, **labels, path=path)
        run.add("short results", short, "count", k=k, **labels, path=path)
    return short


def index_search(
    index: VectorIndex,
    k: int,
    allowed: Sequence[Rows] | None = None,
    ef_search: int | None = None,
    nprobe: int | None = None,
) -> SearchOne:
    """``VectorIndex.search`` of one query; with ``allowed``, query i admits
    ``allowed[i % len(allowed)]`` (an ID selector inside FAISS)."""

    def run(i: int, query: Vectors) -> tuple[Scores, Rows]:
        rows = None if allowed is None else allowed[i % len(allowed)]
        s, r = index.search(query, k, allowed=rows, ef_search=ef_search, nprobe=nprobe)
        return s[0], r[0]

    return run


def engine_filtered_search(
    index: VectorIndex, config: EngineConfig, k: int, allowed: Sequence[Rows]
) -> SearchOne:
    """The engine's whole filtered path for one query, ``IndexKeeper.search_within``.
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
    """Bytes and seconds of the file ``VectorIndex.save`` writes (deleted at once)."""
    folder = Path(tempfile.mkdtemp(prefix="ownrank-index-bench-", dir=settings.data_dir))
    try:
        path = folder / "index.faiss"
        seconds, _ = timed(lambda: index.save(path, fingerprint=FINGERPRINT))
        return path.stat().st_size, seconds
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def engine_kind(name: str, settings: Settings) -> tuple[IndexType, Settings]:
    """The index kind a benchmark kind builds, and the settings it builds it with."""
    if name != IVF_FLOAT32:
        return name, settings  # type: ignore[return-value]
    config = settings.config.model_copy(update={"ivf_codes": "float32"})
    return "ivf", replace(settings, config=config)


def measure_kind(
    run: harness.Run,
    name: str,
    data: tuple[Vectors, Sequence[Rows]],
    queries: tuple[Vectors, Vectors],
    truth: dict[str, tuple[Scores, Rows]],
    settings: Settings,
    watch: Watch,
) -> None:
    """Build one index kind over the vectors (``data``: vectors, each filter's admitted
    rows; ``queries``: timed, warm-up) and measure it; the index is freed on return."""
    kind, settings = engine_kind(name, settings)
    vectors, allowed = data
    cfg = settings.config
    count, dim = vectors.shape
    labels: dict[str, harness.Label] = {"index": name, "items": count}
    release_memory()
    before = watch.mark()
    build_s, index, build_peak = watch.extra_peak(lambda: build_index(kind, vectors, settings))
    release_memory()
    after = watch.mark()
    run.add("build", build_s, "s", **labels)
    run.add("build rate", count / build_s if build_s > 0 else None, "items/s", **labels)
    run.add("RSS before", before["rss_mb"], "MiB", **labels)
    run.add("RSS after", after["rss_mb"], "MiB", **labels)
    run.add("RSS growth", after["rss_mb"] - before["rss_mb"], "MiB", **labels)
    run.add("build peak", build_peak, "MiB", **labels)  # RSS peak above the build's start
    estimate = estimate_index_bytes(kind, count, dim, cfg.hnsw_m, cfg.ivf_codes)
    run.add("estimate", estimate / 2**20, "MiB", **labels)
    if settings.save:
        size, save_s = index_file_bytes(index, settings)
        run.add("index file", size / 2**20, "MiB", **labels)
        run.add("file per vector", size / count, "B", **labels)
        run.add("save", 1e3 * save_s, "ms", **labels)
    if kind == "flat" and settings.flat_queries is not None:
        queries = (queries[0][: settings.flat_queries], queries[1])
    for k in (10, 100):
        search = index_search(index, k)
        measure_search(run, search, queries, truth["unfiltered"], k, ["index"], **labels,
                       filter="none")  # fmt: skip
    for ef in settings.ef_sweep if kind == "hnsw" else ():  # recall against efSearch
        for k in (10, 100):
            search = index_search(index, k, ef_search=ef)
            measure_search(run, search, queries, truth["unfiltered"], k, ["index"], **labels,
                           filter="sweep", ef_search=max(ef, k))  # fmt: skip
    for nprobe in settings.nprobe_sweep if kind == "ivf" else ():  # recall against nprobe
        for k in (10, 100):
            search = index_search(index, k, nprobe=nprobe)
            measure_search(run, search, queries, truth["unfiltered"], k, ["index"], **labels,
                           filter="sweep", nprobe=nprobe)  # fmt: skip
    if kind == "ivf":
        run.add("inverted lists", index.ivf_lists, "count", **labels)
        run.add("nprobe", index.nprobe, "count", **labels)
    # filtered: the index's own filtered search, as IndexKeeper calls it (for flat,
    # exactly the engine's whole path) ...
    k, topic = 10, {**labels, "filter": "topic"}
    ef = max(index.ef_search, 4 * k) if kind == "hnsw" else None
    admitted = int(np.mean([a.size for a in allowed]))
    paths = ["index", "engine"] if kind == "flat" else ["index"]
    search = index_search(index, k, allowed, ef)
    short = measure_search(run, search, queries, truth["filtered"], k, paths, **topic)
    run.add("ef search", ef, "count", k=k, **topic, path="index")
    run.add("admitted rows", admitted, "count", k=k, **topic, path="index")  # mean per filter
    # ... and the engine's whole filtered path (exact scoring / fallback included)
    if kind == "flat":
        route = "flat search with an ID selector (the call above)"
    else:
        search = engine_filtered_search(index, cfg, k, allowed)
        measure_search(run, search, queries, truth["filtered"], k, ["engine"], **topic)
        if admitted > cfg.exact_filter_limit or kind == "ivf":
            route = f"{kind} search with an ID selector, exact scoring for the "
            route += f"{short} queries it left short"
        else:
            route = f"exact scoring (admitted rows <= exact_filter_limit {cfg.exact_filter_limit})"
    run.add("route", route, "", k=k, **topic, path="engine")
    if kind == "ivf" and settings.save:
        measure_mapped(run, name, index, (allowed, queries, truth), settings, watch)
    del index
    release_memory()


def measure_mapped(
    run: harness.Run,
    name: str,
    index: VectorIndex,
    work: tuple[Sequence[Rows], tuple[Vectors, Vectors], dict[str, tuple[Scores, Rows]]],
    settings: Settings,
    watch: Watch,
) -> None:
    """The same IVF index read back from its file mapped (``index_mmap``, what the
    engine opens): how much the process's anonymous (its own) and file-backed
    (shareable) memory grow with it, and the searches again (``storage=mapped``), to
    compare with the in-memory rows of the same run."""
    allowed, queries, truth = work
    labels: dict[str, harness.Label] = {"index": name, "items": index.ntotal}
    folder = Path(tempfile.mkdtemp(prefix="ownrank-index-bench-", dir=settings.data_dir))
    try:
        path = folder / "index.faiss"
        index.save(path, fingerprint=FINGERPRINT)
        nprobe = index.nprobe
        before = watch.mark()
        seconds, mapped = timed(
            lambda: VectorIndex.load(
                path, fingerprint=FINGERPRINT, dimension=queries[0].shape[1], mapped=True
            )
        )
        mapped.nprobe = nprobe
        run.add("open mapped", seconds, "s", **labels)
        for k in (10, 100):
            measure_search(run, index_search(mapped, k), queries, truth["unfiltered"], k,
                           ["index"], **labels, filter="mapped", storage="mapped")  # fmt: skip
        search = index_search(mapped, 10, allowed)
        measure_search(run, search, queries, truth["filtered"], 10, ["index"], **labels,
                       filter="mapped, topic", storage="mapped")  # fmt: skip
        after = watch.mark()
        for key, name in (("anon_mb", "anonymous"), ("file_mb", "file-backed")):
            growth = after[key] - before[key]
            run.add(f"RSS {name} growth, mapped", growth, "MiB", **labels, storage="mapped")
        del mapped
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure_size(
    run: harness.Run, count: int, settings: Settings, queries: Vectors, warmup: Vectors
) -> None:
    """Every kind at one catalog size; the catalog is freed on return."""
    print(f"== {count} items (kinds {', '.join(settings.kinds)})")
    watch = Watch()
    seconds, (vectors, topics) = timed(lambda: make_catalog(count, settings.seed + 100))
    run.add("generate", seconds, "s", items=count)
    allowed = filter_sets(topics, settings.filter_topics)  # query i admits allowed[i % 12]
    del topics
    start = time.perf_counter()
    truth = {
        "unfiltered": exact_top(queries, vectors, min(100, count)),
        "filtered": exact_filtered_top(queries, vectors, allowed, 10),
    }
    run.add("ground truth", time.perf_counter() - start, "s", items=count)
    run.add(
        "auto index", auto_kind(count, settings.config), "", items=count
    )  # what index_kind="auto" picks
    run.add("raw vectors", vectors.nbytes / 2**20, "MiB", items=count)
    memory_rows(run, watch.mark(), items=count, at="with data")
    for kind in settings.kinds:
        measure_kind(run, kind, (vectors, allowed), (queries, warmup), truth, settings, watch)
    del vectors, truth, allowed
    release_memory()
    memory_rows(run, watch.finish(), items=count, at="end")


def auto_kind(count: int, config: EngineConfig) -> IndexType:
    """What ``index_kind="auto"`` builds for ``count`` items from scratch."""
    if count >= config.ivf_threshold:
        return "ivf"
    return "hnsw" if count >= config.hnsw_threshold else "flat"


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
    p.add_argument(
        "--kinds",
        nargs="*",
        default=list(KINDS),
        choices=[*KINDS, IVF_FLOAT32],
        help=f"{IVF_FLOAT32}: IVF holding float32 vectors, beside the engine's float16 codes",
    )
    p.add_argument("--filter-topics", type=int, default=1,
                   help="topics of 12 a filtered query admits (default 1, ~8%%; 3 at 100k items "
                   "passes exact_filter_limit, so HNSW's filtered search is what the engine "
                   "runs)")  # fmt: skip
    p.add_argument("--threads", type=int, help="FAISS and BLAS threads (default: engine's, 1)")
    p.add_argument(
        "--ef-sweep",
        type=parse_sizes,
        default=(),
        help="HNSW: unfiltered searches again at each of these efSearch values",
    )
    p.add_argument(
        "--nprobe-sweep",
        type=parse_sizes,
        default=(),
        help="IVF: unfiltered searches again at each of these nprobe values",
    )
    p.add_argument("--hnsw-m", type=int, help="HNSW links per node (default: the engine's)")
    p.add_argument("--ef-construction", type=int,
                   help="HNSW efConstruction (default: the engine's)")  # fmt: skip
    p.add_argument("--no-save", dest="save", action="store_false", help="skip index file sizes")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data-dir", type=Path, help="where index files are written (default: tmp)")
    p.add_argument("--out", type=Path, help="JSON results file (default bench/results/...)")
    args = p.parse_args(argv)
    args.sizes = args.sizes or ((10_000, 100_000) if args.quick else (10_000, 100_000, 1_000_000))
    args.queries = args.queries or (300 if args.quick else 1_000)
    args.threads = args.threads or EngineConfig().index_threads
    args.out = args.out or harness.default_out("index_bench", args.quick)
    return args


def declare(run: harness.Run, filter_topics: int, config: EngineConfig) -> None:
    """The tables and the targets (issue 24: recall@10 of the engine's index at 100k and
    1M items)."""
    run.table(
        "Build and memory",
        by=["items", "index"],
        metrics=["build", "build rate", "index file", "file per vector", "estimate",
                 "RSS growth", "build peak", "save"],
    )  # fmt: skip
    for k in (10, 100):
        run.table(
            f"Search, one query per call, k={k}",
            by=["items", "index"],
            where={"k": k, "filter": "none"},
            metrics=["search p50", "search p99", "search mean", f"recall@{k}", "short results"],
            plot=k == 10,
        )
    run.table(
        f"Filtered search, k=10, {filter_topics} topic(s) of 12 admitted (path index: "
        "VectorIndex.search(allowed=...); engine: IndexKeeper.search_within)",
        by=["items", "index", "path"],
        where={"filter": "topic"},
        metrics=["search p50", "search p99", "recall@10", "short results", "admitted rows",
                 "ef search", "route"],
    )  # fmt: skip
    run.table(
        "Per catalog size",
        by=["items"],
        metrics=["auto index", "raw vectors", "generate", "ground truth", "phase peak RSS",
                 "other cores busy"],
    )  # fmt: skip
    run.table("IVF", by=["items", "index"], metrics=["inverted lists", "nprobe"])
    run.table(
        "IVF read back mapped from its file (index_mmap; compare the in-memory rows above)",
        by=["items", "index", "filter", "k"],
        where={"storage": "mapped"},
        metrics=["search p50", "search p99", "search mean", "recall@10", "recall@100",
                 "RSS anonymous growth, mapped", "RSS file-backed growth, mapped"],
    )  # fmt: skip
    for k in (10, 100):
        for kind, breadth, flag in (("hnsw", "ef_search", "ef"), ("ivf", "nprobe", "nprobe")):
            run.table(
                f"{kind.upper()}, one query per call, k={k}, by {breadth} (--{flag}-sweep)",
                by=["items", breadth],
                where={"k": k, "filter": "sweep", "index": kind},
                metrics=["search p50", "search p99", "search mean", f"recall@{k}"],
            )
    for items, bound in ((100_000, 0.97), (1_000_000, 0.95)):
        kind = auto_kind(items, config)
        where: dict[str, harness.Label] = {"index": kind, "items": items, "filter": "none"}
        run.target(f"recall@10 at {items:,} items ({kind}, the auto kind)", "recall@10", ">=",
                   bound, where, source="issue 24")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    graph = {
        "hnsw_m": args.hnsw_m,
        "hnsw_ef_construction": args.ef_construction,
    }
    config = EngineConfig(index_threads=args.threads, **{k: v for k, v in graph.items() if v})
    settings = Settings(
        flat_queries=args.flat_queries,
        kinds=tuple(args.kinds),
        filter_topics=args.filter_topics,
        seed=args.seed,
        config=config,
        data_dir=args.data_dir,
        ef_sweep=tuple(args.ef_sweep),
        nprobe_sweep=tuple(args.nprobe_sweep),
        save=args.save,
    )
    run = harness.Run("index_bench", vars(args), quick=args.quick)
    run.details["config"] = config.model_dump(mode="json", exclude={"model_dir"})
    run.details["rebuild_batch"] = REBUILD_BATCH
    declare(run, args.filter_topics, config)
    faiss.omp_set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        both = make_queries(args.queries + args.warmup, args.seed + 2)
        for count in args.sizes:
            measure_size(run, count, settings, both[: args.queries], both[args.queries :])
    memory_rows(run, memory(), at="end of run")
    run.note(
        f"{args.threads} FAISS/BLAS thread(s); filtered efSearch = max(efSearch, 4k), "
        "filtered IVF: the nearest lists holding admitted rows, nprobe lists' worth; "
        "other work on the machine skews the timings (see 'other cores busy')"
    )
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
