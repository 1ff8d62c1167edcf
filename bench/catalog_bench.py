"""Catalog benchmark: ingest throughput, search latency, recall, rebuild time, sizes, memory.

Phases (each on a fresh data directory that is deleted afterwards):

1. ``flat`` / ``hnsw``: a large catalog whose vectors come from a fast, deterministic
   synthetic encoder (clustered like real embeddings, see ``SyntheticEncoder``).
   Measures ingest (store + index), search latency unfiltered / filtered by topic
   (~1/12) / selective filter (~0.5%), a filtered query right after a property write,
   HNSW recall@10 against the exact flat results, index rebuild time on reopen with
   the index file deleted, file and LMDB database sizes and RSS.
2. ``real``: the base model (``ownrank.BaseEncoder``) embeds N article-like items in
   batches; then the same batches again (unchanged: nothing is embedded); then text
   queries (embed + search). Last, so the synthetic phases' peak RSS excludes the model.

    python bench/catalog_bench.py --quick        # 500 real, 20k synthetic items
    python bench/catalog_bench.py                # 2k real, 100k synthetic items

Other benchmarks import the synthetic catalog (``SyntheticEncoder``, ``item_batches``,
``make_query``, ``TOPIC_NAMES``) and the measuring helpers (``Watch``, ``memory``,
``sizes``, ``timed``) from here.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import re
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import harness
import machine_info
import numpy as np
import numpy.typing as npt

from ownrank import BaseEncoder, Engine, EngineConfig
from ownrank.engine.config import IndexKind
from ownrank.engine.encoder import Encoder
from ownrank.engine.engine import INDEX_FILE

Vectors = npt.NDArray[np.float32]
Json = dict[str, Any]
PACKAGES = ("numpy", "faiss-cpu", "torch", "lmdb")  # whose versions the timings depend on

# -- synthetic articles ---------------------------------------------------------------------

# Each topic's own words, after its name and a colon.
_TOPIC_TEXT = """
    gardening: tomato blight compost seedlings mulch pruning soil roses harvest greenhouse
        weeds watering perennials orchard
    cooking: recipe oven sourdough braise spices pasta simmer knife dough broth roast garlic
        pastry skillet
    astronomy: telescope galaxy nebula orbit comet eclipse planets stars supernova
        observatory moon asteroid cosmic spectrum
    finance: inflation bonds equities dividend portfolio interest mortgage savings pension
        budget taxes markets currency credit
    football: striker goalkeeper league transfer penalty midfield coach stadium derby
        tactics referee season cup defender
    medicine: vaccine clinical diagnosis symptoms therapy hospital patients dosage surgery
        immune chronic trial nurse infection
    software: compiler database latency deploy kernel refactor python debugging cache api
        framework concurrency release testing
    travel: itinerary passport hostel beaches museum flights backpack islands railway hiking
        visa luggage village ferry
    music: guitar album orchestra chords vinyl concert melody jazz drummer lyrics symphony
        studio tour piano
    climate: emissions glaciers drought carbon wildfire renewables solar flooding heatwave
        methane oceans forests policy warming
    history: empire medieval archive dynasty revolution treaty castle manuscript ancient
        colonial monarchy battle ruins chronicle
    parenting: toddler sleep school homework tantrums siblings teenagers daycare bedtime
        screen playground nursery allowance tutoring
"""


_TOPIC_PARTS = re.split(r"(\w+):", _TOPIC_TEXT)[1:]  # [name, words, name, words, ...]
TOPICS = {
    name: tuple(words.split())
    for name, words in zip(_TOPIC_PARTS[::2], _TOPIC_PARTS[1::2], strict=True)
}
TOPIC_NAMES = tuple(TOPICS)
_GENERAL_TEXT = """
    new guide early signs simple ways why how what when best worst common mistakes
    small large first last quick slow cheap expensive modern old future present
    study report review notes lessons ideas questions answers explained practical
    beginners experts weekend daily season year week local global city country home
    family friends people community world science data evidence research survey
    change growth risk safety cost value quality problem solution method tools
    story interview analysis opinion trends numbers context outlook plan strategy
    better easier faster stronger healthier greener smarter honest careful bold
    makes keeps brings shows finds builds breaks moves turns starts ends helps
    after before during between against without within across through around
"""
GENERAL_WORDS = tuple(dict.fromkeys(_GENERAL_TEXT.split()))
SELECTIVE_VALUES = 200  # property "n" takes this many values: {"n": v} matches ~0.5%


def make_item(rng: np.random.Generator, item_id: str) -> dict[str, Any]:
    """A short article: a title led by its topic name, a body of 15-40 words in all."""
    topic = int(rng.integers(len(TOPIC_NAMES)))
    name = TOPIC_NAMES[topic]
    vocab = TOPICS[name]
    total = int(rng.integers(15, 41))
    title_len = int(rng.integers(4, 9))
    words = [
        vocab[int(rng.integers(len(vocab)))]
        if rng.random() < 0.4
        else GENERAL_WORDS[int(rng.integers(len(GENERAL_WORDS)))]
        for _ in range(total - 1)
    ]
    title = " ".join([name.capitalize(), *words[: title_len - 1]])
    body = " ".join(words[title_len - 1 :]).capitalize() + "."
    return {
        "id": item_id,
        "title": title,
        "body": body,
        "properties": {"topic": f"t{topic}", "n": int(rng.integers(SELECTIVE_VALUES))},
    }


def make_query(rng: np.random.Generator) -> str:
    """A query text in the style of the titles: topic name, then 4-9 words."""
    item = make_item(rng, "q")
    return str(item["title"]) + " " + " ".join(str(item["body"]).split()[:3])


def item_batches(count: int, batch: int, seed: int, prefix: str) -> Iterator[list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    for start in range(0, count, batch):
        stop = min(count, start + batch)
        yield [make_item(rng, f"{prefix}{i:07d}") for i in range(start, stop)]


# -- encoders -------------------------------------------------------------------------------

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TOKEN = re.compile(r"[a-z0-9]+")


def _splitmix64(x: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Vectorized splitmix64 finalizer (uint64 arithmetic wraps, as intended)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _unit_rows(seeds: npt.NDArray[np.uint64], dimension: int) -> Vectors:
    """One deterministic pseudo-random unit vector per seed, all rows at once."""
    counters = np.arange(1, dimension + 1, dtype=np.uint64) * _GOLDEN
    bits = _splitmix64(seeds[:, None] + counters[None, :])
    rows = (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53 - 0.5
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows.astype(np.float32)


class SyntheticEncoder:
    """Fast deterministic stand-in for the base model, clustered like real embeddings.

    A text's vector mixes (then normalizes) three unit vectors: the centroid of
    its first word (the topic name leads every synthetic title), the normalized
    sum of per-word vectors (texts sharing words are close), and a component
    seeded by a hash of the whole text (distinct texts never coincide).
    """

    TOPIC_WEIGHT = 0.6
    WORDS_WEIGHT = 0.6
    TEXT_WEIGHT = 0.5

    def __init__(self, dimension: int = 384) -> None:
        self._dimension = dimension
        self._vocab: dict[str, int] = {}
        self._table = np.zeros((0, dimension), dtype=np.float32)

    @property
    def fingerprint(self) -> str:
        return f"bench:synthetic-v1:{self._dimension}"

    @property
    def dimension(self) -> int:
        return self._dimension

    def _word_ids(self, words: Sequence[str]) -> list[int]:
        new = [w for w in dict.fromkeys(words) if w not in self._vocab]
        if new:
            seeds = np.array([_hash64("word:" + w) for w in new], dtype=np.uint64)
            self._table = np.vstack([self._table, _unit_rows(seeds, self._dimension)])
            for w in new:
                self._vocab[w] = len(self._vocab)
        return [self._vocab[w] for w in words]

    def encode(self, texts: Sequence[str]) -> Vectors:
        n = len(texts)
        if n == 0:
            return np.zeros((0, self._dimension), dtype=np.float32)
        tokens = [_TOKEN.findall(t.lower()) or ["<empty>"] for t in texts]
        topic_ids = self._word_ids(["topic:" + toks[0] for toks in tokens])
        flat_words = [w for toks in tokens for w in toks]
        word_ids = np.asarray(self._word_ids(flat_words), dtype=np.int64)
        owners = np.repeat(np.arange(n), [len(toks) for toks in tokens])
        counts = np.zeros((n, len(self._vocab)), dtype=np.float32)
        np.add.at(counts, (owners, word_ids), 1.0)
        words = counts @ self._table
        words /= np.linalg.norm(words, axis=1, keepdims=True)
        seeds = np.array([_hash64(t) for t in texts], dtype=np.uint64)
        out = (
            self.TOPIC_WEIGHT * self._table[topic_ids]
            + self.WORDS_WEIGHT * words
            + self.TEXT_WEIGHT * _unit_rows(seeds, self._dimension)
        )
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out, dtype=np.float32)


class TimedEncoder:
    """Wraps an encoder and adds up the seconds spent embedding."""

    def __init__(self, inner: Encoder) -> None:
        self.inner = inner
        self.seconds = 0.0

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts: Sequence[str]) -> Vectors:
        seconds, vectors = timed(partial(self.inner.encode, texts))
        self.seconds += seconds
        return vectors


# -- measuring ------------------------------------------------------------------------------


_process_peak_mb = 0.0


def memory() -> Json:
    """RSS now (anonymous / file-backed, i.e. mostly LMDB pages), peak since the last
    ``reset_peak``, and the peak of the whole process."""
    global _process_peak_mb
    status = machine_info.proc_status_mib()
    ru_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    peak = status.get("VmHWM", ru_peak)
    _process_peak_mb = max(_process_peak_mb, peak, ru_peak)
    return {
        "rss_mb": round(status.get("VmRSS", float("nan")), 1),
        "anon_mb": round(status.get("RssAnon", float("nan")), 1),
        "file_mb": round(status.get("RssFile", 0.0) + status.get("RssShmem", 0.0), 1),
        "peak_mb": round(peak, 1),
        "process_peak_mb": round(_process_peak_mb, 1),
    }


def reset_peak() -> None:
    """Restart the peak-RSS watermark (Linux >= 4.0: ``5 > /proc/self/clear_refs``)."""
    memory()  # fold the peak so far into the process peak
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


class Watch:
    """Peak RSS over one phase, and how many cores other processes kept busy meanwhile."""

    def __init__(self) -> None:
        reset_peak()
        self.peak_mb = 0.0
        self._wall = time.perf_counter()
        self._busy = machine_info.busy_cpu_seconds()
        self._own = machine_info.own_cpu_seconds()

    def mark(self) -> Json:
        m = memory()
        self.peak_mb = max(self.peak_mb, m["peak_mb"])
        return m

    def extra_peak(self, fn: Callable[[], Any]) -> tuple[float, Any, float]:
        """Run ``fn``: its seconds, its result, and how far RSS peaked above where it began."""
        before = self.mark()
        reset_peak()
        seconds, result = timed(fn)
        after = self.mark()
        return seconds, result, round(after["peak_mb"] - before["rss_mb"], 1)

    def finish(self) -> Json:
        m = self.mark()
        wall = time.perf_counter() - self._wall
        busy = machine_info.busy_cpu_seconds() - self._busy
        other = busy - (machine_info.own_cpu_seconds() - self._own)
        return {
            **m,
            "phase_peak_mb": round(self.peak_mb, 1),
            "phase_seconds": round(wall, 1),
            "other_processes_cpu_cores": round(max(other, 0.0) / wall, 2) if wall > 0 else None,
        }


# memory() / Watch.finish() keys -> (metric, unit)
MEMORY_ROWS = {
    "rss_mb": ("RSS", "MiB"),
    "anon_mb": ("RSS anonymous", "MiB"),
    "file_mb": ("RSS file-backed", "MiB"),
    "peak_mb": ("RSS peak", "MiB"),
    "process_peak_mb": ("process peak RSS", "MiB"),
    "phase_peak_mb": ("phase peak RSS", "MiB"),
    "phase_seconds": ("phase", "s"),
    "other_processes_cpu_cores": ("other cores busy", "cores"),
}


def memory_rows(run: harness.Run, m: Json, **labels: harness.Label) -> None:
    """The figures of a ``memory()`` or ``Watch.finish()`` as rows."""
    for key, value in m.items():
        metric, unit = MEMORY_ROWS[key]
        run.add(metric, value, unit, **labels)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def lists_current(engine: Engine) -> float:
    """Wait until the engine's content-neighbour lists are current; the seconds waited.

    A store whose lists are behind its catalog brings them up to date on a background
    thread of every process that opens it (and a copy of the store loses that work
    when it is deleted): timing calls meanwhile times them against that thread."""
    started = time.perf_counter()
    engine.catalog.neighbours.update()
    return time.perf_counter() - started


def measure_queries(
    run: Callable[[int], list[str]], count: int, warmup: int
) -> tuple[list[float], list[list[str]]]:
    """Seconds of ``run(i)`` for i in 0..count-1 after ``warmup`` calls; and its results."""
    for i in range(warmup):
        run(i % max(count, 1))
    calls = [timed(partial(run, i)) for i in range(count)]
    return [seconds for seconds, _ in calls], [ids for _, ids in calls]


def recall_at(truth: list[list[str]], found: list[list[str]], k: int = 10) -> float:
    hits = sum(len(set(t[:k]) & set(f[:k])) for t, f in zip(truth, found, strict=True))
    total = sum(min(k, len(t)) for t in truth)
    return round(hits / total, 4) if total else float("nan")


# -- phases ---------------------------------------------------------------------------------


def ingest(
    run: harness.Run,
    engine: Engine,
    timer: TimedEncoder,
    spec: tuple[int, int, int, str],
    **labels: Any,
) -> None:
    """Upsert ``count`` items in batches (``spec``: count, batch, seed, id prefix),
    timing only the upsert calls."""
    count, batch, seed, prefix = spec
    encode_before = timer.seconds
    elapsed = 0.0
    added = unchanged = embedded = 0
    for items in item_batches(count, batch, seed, prefix):
        seconds, report = timed(partial(engine.catalog.upsert, items))
        elapsed += seconds
        added += len(report.added) + len(report.updated)
        unchanged += len(report.unchanged)
        embedded += report.embedded
    encode_s = timer.seconds - encode_before
    store_s = elapsed - encode_s
    run.add("ingest", count / elapsed, "items/s", **labels)
    run.add("store+index", count / store_s if store_s > 0 else None, "items/s", **labels)
    run.add("ingest time", elapsed, "s", **labels)
    run.add("encode time", encode_s, "s", **labels)
    run.add("store+index time", store_s, "s", **labels)
    for metric, value in (("written", added), ("unchanged", unchanged), ("embedded", embedded)):
        run.add(metric, value, "count", **labels)


def sizes(engine: Engine) -> Json:
    """Index and LMDB sizes (``engine.info()``) and each LMDB database's."""
    info = engine.info()
    return {
        "index_type": info["index"]["type"],
        "index_vectors": info["index"]["vectors"],
        "index_file_bytes": info["index"]["file_bytes"],
        "lmdb_file_bytes": info["lmdb"]["file_bytes"],
        "lmdb_used_bytes": info["lmdb"]["used_bytes"],
        "lmdb_databases": engine.diagnostics.database_sizes(),
        "items": info["items"],
    }


def size_rows(run: harness.Run, s: Json, **labels: Any) -> None:
    """The figures of ``sizes(engine)`` as rows; one line per LMDB database."""
    run.add("index file", s["index_file_bytes"] / 2**20, "MiB", **labels)
    run.add("LMDB file", s["lmdb_file_bytes"] / 2**20, "MiB", **labels)
    run.add("LMDB used", s["lmdb_used_bytes"] / 2**20, "MiB", **labels)
    run.add("index vectors", s["index_vectors"], "count", **labels)
    run.add("catalog items", s["items"], "count", **labels)
    for name, db in s["lmdb_databases"].items():
        run.add("entries", db["entries"], "count", db=name, **labels)
        run.add("pages", db["pages"], "count", db=name, **labels)
        run.add("size", db["bytes"] / 2**20, "MiB", db=name, **labels)
        run.add("per entry", db["bytes_per_entry"], "B", db=name, **labels)


def run_real(run: harness.Run, args: argparse.Namespace, root: Path) -> None:
    print(f"\n== real encoder: {args.real_items} items, batch {args.batch}, threads {args.threads}")
    labels: Any = {"encoder": "real", "items": args.real_items, "threads": args.threads}
    watch = Watch()
    data = Path(tempfile.mkdtemp(prefix="real-", dir=root))
    base = BaseEncoder(threads=args.threads)
    encoder = TimedEncoder(base)
    load_s, _ = timed(lambda: base.encode(["warm up the model"]))
    run.add("model load", load_s, "s", **labels)  # and the first encode
    spec = (args.real_items, args.batch, args.seed, "r")
    try:
        with Engine(data, EngineConfig(encoder_threads=args.threads), encoder=encoder) as engine:
            ingest(run, engine, encoder, spec, **labels, upsert="first")
            ingest(run, engine, encoder, spec, **labels, upsert="unchanged")
            qrng = np.random.default_rng(args.seed + 1)
            texts = [make_query(qrng) for _ in range(args.text_queries)]
            seconds, _ = measure_queries(
                lambda i: [h.item_id for h in engine.search(texts[i], 10)],
                len(texts),
                min(args.warmup, 10),
            )
            run.latency("text query", seconds, **labels, mean_max=True)
            engine.save_index()
            found = sizes(engine)
            run.add("index type", found["index_type"], "", **labels)
            size_rows(run, found, **labels)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    memory_rows(run, watch.finish(), **labels, at="end")


def run_synthetic(
    run: harness.Run, kind: IndexKind, args: argparse.Namespace, root: Path, queries: Vectors
) -> dict[str, list[list[str]]]:
    """One synthetic catalog with ``index_kind=kind``; the ids each query kind found."""
    print(f"\n== synthetic vectors, index_kind={kind}: {args.items} items, batch {args.batch}")
    labels: Any = {"encoder": "synthetic", "index": kind, "items": args.items}
    data = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))
    encoder = TimedEncoder(SyntheticEncoder())
    config = EngineConfig(index_kind=kind, index_threads=args.index_threads)
    run.details[f"config {kind}"] = config.model_dump(mode="json", exclude={"model_dir"})
    results: dict[str, list[list[str]]] = {}
    watch = Watch()
    try:
        engine = Engine(data, config, encoder=encoder)
        try:
            ingest(run, engine, encoder, (args.items, args.batch, args.seed + 100, "s"), **labels)
            memory_rows(run, watch.mark(), **labels, at="after ingest")
            save_s, _, peak = watch.extra_peak(engine.save_index)
            run.add("save index", 1e3 * save_s, "ms", **labels)
            run.add("save index peak", peak, "MiB", **labels)  # RSS above its start
            found = sizes(engine)
            run.add("index type", found["index_type"], "", **labels)
            size_rows(run, found, **labels)

            def search(expr: Any) -> Callable[[int], list[str]]:
                return lambda i: [
                    h.item_id for h in engine.catalog.search_vector(queries[i], 10, expr)
                ]

            topic = engine.catalog.parse_filters({"topic": "t3"})
            selective = engine.catalog.parse_filters({"n": 7})
            assert topic is not None and selective is not None
            for name, expr in (("none", None), ("topic", topic), ("selective", selective)):
                if name == "topic":  # the first filtered query builds the property table
                    first_s, _ = timed(lambda: search(topic)(0))
                    run.add("first filtered query", 1e3 * first_s, "ms", **labels, filter=name)
                seconds, results[name] = measure_queries(search(expr), len(queries), args.warmup)
                run.latency("search", seconds, **labels, filter=name, mean_max=True)
                short = sum(1 for r in results[name] if len(r) < 10)
                run.add("short results", short, "count", **labels, filter=name)
                if expr is not None:
                    matches = engine.diagnostics.filter_matches(expr)
                    run.add("filter matches", matches, "count", **labels, filter=name)
            seconds = after_write(engine, queries, topic, args)
            run.latency("after write", seconds, **labels, filter="topic", mean_max=True)
            memory_rows(run, watch.mark(), **labels, at="after search")
        finally:
            close_s, _ = timed(engine.close)
        run.add("close", 1e3 * close_s, "ms", **labels)

        def reopen() -> Engine:
            return Engine(data, config, encoder=encoder)

        load_s, reopened, load_peak = watch.extra_peak(reopen)
        reopened.close()
        (data / INDEX_FILE).unlink()
        rebuild_s, reopened, rebuild_peak = watch.extra_peak(reopen)
        try:
            run.add("rebuilt vectors", reopened.catalog.keeper.index.ntotal, "count", **labels)
            run.add("rebuilds", reopened.catalog.keeper.rebuilds, "count", **labels)
        finally:
            reopened.close()
        run.add("reopen", 1e3 * load_s, "ms", **labels)
        run.add("reopen peak", load_peak, "MiB", **labels)
        run.add("rebuild", rebuild_s, "s", **labels)  # reopen with the index file deleted
        run.add("rebuild peak", rebuild_peak, "MiB", **labels)
        memory_rows(run, watch.finish(), **labels, at="end")
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return results


def after_write(
    engine: Engine, queries: Vectors, expr: Any, args: argparse.Namespace
) -> list[float]:
    """A live catalog: change one item's properties, then time a filtered query."""
    rng = np.random.default_rng(args.seed + 7)
    latencies: list[float] = []
    for r in range(args.write_rounds):
        item_id = f"s{int(rng.integers(args.items)):07d}"
        engine.catalog.update_properties(item_id, {"n": SELECTIVE_VALUES + r})
        search = partial(engine.catalog.search_vector, queries[r % len(queries)], 10, expr)
        latencies.append(timed(search)[0])
    return latencies


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="500 real, 20k synthetic, 300 queries")
    p.add_argument("--real-items", type=int, help="items embedded by the real model (0 = skip)")
    p.add_argument("--items", type=int, help="synthetic catalog size (default 100000)")
    p.add_argument("--queries", type=int, help="timed queries per kind (default 1000)")
    p.add_argument("--warmup", type=int, default=50, help="untimed queries first (default 50)")
    p.add_argument("--text-queries", type=int, default=100, help="real-model text queries")
    p.add_argument("--write-rounds", type=int, default=20, help="write-then-filtered-query rounds")
    p.add_argument("--batch", type=int, default=256, help="items per upsert (default 256)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the real encoder")
    p.add_argument("--index-threads", type=int, default=1, help="FAISS threads (default 1)")
    p.add_argument("--kinds", nargs="*", default=["flat", "hnsw"], choices=["flat", "hnsw"])
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--data-dir", type=Path, help="where the temporary stores go (default: tmp)")
    p.add_argument("--out", type=Path, help="JSON results file (default bench/results/...)")
    args = p.parse_args(argv)
    for name, quick, full in (("real_items", 500, 2_000), ("items", 20_000, 100_000),
                              ("queries", 300, 1_000)):  # fmt: skip
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    args.out = args.out or harness.default_out("catalog_bench", args.quick)
    return args


def declare_tables(run: harness.Run) -> None:
    synthetic, real = {"encoder": "synthetic"}, {"encoder": "real"}
    title = "Synthetic catalog: ingest, reopen, sizes"
    metrics = ["ingest", "store+index", "rebuild", "reopen", "save index", "index file",
               "LMDB file", "phase peak RSS", "other cores busy"]  # fmt: skip
    run.table(title, ["index", "items"], where=synthetic, metrics=metrics)
    title = "Synthetic catalog: search, k=10 (topic ~8%, selective ~0.5% of the items)"
    metrics = ["search p50", "search p99", "search mean", "short results", "filter matches",
               "recall@10", "first filtered query", "after write p50",
               "after write p99"]  # fmt: skip
    run.table(title, ["index", "filter"], where=synthetic, metrics=metrics, plot=True)
    title = "LMDB databases, synthetic catalog (MiB; entries, pages, B per entry in the JSON)"
    run.table(title, ["db"], "index", synthetic, ["size"])
    title = "Real encoder: ingest (first pass embeds, the unchanged pass does not)"
    metrics = ["ingest", "ingest time", "encode time", "store+index time", "embedded"]
    run.table(title, ["items", "threads", "upsert"], where=real, metrics=metrics)
    title = "Real encoder: text queries (embed + search)"
    metrics = ["model load", "text query p50", "text query p99", "text query mean",
               "phase peak RSS", "other cores busy"]  # fmt: skip
    run.table(title, ["items", "threads"], where=real, metrics=metrics)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run = harness.Run("catalog_bench", vars(args), quick=args.quick)
    run.details["versions"] = machine_info.machine(PACKAGES)["versions"]
    declare_tables(run)
    root = Path(tempfile.mkdtemp(prefix="ownrank-bench-", dir=args.data_dir))
    try:
        qrng = np.random.default_rng(args.seed + 2)
        query_vectors = SyntheticEncoder().encode([make_query(qrng) for _ in range(args.queries)])
        found = {kind: run_synthetic(run, kind, args, root, query_vectors) for kind in args.kinds}
        if "flat" in found and "hnsw" in found:  # HNSW against the exact results
            for name, truth in found["flat"].items():
                value = recall_at(truth, found["hnsw"][name])
                run.add("recall@10", value, "recall", encoder="synthetic", index="hnsw",
                        items=args.items, filter=name)  # fmt: skip
        if args.real_items > 0:
            run_real(run, args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    memory_rows(run, memory(), at="end of run")
    run.note("other work on the machine skews the timings: see 'other cores busy'")
    run.finish(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
