"""The index and scale benchmarks measure what they claim, on sizes small enough for CI.

``bench/index_bench.py``: exact search finds the exact top-k (recall 1.0), HNSW
with the engine's parameters nearly so on clustered data, latencies are real.
``bench/scale_bench.py``: a tiny real ``engine_bench.py`` run (a few seconds)
produces JSON the collector reads, so a renamed engine_bench field fails here
and not after an hour-long 1M run.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import index_bench
import numpy as np
import pytest
import scale_bench

ITEMS = 2_000


@pytest.fixture(scope="module")
def size_result(tmp_path_factory: pytest.TempPathFactory) -> index_bench.Json:
    faiss.omp_set_num_threads(1)
    settings = index_bench.Settings(
        queries=60, warmup=5, data_dir=tmp_path_factory.mktemp("index-bench")
    )
    both = index_bench.make_queries(65, seed=7)
    return index_bench.measure_size(ITEMS, settings, both[:60], both[60:])


def test_flat_is_exact(size_result: index_bench.Json) -> None:
    search = size_result["kinds"]["flat"]["search"]
    assert search["k100"]["recall"] == 1.0
    assert search["k10"]["recall"] == 1.0
    assert search["filtered_k10"]["recall"] == 1.0
    assert search["k100"]["short_results"] == 0


def test_hnsw_recall_is_high_on_clustered_data(size_result: index_bench.Json) -> None:
    search = size_result["kinds"]["hnsw"]["search"]
    for name in ("k10", "k100", "filtered_k10", "engine_filtered_k10"):
        assert 0.0 <= search[name]["recall"] <= 1.0, name
    assert search["k10"]["recall"] > 0.8
    assert search["k100"]["recall"] > 0.8
    # ~170 admitted rows <= exact_filter_limit: the engine scores them exactly
    assert search["engine_filtered_k10"]["recall"] == 1.0
    assert "exact scoring" in search["engine_filtered_k10"]["path"]


def test_latencies_build_and_memory_are_measured(size_result: index_bench.Json) -> None:
    assert size_result["items"] == ITEMS
    assert size_result["engine_auto_kind"] == "flat"
    for kind, r in size_result["kinds"].items():
        assert r["build"]["seconds"] > 0, kind
        for name, stats in r["search"].items():
            assert stats["count"] == 60, (kind, name)
            assert 0 < stats["p50_ms"] <= stats["p99_ms"] <= stats["max_ms"], (kind, name)
            assert stats["mean_ms"] > 0, (kind, name)
        mem = r["memory"]
        assert mem["index_file_bytes"] > mem["raw_vector_bytes"], kind
        # the layout estimate is within 10% of what FAISS writes
        assert abs(mem["estimated_bytes"] / mem["index_file_bytes"] - 1) < 0.1, kind
    hnsw, flat = (size_result["kinds"][k]["memory"] for k in ("hnsw", "flat"))
    assert hnsw["index_file_bytes"] > flat["index_file_bytes"]  # the graph's links


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


def test_scale_bench_collects_a_real_engine_bench_run(tmp_path: Path) -> None:
    plan = scale_bench.SizePlan(items=ITEMS, users=50, queries=20, erase=10, cap_users=1)
    out = tmp_path / "engine.json"
    cmd = scale_bench.engine_bench_command(plan, out, warmup=5, data_dir=tmp_path)
    rc = scale_bench.run_engine_bench(cmd, tmp_path / "engine.log", "", echo=False)
    assert rc == 0, (tmp_path / "engine.log").read_text()[-3000:]
    got = scale_bench.collect(out)
    assert got["items"] == ITEMS and got["users"] == 50 and got["queries"] == 20
    assert got["index_type"] == "flat"
    for name in scale_bench.RECOMMEND_KINDS:
        stats = got["recommend"][name]
        assert 0 < stats["p50_ms"] <= stats["p99_ms"], name
    assert got["recommend"]["plain"]["count"] == 20
    assert got["interact"]["events_per_s"] > 0
    assert got["record_bytes"]["median"] > 0
    assert got["peak_rss_mb"] > 0
    scale_bench.print_table([got])  # the table formats every collected field


# The fields scale_bench reads, cut from a real `engine_bench.py --items 2000 --users 50
# --queries 20 --erase 10` output: the collector is checked against this even when a
# real run cannot happen (the real run above checks the fields still exist).
ENGINE_BENCH_JSON_FIXTURE = """
{"args": {"queries": 20, "items": 2000, "users": 50},
 "machine": {"loadavg_at_start": [1.93, 1.05, 0.99]},
 "catalog": {"items": 2000, "items_per_s": 5731.0, "seconds": 0.35},
 "interact": {"users": 50, "events_per_s": 1925.5, "events_per_s_in_calls": 2018.1,
              "call_latency": {"count": 181, "p50_ms": 11.491, "p99_ms": 18.284,
                               "mean_ms": 10.71}},
 "records": {"all_users": {"median_bytes": 3024.5, "p90_bytes": 3857.2, "p99_bytes": 4319.0,
                           "max_bytes": 4415.0}},
 "recommend": {"plain": {"count": 20, "p50_ms": 29.715, "p99_ms": 48.953, "mean_ms": 30.749},
               "topic_filter": {"count": 20, "p50_ms": 9.28, "p99_ms": 14.985, "mean_ms": 8.388},
               "diversity_0.3": {"count": 20, "p50_ms": 42.987, "p99_ms": 126.951,
                                 "mean_ms": 54.926},
               "cold_start": {"count": 20, "p50_ms": 8.725, "p99_ms": 15.258, "mean_ms": 8.206},
               "from_history_50_events": {"count": 50, "p50_ms": 29.488, "p99_ms": 48.354,
                                          "mean_ms": 29.679}},
 "search": {"personalized": {"count": 20, "p50_ms": 1.348, "p99_ms": 13.611, "mean_ms": 3.96},
            "unpersonalized": {"count": 20, "p50_ms": 0.281, "p99_ms": 11.877,
                               "mean_ms": 1.359}},
 "erase": {"count": 10, "p50_ms": 9.515, "p99_ms": 15.742, "mean_ms": 8.802},
 "sizes": {"index_type": "flat"},
 "memory": {"process_peak_mb": 118.7},
 "phase_memory": {"catalog": {"other_processes_cpu_cores": 1.26},
                  "recommend": {"other_processes_cpu_cores": 1.34}},
 "loadavg_at_end": [2.25, 1.15, 1.02], "total_seconds": 10.4}
"""


def test_collect_reads_the_engine_bench_fields_fixture(tmp_path: Path) -> None:
    path = tmp_path / "engine_bench_fixture.json"
    path.write_text(ENGINE_BENCH_JSON_FIXTURE)
    got = scale_bench.collect(path)
    assert got["items"] == ITEMS and got["index_type"] == "flat"
    assert got["recommend"]["plain"]["p99_ms"] == 48.953
    assert got["recommend"]["topic_filter"]["p50_ms"] == 9.28
    assert got["recommend"]["cold_start"]["p50_ms"] == 8.725
    assert got["interact"]["events_per_s"] == 1925.5
    assert got["record_bytes"]["median"] == 3024.5
    assert got["other_processes_cpu_cores"]["recommend"] == 1.34
    scale_bench.print_table([got, got])


def test_collect_names_a_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "partial.json"
    path.write_text('{"recommend": {}}')
    with pytest.raises(ValueError, match=r"recommend\.plain"):
        scale_bench.collect(path)
