"""Catalog benchmark: ingest throughput, search latency, recall, rebuild time, sizes, memory.

Phases (each on a fresh data directory that is deleted afterwards):

1. ``real``: the frozen base model (``ownrank.BaseEncoder``) embeds N synthetic
   article-like items, upserted in batches; then the same batches again
   (unchanged, so nothing is embedded); then text queries (embed + search).
2. ``flat`` / ``hnsw``: a large catalog whose vectors come from a fast,
   deterministic synthetic encoder (topic centroid + bag of word vectors + a
   per-text hash component, so the data is clustered like real embeddings).
   Measures ingest (store + index), search latency unfiltered / filtered by
   topic (~1/12) / selective filter (~0.5%), HNSW recall@10 against the exact
   flat results for the same queries, index rebuild time on reopen with the
   index file deleted, file sizes and RSS.

Usage::

    python bench/catalog_bench.py --quick        # ~1 minute
    python bench/catalog_bench.py                # full: 2k real items, 100k synthetic

Results are printed and written to ``bench/results/catalog_bench.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import resource
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import machine_info
import numpy as np
import numpy.typing as npt

from ownrank import BaseEncoder, Engine, EngineConfig
from ownrank.engine.config import IndexKind
from ownrank.engine.encoder import Encoder
from ownrank.engine.engine import INDEX_FILE
from ownrank.storage.lmdb_env import DATABASES

Vectors = npt.NDArray[np.float32]
Json = dict[str, Any]

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "catalog_bench.json"

# -- synthetic articles ---------------------------------------------------------------------

# Each topic's own words; a word ending in ":" starts the next topic.
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


def _parse_topics(text: str) -> dict[str, tuple[str, ...]]:
    topics: dict[str, list[str]] = {}
    words: list[str] = []
    for token in text.split():
        if token.endswith(":"):
            words = topics.setdefault(token[:-1], [])
        else:
            words.append(token)
    return {name: tuple(ws) for name, ws in topics.items()}


TOPICS = _parse_topics(_TOPIC_TEXT)
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
        self.texts = 0

    @property
    def fingerprint(self) -> str:
        return self.inner.fingerprint

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def encode(self, texts: Sequence[str]) -> Vectors:
        start = time.perf_counter()
        try:
            return self.inner.encode(texts)
        finally:
            self.seconds += time.perf_counter() - start
            self.texts += len(texts)


# -- measuring ------------------------------------------------------------------------------


_process_peak_mb = 0.0


def _proc_status_mb() -> dict[str, float]:
    """The memory lines of /proc/self/status (Linux), in MiB."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                name, _, value = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    out[name] = int(value.split()[0]) / 1024  # kB
    except OSError:
        pass
    return out


def memory() -> Json:
    """RSS now (anonymous / file-backed, i.e. mostly LMDB pages), peak since the last
    ``reset_peak``, and the peak of the whole process."""
    global _process_peak_mb
    status = _proc_status_mb()
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


def reset_peak() -> bool:
    """Restart the peak-RSS watermark (Linux >= 4.0: ``5 > /proc/self/clear_refs``)."""
    memory()  # fold the peak so far into the process peak
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return True


def _busy_cpu_seconds() -> float:
    """CPU seconds all processes have spent busy since boot (Linux), else NaN."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:9]]
    except (OSError, ValueError):
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Watch:
    """Peak RSS over one phase, and how many cores other processes kept busy meanwhile."""

    def __init__(self) -> None:
        reset_peak()
        self.peak_mb = 0.0
        self._wall = time.perf_counter()
        self._busy = _busy_cpu_seconds()
        self._own = _own_cpu_seconds()

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
        other = (_busy_cpu_seconds() - self._busy) - (_own_cpu_seconds() - self._own)
        return {
            **m,
            "phase_peak_mb": round(self.peak_mb, 1),
            "phase_seconds": round(wall, 1),
            "other_processes_cpu_cores": round(max(other, 0.0) / wall, 2) if wall > 0 else None,
        }


def latency_stats(seconds: Sequence[float]) -> Json:
    ms = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p99 = np.percentile(ms, [50, 99])
    return {
        "count": int(ms.size),
        "p50_ms": round(float(p50), 3),
        "p99_ms": round(float(p99), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
    }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def measure_queries(
    run: Callable[[int], list[str]], count: int, warmup: int
) -> tuple[Json, list[list[str]]]:
    """Latency of ``run(i)`` for i in 0..count-1 after ``warmup`` calls; and its results."""
    for i in range(warmup):
        run(i % max(count, 1))
    latencies: list[float] = []
    results: list[list[str]] = []
    for i in range(count):
        start = time.perf_counter()
        ids = run(i)
        latencies.append(time.perf_counter() - start)
        results.append(ids)
    stats = latency_stats(latencies)
    stats["short_results"] = sum(1 for r in results if len(r) < 10)
    return stats, results


def recall_at(truth: list[list[str]], found: list[list[str]], k: int = 10) -> float:
    hits = sum(len(set(t[:k]) & set(f[:k])) for t, f in zip(truth, found, strict=True))
    total = sum(min(k, len(t)) for t in truth)
    return round(hits / total, 4) if total else float("nan")


def say(message: str) -> None:
    print(message, flush=True)


# -- phases ---------------------------------------------------------------------------------


def ingest(
    engine: Engine, encoder: TimedEncoder, count: int, batch: int, seed: int, prefix: str
) -> Json:
    """Upsert ``count`` items in batches, timing only the upsert calls."""
    encode_before = encoder.seconds
    elapsed = 0.0
    added = unchanged = embedded = 0
    for items in item_batches(count, batch, seed, prefix):
        start = time.perf_counter()
        report = engine.catalog.upsert(items)
        elapsed += time.perf_counter() - start
        added += len(report.added) + len(report.updated)
        unchanged += len(report.unchanged)
        embedded += report.embedded
    encode_s = encoder.seconds - encode_before
    store_s = elapsed - encode_s
    return {
        "items": count,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "items_per_s": round(count / elapsed, 1),
        "encode_seconds": round(encode_s, 3),
        "store_index_seconds": round(store_s, 3),
        "store_index_items_per_s": round(count / store_s, 1) if store_s > 0 else None,
        "written": added,
        "unchanged": unchanged,
        "embedded": embedded,
    }


def sizes(engine: Engine) -> Json:
    info = engine.info()
    databases: Json = {}
    with engine._env.read() as txn:
        for name in DATABASES:
            stat = txn.stat(engine._env.db(name))
            pages = stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]
            databases[name] = {
                "entries": stat["entries"],
                "pages": pages,
                "bytes": pages * stat["psize"],
                "bytes_per_entry": round(pages * stat["psize"] / max(stat["entries"], 1), 1),
            }
    return {
        "index_type": info["index"]["type"],
        "index_vectors": info["index"]["vectors"],
        "index_file_bytes": info["index"]["file_bytes"],
        "lmdb_file_bytes": info["lmdb"]["file_bytes"],
        "lmdb_used_bytes": info["lmdb"]["used_bytes"],
        "lmdb_databases": databases,
        "items": info["items"],
    }


def run_real(args: argparse.Namespace, root: Path) -> Json:
    say(f"\n== real encoder: {args.real_items} items, batch {args.batch}, threads {args.threads}")
    watch = Watch()
    data = Path(tempfile.mkdtemp(prefix="real-", dir=root))
    base = BaseEncoder(threads=args.threads)
    encoder = TimedEncoder(base)
    load_s, _ = timed(lambda: base.encode(["warm up the model"]))
    say(f"model load + first encode: {load_s:.2f} s")
    config = EngineConfig(encoder_threads=args.threads)
    out: Json = {"model_load_seconds": round(load_s, 3), "threads": args.threads}
    try:
        with Engine(data, config, encoder=encoder) as engine:
            first = ingest(engine, encoder, args.real_items, args.batch, args.seed, "r")
            say(
                f"ingest: {first['items_per_s']:.1f} items/s end to end "
                f"({first['seconds']:.1f} s; embedding {first['encode_seconds']:.1f} s, "
                f"store+index {first['store_index_seconds']:.2f} s)"
            )
            again = ingest(engine, encoder, args.real_items, args.batch, args.seed, "r")
            say(
                f"re-ingest unchanged: {again['items_per_s']:.1f} items/s "
                f"({again['seconds']:.2f} s, embedded {again['embedded']})"
            )
            qrng = np.random.default_rng(args.seed + 1)
            texts = [make_query(qrng) for _ in range(args.text_queries)]
            text_stats, _ = measure_queries(
                lambda i: [h.item_id for h in engine.search(texts[i], 10)],
                len(texts),
                min(args.warmup, 10),
            )
            say(
                f"text query (embed + search), {text_stats['count']} queries: "
                f"p50 {text_stats['p50_ms']:.2f} ms, p99 {text_stats['p99_ms']:.2f} ms"
            )
            engine.save_index()
            out.update(ingest=first, reingest=again, text_query=text_stats, sizes=sizes(engine))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    out["memory"] = m = watch.finish()
    say(
        f"RSS {m['rss_mb']:.0f} MiB, peak in this phase {m['phase_peak_mb']:.0f} MiB; "
        f"other processes kept {m['other_processes_cpu_cores']} cores busy"
    )
    return out


def run_synthetic(
    kind: IndexKind, args: argparse.Namespace, root: Path, queries: Vectors
) -> tuple[Json, dict[str, list[list[str]]]]:
    say(f"\n== synthetic vectors, index_kind={kind}: {args.items} items, batch {args.batch}")
    data = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=root))
    encoder = TimedEncoder(SyntheticEncoder())
    config = EngineConfig(index_kind=kind, index_threads=args.index_threads)
    out: Json = {"config": config.model_dump(mode="json", exclude={"model_dir"})}
    results: dict[str, list[list[str]]] = {}
    watch = Watch()
    try:
        engine = Engine(data, config, encoder=encoder)
        try:
            report = ingest(engine, encoder, args.items, args.batch, args.seed + 100, "s")
            say(
                f"ingest: {report['items_per_s']:.0f} items/s end to end, "
                f"{report['store_index_items_per_s']:.0f} items/s store+index "
                f"(synthetic encode {report['encode_seconds']:.1f} s of {report['seconds']:.1f} s)"
            )
            out["ingest"] = report
            out["memory_after_ingest"] = watch.mark()
            save_s, _, out["save_index_extra_peak_mb"] = watch.extra_peak(engine.save_index)
            out["save_index_seconds"] = round(save_s, 3)
            out["sizes"] = sizes(engine)

            def search(expr: Any) -> Callable[[int], list[str]]:
                def run(i: int) -> list[str]:
                    hits = engine.catalog.search_vector(queries[i], 10, expr)
                    return [h.item_id for h in hits]

                return run

            n = len(queries)
            stats, results["unfiltered"] = measure_queries(search(None), n, args.warmup)
            out["search_unfiltered"] = stats
            topic = engine.catalog.parse_filters({"topic": "t3"})
            first_s, _ = timed(lambda: search(topic)(0))
            out["first_filtered_query_seconds"] = round(first_s, 3)
            stats, results["topic"] = measure_queries(search(topic), n, args.warmup)
            out["search_topic_filter"] = stats
            selective = engine.catalog.parse_filters({"n": 7})
            stats, results["selective"] = measure_queries(search(selective), n, args.warmup)
            out["search_selective_filter"] = stats
            assert topic is not None and selective is not None
            table = engine.catalog.keeper.property_table()
            matched = {
                "topic": int(table.matching_rows(topic).size),
                "selective": int(table.matching_rows(selective).size),
            }
            out["filter_matches"] = matched
            for name in ("search_unfiltered", "search_topic_filter", "search_selective_filter"):
                s = out[name]
                say(
                    f"{name}: p50 {s['p50_ms']:.3f} ms, p99 {s['p99_ms']:.3f} ms, "
                    f"mean {s['mean_ms']:.3f} ms ({s['count']} queries, "
                    f"{s['short_results']} with < 10 hits)"
                )
            say(
                f"filter matches: topic {matched['topic']}, selective {matched['selective']}; "
                f"first filtered query (builds the property table) {first_s:.2f} s"
            )
            out["filtered_after_write"] = after_write(engine, queries, topic, args)
            s = out["filtered_after_write"]
            say(
                f"topic-filtered query right after a 1-item property write: "
                f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms ({s['count']} rounds)"
            )
            out["memory_after_search"] = watch.mark()
        finally:
            close_s, _ = timed(engine.close)
        out["close_seconds"] = round(close_s, 3)

        def reopen() -> Engine:
            return Engine(data, config, encoder=encoder)

        load_s, reopened, out["reopen_with_index_extra_peak_mb"] = watch.extra_peak(reopen)
        reopened.close()
        (data / INDEX_FILE).unlink()
        rebuild_s, reopened, out["rebuild_extra_peak_mb"] = watch.extra_peak(reopen)
        try:
            rebuilt_vectors = reopened.catalog.keeper.index.ntotal
            rebuilds = reopened.catalog.keeper.rebuilds
        finally:
            reopened.close()
        out["reopen_with_index_seconds"] = round(load_s, 3)
        out["reopen_rebuild_seconds"] = round(rebuild_s, 3)
        out["rebuilt_vectors"] = rebuilt_vectors
        say(
            f"reopen with index file: {load_s:.2f} s; reopen with index file deleted "
            f"(rebuild of {rebuilt_vectors} vectors, rebuilds={rebuilds}): {rebuild_s:.2f} s"
        )
        s = out["sizes"]
        say(
            f"index file {s['index_file_bytes'] / 2**20:.1f} MiB, LMDB file "
            f"{s['lmdb_file_bytes'] / 2**20:.1f} MiB (used {s['lmdb_used_bytes'] / 2**20:.1f} MiB)"
        )
        out["memory"] = watch.finish()
        out["peak_rss_mb"] = out["memory"]["phase_peak_mb"]
        m = out["memory_after_search"]
        say(
            f"RSS after searches {m['rss_mb']:.0f} MiB (anonymous {m['anon_mb']:.0f}, "
            f"file-backed {m['file_mb']:.0f}); peak in this phase {out['peak_rss_mb']:.0f} MiB; "
            f"RSS peak above its start: save_index +{out['save_index_extra_peak_mb']:.0f} MiB, "
            f"reopen with index +{out['reopen_with_index_extra_peak_mb']:.0f} MiB, "
            f"rebuild +{out['rebuild_extra_peak_mb']:.0f} MiB"
        )
        say(
            f"other processes kept {out['memory']['other_processes_cpu_cores']} cores busy "
            f"during this phase ({out['memory']['phase_seconds']:.0f} s)"
        )
        say(
            "LMDB by database: "
            + ", ".join(
                f"{name} {db['bytes'] / 2**20:.1f} MiB ({db['bytes_per_entry']:.0f} B/entry)"
                for name, db in s["lmdb_databases"].items()
            )
        )
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return out, results


def after_write(engine: Engine, queries: Vectors, expr: Any, args: argparse.Namespace) -> Json:
    """A live catalog: change one item's properties, then run a filtered query."""
    rng = np.random.default_rng(args.seed + 7)
    latencies: list[float] = []
    for r in range(args.write_rounds):
        item_id = f"s{int(rng.integers(args.items)):07d}"
        engine.catalog.update_properties(item_id, {"n": SELECTIVE_VALUES + r})
        start = time.perf_counter()
        engine.catalog.search_vector(queries[r % len(queries)], 10, expr)
        latencies.append(time.perf_counter() - start)
    return latency_stats(latencies)


# -- main -----------------------------------------------------------------------------------


def machine() -> Json:
    return machine_info.machine(("numpy", "faiss-cpu", "torch", "lmdb"))


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
    p.add_argument("--out", type=Path, default=RESULTS_FILE, help="JSON results file")
    args = p.parse_args(argv)
    quick = args.quick
    if args.real_items is None:
        args.real_items = 500 if quick else 2_000
    if args.items is None:
        args.items = 20_000 if quick else 100_000
    if args.queries is None:
        args.queries = 300 if quick else 1_000
    return args


def print_table(result: Json) -> None:
    say("\n== summary")
    say(
        f"machine: {result['machine']['cpu_count']} CPUs ({result['machine']['cpu_model']}), "
        f"{result['machine']['platform']}"
    )
    real = result.get("real")
    if real:
        say(
            f"real encoder ({real['threads']} thread): ingest {real['ingest']['items_per_s']:.1f} "
            f"items/s, re-ingest unchanged {real['reingest']['items_per_s']:.0f} items/s, "
            f"text query p50 {real['text_query']['p50_ms']:.1f} ms, "
            f"phase peak RSS {real['memory']['phase_peak_mb']:.0f} MiB, "
            f"{real['memory']['other_processes_cpu_cores']} cores busy with other work"
        )
    kinds = result.get("synthetic", {})
    if not kinds:
        return
    rows: list[tuple[str, ...]] = [
        ("", *kinds),
        (
            "ingest items/s (store+index)",
            *(f"{k['ingest']['store_index_items_per_s']:.0f}" for k in kinds.values()),
        ),
        (
            "ingest items/s (end to end)",
            *(f"{k['ingest']['items_per_s']:.0f}" for k in kinds.values()),
        ),
    ]
    for label, key in (
        ("unfiltered", "search_unfiltered"),
        ("topic ~8%", "search_topic_filter"),
        ("selective ~0.5%", "search_selective_filter"),
    ):
        rows.append(
            (
                f"{label} p50 / p99 ms",
                *(f"{k[key]['p50_ms']:.2f} / {k[key]['p99_ms']:.2f}" for k in kinds.values()),
            )
        )
    rows += [
        (
            "filtered after write p50 ms",
            *(f"{k['filtered_after_write']['p50_ms']:.1f}" for k in kinds.values()),
        ),
        (
            "recall@10 vs flat (unfilt.)",
            *(str(k.get("recall_at_10", {}).get("unfiltered", "-")) for k in kinds.values()),
        ),
        ("rebuild on reopen s", *(f"{k['reopen_rebuild_seconds']:.2f}" for k in kinds.values())),
        ("reopen with index s", *(f"{k['reopen_with_index_seconds']:.2f}" for k in kinds.values())),
        (
            "index file MiB",
            *(f"{k['sizes']['index_file_bytes'] / 2**20:.1f}" for k in kinds.values()),
        ),
        (
            "LMDB file MiB",
            *(f"{k['sizes']['lmdb_file_bytes'] / 2**20:.1f}" for k in kinds.values()),
        ),
        ("peak RSS MiB (this phase)", *(f"{k['peak_rss_mb']:.0f}" for k in kinds.values())),
        (
            "cores busy with other work",
            *(str(k["memory"]["other_processes_cpu_cores"]) for k in kinds.values()),
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        say(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    say(f"peak RSS of the whole run: {result['memory']['process_peak_mb']:.0f} MiB")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.time()
    result: Json = {
        "machine": machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    say(f"machine: {json.dumps(result['machine'])}")
    root = Path(tempfile.mkdtemp(prefix="ownrank-bench-", dir=args.data_dir))
    try:
        qrng = np.random.default_rng(args.seed + 2)
        query_vectors = SyntheticEncoder().encode([make_query(qrng) for _ in range(args.queries)])
        synthetic: Json = {}
        found: dict[str, dict[str, list[list[str]]]] = {}
        # Synthetic phases first, so their peak RSS does not include the torch model.
        for kind in args.kinds:
            synthetic[kind], found[kind] = run_synthetic(kind, args, root, query_vectors)
        if "flat" in found and "hnsw" in found:
            recall = {
                name: recall_at(found["flat"][name], found["hnsw"][name]) for name in found["flat"]
            }
            synthetic["hnsw"]["recall_at_10"] = recall
            say(f"\nhnsw recall@10 vs flat: {recall}")
        result["synthetic"] = synthetic
        if args.real_items > 0:
            result["real"] = run_real(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result["memory"] = memory()
    result["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    result["total_seconds"] = round(time.time() - started, 1)
    print_table(result)
    machine_info.write_results(result, args.out, " (other work on the machine skews the timings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
