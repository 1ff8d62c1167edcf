"""The index and scale benchmarks measure what they claim, on sizes small enough for CI.

``bench/index_bench.py``: exact search finds the exact top-k (recall 1.0), HNSW
with the engine's parameters nearly so on clustered data, latencies are real.
``bench/scale_bench.py``: a tiny real ``engine_bench.py`` run produces a result the
collector reads, so a renamed engine_bench row fails here and not after an
hour-long 1M run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import faiss
import harness
import index_bench
import numpy as np
import pytest
import scale_bench

ITEMS = 2_000


def value(rows: list[harness.Row], metric: str, **labels: Any) -> Any:
    """The value of the one row with this metric and (at least) these labels."""
    found = [r for r in rows if r.matches({"metric": metric, **labels})]
    assert len(found) == 1, (metric, labels, found)
    return found[0].value


@pytest.fixture(scope="module")
def rows(tmp_path_factory: pytest.TempPathFactory) -> list[harness.Row]:
    faiss.omp_set_num_threads(1)
    settings = index_bench.Settings(
        kinds=(*index_bench.KINDS, index_bench.IVF_FLOAT32),
        data_dir=tmp_path_factory.mktemp("index-bench"),
        nprobe_sweep=(64,),
    )
    run = harness.Run("index_bench", {}, quick=True)
    both = index_bench.make_queries(65, seed=7)
    index_bench.measure_size(run, ITEMS, settings, both[:60], both[60:])
    return run.rows


def test_flat_is_exact(rows: list[harness.Row]) -> None:
    flat: Any = {"index": "flat", "items": ITEMS}
    assert value(rows, "recall@100", **flat, filter="none") == 1.0
    assert value(rows, "recall@10", **flat, filter="none") == 1.0
    assert value(rows, "recall@10", **flat, filter="topic", path="index") == 1.0
    assert value(rows, "recall@10", **flat, filter="topic", path="engine") == 1.0
    assert value(rows, "short results", **flat, k=100, filter="none") == 0


def test_hnsw_recall_is_high_on_clustered_data(rows: list[harness.Row]) -> None:
    recalls = [r for r in rows if r.metric.startswith("recall@") and r.labels["index"] == "hnsw"]
    assert len(recalls) == 4  # k=10, k=100, filtered (index), filtered (engine)
    assert all(0.0 <= r.value <= 1.0 for r in recalls)  # type: ignore[operator]
    assert value(rows, "recall@10", index="hnsw", filter="none") > 0.8
    assert value(rows, "recall@100", index="hnsw", filter="none") > 0.8
    # ~170 admitted rows <= exact_filter_limit: the engine scores them exactly
    engine: Any = {"index": "hnsw", "filter": "topic", "path": "engine"}
    assert value(rows, "recall@10", **engine) == 1.0
    assert "exact scoring" in value(rows, "route", **engine)


def test_ivf_scanning_every_list_is_exact(rows: list[harness.Row]) -> None:
    """2,000 items get 64 lists; the engine scans √128 = 11 of them, and a sweep at 64
    scans every list, so exactly. A filter's 167 admitted rows are all covered."""
    ivf: Any = {"index": "ivf", "items": ITEMS}
    assert value(rows, "inverted lists", **ivf) == 64 and value(rows, "nprobe", **ivf) == 11
    assert value(rows, "recall@10", **ivf, filter="sweep", nprobe=64) == 1.0
    assert value(rows, "recall@100", **ivf, filter="sweep", nprobe=64) == 1.0
    assert value(rows, "recall@10", **ivf, filter="none") > 0.8
    assert value(rows, "recall@10", **ivf, filter="topic", path="index") == 1.0
    # the engine's filtered path takes IVF's own filtered scan at any size (exact here)
    engine: Any = {**ivf, "filter": "topic", "path": "engine"}
    assert value(rows, "route", **engine).startswith("ivf search with an ID selector")
    assert value(rows, "recall@10", **engine) == 1.0
    # read back mapped from its file: the same answers, its vectors in file pages
    for k, search, memory in ((10, "mapped", "none"), (100, "mapped", "none"),
                              (10, "mapped, topic", "topic")):  # fmt: skip
        in_memory = value(rows, f"recall@{k}", **ivf, filter=memory, k=k, path="index")
        assert value(rows, f"recall@{k}", **ivf, filter=search, k=k) == in_memory
    own = value(rows, "RSS anonymous growth, mapped", **ivf)
    assert own < value(rows, "RSS file-backed growth, mapped", **ivf)


def test_latencies_build_and_memory_are_measured(rows: list[harness.Row]) -> None:
    assert value(rows, "auto index", items=ITEMS) == "flat"
    assert {r.labels["items"] for r in rows} == {ITEMS}
    raw = value(rows, "raw vectors", items=ITEMS)
    for kind in ("flat", "hnsw", "ivf"):
        assert value(rows, "build", index=kind) > 0, kind
        searches = [r for r in rows if r.metric == "search calls" and r.labels["index"] == kind]
        # k=10, k=100, filtered (index), filtered (engine); IVF: the nprobe sweep's
        # k=10 and k=100, then again mapped (3 more)
        assert len(searches) == (9 if kind == "ivf" else 4), kind
        for calls in searches:
            labels = dict(calls.labels)
            assert calls.value == 60, labels
            p50, p99, top = (value(rows, f"search {q}", **labels) for q in ("p50", "p99", "max"))
            assert 0 < p50 <= p99 <= top, labels
            assert value(rows, "search mean", **labels) > 0, labels
        size = value(rows, "index file", index=kind)
        assert size > raw, kind
        # the layout estimate is within 10% of what FAISS writes
        assert abs(value(rows, "estimate", index=kind) / size - 1) < 0.1, kind
    # the graph's links
    assert value(rows, "index file", index="hnsw") > value(rows, "index file", index="flat")


def test_recall_counts_ties_and_misses() -> None:
    truth = np.array([[1, 2, 3]], dtype=np.int64)
    truth_scores = np.array([[0.9, 0.8, 0.7]], dtype=np.float32)
    found = np.array([[1, 2, 9]], dtype=np.int64)
    tied = np.array([[0.9, 0.8, 0.7]], dtype=np.float32)  # row 9 ties the 3rd exact score
    assert index_bench.recall(found, tied, truth, truth_scores, 3) == 1.0
    lower = np.array([[0.9, 0.8, 0.6]], dtype=np.float32)
    assert index_bench.recall(found, lower, truth, truth_scores, 3) == pytest.approx(2 / 3, 1e-3)
    short = np.array([[1, -1, -1]], dtype=np.int64)
    assert index_bench.recall(short, lower, truth, truth_scores, 3) == pytest.approx(1 / 3, 1e-3)


def test_parse_sizes() -> None:
    assert index_bench.parse_sizes("10000,100k,1M") == (10_000, 100_000, 1_000_000)
    assert scale_bench.parse_sizes("2k, 20000") == [2_000, 20_000]


def rendered(collected: list[harness.Row]) -> str:
    """The scale tables over collected rows (every collected row formats)."""
    run = harness.Run("scale_bench", {}, quick=True)
    run.rows += collected
    scale_bench.declare(run)
    return harness.render(run.document())


def test_scale_bench_collects_a_real_engine_bench_run(tmp_path: Path) -> None:
    plan = scale_bench.SizePlan(items=ITEMS, users=50, queries=20, erase=10, cap_users=1)
    out = tmp_path / "engine.json"
    cmd = scale_bench.engine_bench_command(plan, out, warmup=5, data_dir=tmp_path)
    rc = scale_bench.run_engine_bench(cmd, tmp_path / "engine.log", "", echo=False)
    assert rc == 0, (tmp_path / "engine.log").read_text()[-3000:]
    got = scale_bench.collect(out)
    assert {r.labels["items"] for r in got} == {ITEMS}
    assert value(got, "users") == 50 and value(got, "queries") == 20
    assert value(got, "index type") == "flat"
    for kind in scale_bench.RECOMMEND_KINDS:
        p50, p99 = (value(got, f"recommend {q}", kind=kind) for q in ("p50", "p99"))
        assert 0 < p50 <= p99, kind
    assert value(got, "recommend calls", kind="plain") == 20
    assert value(got, "ingest") > 0
    assert value(got, "record median") > 0
    assert value(got, "process peak RSS") > 0
    assert "| 2000 | plain |" in rendered(got)


# engine_bench rows scale_bench reads, figures cut from a real `engine_bench.py --items
# 2000 --users 50 --queries 20 --erase 10` run: the collector is checked against these
# even when a real run cannot happen (the real run above checks the rows still exist).
# Decoys come first: a row of another phase or with a further label must not be taken.
LATENCIES = [  # operation, labels: calls, p50, p99, mean (ms)
    ("recommend", {"phase": "neighbour_paths", "kind": "plain"}, (20, 99.0, 99.0, 99.0)),
    ("recommend", {"phase": "recommend", "kind": "plain"}, (20, 29.715, 48.953, 30.749)),
    ("recommend", {"phase": "recommend", "kind": "topic_filter"}, (20, 9.28, 14.985, 8.388)),
    ("recommend", {"phase": "recommend", "kind": "diversity_0.3"}, (20, 42.987, 126.951, 54.926)),
    ("recommend", {"phase": "recommend", "kind": "cold_start"}, (20, 8.725, 15.258, 8.206)),
    ("recommend", {"phase": "recommend", "kind": "from_history_50_events"},
     (50, 29.488, 48.354, 29.679)),
    ("search", {"phase": "search", "kind": "personalized"}, (20, 1.348, 13.611, 3.96)),
    ("search", {"phase": "search", "kind": "unpersonalized"}, (20, 0.281, 11.877, 1.359)),
    ("erase", {"phase": "erase", "user": "known"}, (10, 9.515, 15.742, 8.802)),
]  # fmt: skip
OTHER_ROWS = [  # metric, value, unit, labels
    ("call p50", 3.0, "ms", {"phase": "interact", "stored": "0-24"}),
    ("call p50", 11.491, "ms", {"phase": "interact"}),
    ("users", 50, "count", {"phase": "interact"}),
    ("call p99", 18.284, "ms", {"phase": "interact"}),
    ("ingest", 2986.0, "events/s", {"phase": "interact_bulk"}),
    ("ingest", 1925.5, "events/s", {"phase": "interact"}),
    ("ingest in calls", 2018.1, "events/s", {"phase": "interact"}),
    *((f"record {q}", v, "B", {"phase": "records", "users": "all"})
      for q, v in (("median", 3024.5), ("p90", 3857.2), ("p99", 4319.0), ("max", 4415.0))),
    ("upsert", 5731.0, "items/s", {"phase": "catalog"}),
    ("upsert time", 0.35, "s", {"phase": "catalog"}),
    ("index type", "flat", "", {"phase": "records"}),
    ("process peak RSS", 100.0, "MiB", {"phase": "recommend"}),
    ("process peak RSS", 118.7, "MiB", {"phase": "end"}),
    ("other cores busy", 1.26, "cores", {"phase": "catalog"}),
    ("other cores busy", 1.34, "cores", {"phase": "recommend"}),
]  # fmt: skip


def engine_doc(rows: list[tuple[str, Any, str, dict[str, Any]]]) -> dict[str, Any]:
    return {
        "format": harness.FORMAT,
        "params": {"items": ITEMS, "users": 50, "queries": 20},
        "machine": {"loadavg_at_start": [1.93, 1.05, 0.99]},
        "loadavg_at_end": [2.25, 1.15, 1.02],
        "seconds": 10.4,
        "rows": [{"metric": m, "value": v, "unit": u, "labels": lab} for m, v, u, lab in rows],
    }


def test_collect_reads_the_engine_bench_rows_fixture(tmp_path: Path) -> None:
    rows = list(OTHER_ROWS)
    for op, labels, figures in LATENCIES:
        for q, v in zip(scale_bench.LATENCY, figures, strict=True):
            rows.append((f"{op} {q}", v, "count" if q == "calls" else "ms", labels))
    path = tmp_path / "engine_bench_fixture.json"
    path.write_text(json.dumps(engine_doc(rows)))
    got = scale_bench.collect(path)
    assert value(got, "index type") == "flat" and value(got, "queries") == 20
    assert value(got, "recommend p99", kind="plain") == 48.953
    assert value(got, "recommend p50", kind="topic_filter") == 9.28
    assert value(got, "recommend p50", kind="cold_start") == 8.725
    assert value(got, "ingest") == 1925.5
    assert value(got, "call p50") == 11.491
    assert value(got, "record median") == 3024.5
    assert value(got, "erase p99") == 15.742
    assert value(got, "process peak RSS") == 118.7
    assert value(got, "other cores busy", phase="recommend") == 1.34
    assert value(got, "load average at end") == 2.25
    assert "| 2000 | topic_filter | 20 | 9.28 | 14.98 | 8.39 |" in rendered(got)


def test_collect_names_a_missing_row(tmp_path: Path) -> None:
    path = tmp_path / "partial.json"
    path.write_text(json.dumps(engine_doc([])))
    with pytest.raises(ValueError, match="recommend calls"):
        scale_bench.collect(path)
    path.write_text('{"recommend": {}}')  # an engine_bench result of the old format
    with pytest.raises(ValueError, match="not an ownrank-bench/1 result"):
        scale_bench.collect(path)


def test_ivf_of_float32_vectors_is_measured_beside_float16_codes(
    rows: list[harness.Row],
) -> None:
    """``--kinds ivf ivf-float32``: the engine's IVF (float16 codes) and one holding
    float32 vectors, on the same catalog and queries, each with its own rows; both
    exact when every list is scanned (the codes pick, the table scores), and the
    float16 file holds codes and table, half again the float32 one."""
    for name in ("ivf", index_bench.IVF_FLOAT32):
        labels: Any = {"index": name, "items": ITEMS}
        assert value(rows, "recall@10", **labels, filter="sweep", nprobe=64) == 1.0
        assert value(rows, "recall@10", **labels, filter="topic", path="engine") == 1.0
        assert value(rows, "search p50", **labels, k=10, filter="none") > 0
    half, full = (value(rows, "index file", index=n) for n in ("ivf", index_bench.IVF_FLOAT32))
    assert 1.3 < half / full < 1.7
