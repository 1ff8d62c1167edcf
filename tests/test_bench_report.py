"""The benchmark harness, the report and the one-command runner, without running any
benchmark.

Result files are made with ``harness.Run`` as the benchmarks make them. The report must
show each benchmark's tables as the benchmark printed them, mark a missed target MISSES
and a met one ok, show medians with their range over repeated runs, state the cost of
sealing from the two engine runs, and say which files are missing. ``bench/run_all.py``'s
plan (which commands, in which order, with which output files) is checked without
starting a benchmark.
"""

from __future__ import annotations

import doctest
import json
import os
import sys
from pathlib import Path
from typing import Any

import harness
import pytest
import report
import run_all


def engine_run(rec_p99_ms: float, *, rec_p50_ms: float = 5.0, rate: float = 6000.0) -> Any:
    run = harness.Run("engine_bench", {"items": 10_000}, quick=True)
    run.add("recommend p50", rec_p50_ms, "ms", items=10_000)
    run.add("recommend p99", rec_p99_ms, "ms", items=10_000)
    run.add("ingest", rate, "events/s", items=10_000)
    run.table("Latency", by=["items"], plot=True)
    run.target("recommend p99", "recommend p99", "<=", 10.0, source="issue 5")
    run.target("ingest", "ingest", ">=", 5000.0, source="issue 5")
    return run


def write(results: Path, name: str, run: Any) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / name).write_text(json.dumps(run.document()))


def quality_run() -> Any:
    run = harness.Run("quality", {}, quick=False)
    for model, value in (("ownrank", 0.099), ("EASE", 0.144)):
        run.add("NDCG@10", value, "NDCG@10", dataset="ml-1m-half", protocol="chrono20", model=model)
    run.table("Quality", by=["dataset", "protocol"], columns="model")
    run.target("chrono20", "NDCG@10", ">=", 0.145, where={"model": "ownrank"}, source="issue 20")
    return run


def test_harness_doctests() -> None:
    failed, attempted = doctest.testmod(harness)
    assert attempted >= 5 and failed == 0


def test_pivot_and_units() -> None:
    text = harness.render(quality_run().document())
    assert "### Quality" in text
    assert "| dataset | protocol | ownrank (NDCG@10) | EASE (NDCG@10) |" in text
    assert "| ml-1m-half | chrono20 | 0.0990 | 0.1440 |" in text
    assert "| chrono20 | >= 0.145 NDCG@10 | 0.0990 NDCG@10 | MISSES |" in text


def test_target_without_a_row_is_not_measured() -> None:
    run = harness.Run("x", {}, quick=True)
    run.target("erase p99", "erase p99", "<=", 5.0)
    assert harness.target_lines(run.document())[0][-1] == "not measured"


def test_report_targets_repeats_and_plots(tmp_path: Path) -> None:
    for i, p99 in enumerate((9.0, 12.0, 11.0), start=1):
        write(tmp_path, f"engine_bench_quick_r{i}.json", engine_run(p99))
    built = report.build(tmp_path, quick=True)
    verdicts = {(line[0], line[1]): line[-1] for line in built.headline_lines}
    assert verdicts[("engine", "recommend p99")] == "MISSES"  # median of 9, 12, 11
    assert verdicts[("engine", "ingest")] == "ok"
    text = built.report.read_text()
    assert "11.00 (9.00 to 12.00)" in text
    assert "`engine_bench_quick_r1.json`, `engine_bench_quick_r2.json`" in text
    assert len(built.plots) == 1 and built.plots[0].read_bytes()[:4] == b"\x89PNG"
    assert f"plots/{built.plots[0].name}" in text
    assert built.report.name == "REPORT_quick.md"
    assert "| engine | recommend p99 | <= 10 ms |" in built.headline.read_text()
    assert "quality" in built.missing and "engine" not in built.missing


def test_sealing_cost(tmp_path: Path) -> None:
    write(tmp_path, "engine_bench.json", engine_run(9.0, rec_p50_ms=10.0, rate=5000.0))
    write(tmp_path, "engine_bench_noencrypt.json", engine_run(9.0, rec_p50_ms=8.0, rate=5250.0))
    built = report.build(tmp_path, quick=False)
    sealing = next(line for line in built.headline_lines if line[1] == "sealing cost")
    assert sealing[-1] == "MISSES"  # recommend p50 +25%
    assert "recommend p50 +25.0%" in sealing[3] and "ingest +5.0%" in sealing[3]
    write(tmp_path, "engine_bench_noencrypt.json", engine_run(9.0, rec_p50_ms=9.5, rate=5000.0))
    sealing = next(
        line for line in report.build(tmp_path).headline_lines if line[1] == "sealing cost"
    )
    assert sealing[-1] == "ok"


def test_missing_and_old_files_are_said(tmp_path: Path) -> None:
    (tmp_path / "catalog_bench_quick.json").write_text('{"args": {"quick": true}}')  # old format
    built = report.build(tmp_path, quick=True)
    assert built.headline_lines == []
    text = built.report.read_text()
    assert "python bench/run_all.py --quick --only erasure_vs_retrain" in text
    assert "not an ownrank-bench/1 result file" in text


def test_quick_report_falls_back_to_full_file_and_says_so(tmp_path: Path) -> None:
    write(tmp_path, "quality.json", quality_run())
    src = report.load_results(tmp_path, quick=True)["quality"]
    assert src.fallback and "no quick-mode file" in src.cite()
    assert "no quick-mode file" in report.build(tmp_path, quick=True).report.read_text()


def test_stale_repeat_names_are_not_mixed_up(tmp_path: Path) -> None:
    write(tmp_path, "engine_bench_r1.json", engine_run(30.0))  # a full-mode repeat
    write(tmp_path, "engine_bench_quick.json", engine_run(9.0))
    src = report.load_results(tmp_path, quick=True)["engine"]
    assert [p.name for p in src.files] == ["engine_bench_quick.json"]


# -- run_all ---------------------------------------------------------------------------------


def labels(steps: list[run_all.Step]) -> list[str]:
    return [s.label for s in steps]


def test_select_only_and_skip() -> None:
    assert run_all.select(["quality", "engine"], None) == ["engine", "quality"]  # run order
    assert "service" not in run_all.select(None, ["service"])
    assert run_all.select(None, None) == list(run_all.NAMES)
    with pytest.raises(ValueError, match="unknown benchmarks"):
        run_all.select(["engnie"], None)


def test_every_bench_script_is_in_the_plan() -> None:
    """Every benchmark script in bench/ is run by run_all (the rest are libraries and
    tools run by hand)."""
    libraries = {
        *("baselines", "eval_data", "harness", "latency", "machine_info", "peers"),
        *("protocols", "report", "run_all", "ranking_dump", "stored_candidates_probe"),
        "service_bench",  # run through scripts/bench_service.sh
        "recommend_ab",  # compares the working tree with a git revision: run by hand
        "ivf_codes_ab",  # an A/B of two settings, call by call: run by hand
        "retrieval_ab",  # the same, for the retrieval's candidate sources
        "held_tables_ab",  # the same, for the tables a retrieved pool's reads are kept in
        "engine_ab",  # a git revision's engine and the working tree's, at 100k: by hand
    }
    scripts = {p.stem for p in (Path(run_all.ROOT) / "bench").glob("*.py")} - libraries
    planned = {Path(b.script).stem for b in run_all.BENCHMARKS}
    assert scripts <= planned


def test_quick_plan() -> None:
    steps = run_all.plan(quick=True, data_dir=Path("/data"))
    assert labels(steps)[:3] == ["engine_r1", "engine_noencrypt", "erasure_vs_retrain"]
    assert len(steps) == len(run_all.BENCHMARKS)
    by = {s.label: s for s in steps}
    py = sys.executable
    assert by["engine_r1"].command == (
        *(py, "bench/engine_bench.py", "--no-progress", *run_all.ENGINE_QUICK),
        *("--out", "bench/results/engine_bench_quick_r1.json"),
    )
    assert by["engine_r1"].clear_glob == "engine_bench_quick_r*.json"
    assert by["engine_noencrypt"].out == "engine_bench_noencrypt_quick.json"
    assert "--no-encrypt" in by["engine_noencrypt"].command
    assert by["service"].command[:3] == ("bash", "scripts/bench_service.sh", "--quick")
    assert by["quality"].command == (
        *(py, "bench/quality.py", "--quick", "--datasets", "ml-1m-half"),
        *("--data-dir", "/data", "--out", "bench/results/quality_quick.json"),
    )
    assert "--data-dir" not in by["engine_r1"].command  # engine's --data-dir is its store
    assert all(s.command[-2] == "--out" and s.command[-1].endswith(s.out) for s in steps)
    assert all(s.log == f"logs/{Path(s.out).stem}.log" for s in steps)
    assert by["index_r1"].timeout_s == 900  # quick timeout


def test_full_plan_repeats_and_only() -> None:
    steps = run_all.plan(quick=False, only=["engine", "engine_noencrypt", "index"])
    assert labels(steps) == ["engine_r1", "engine_noencrypt", "engine_r2", "engine_r3", "index_r1"]
    assert all("--quick" not in s.command for s in steps)
    steps = run_all.plan(quick=False, only=["index", "encoder"], repeats=2)
    assert [s.out for s in steps] == [
        "encoder_bench_r1.json",
        "encoder_bench_r2.json",
        "index_bench_r1.json",
        "index_bench_r2.json",
    ]
    assert run_all.plan(quick=False, only=["quality"])[0].out == "quality.json"
    with pytest.raises(ValueError):
        run_all.plan(quick=True, repeats=0)


def step(tmp_path: Path, code: str, out: str = "x.json", timeout: int = 60) -> run_all.Step:
    return run_all.Step(
        "x", "x_r1", (sys.executable, "-c", code), "bench/report.py", out, "logs/x.log",
        timeout, "x_r*.json",
    )  # fmt: skip


def test_run_step_skips_a_missing_script(tmp_path: Path) -> None:
    missing = run_all.Step("x", "x", ("python", "bench/nope.py"), "bench/nope.py", "x.json", "l", 1)
    record = run_all.run_step(missing, tmp_path, echo=False)
    assert record["status"] == "skipped" and "does not exist" in str(record["reason"])


def test_run_step_ok_and_log(tmp_path: Path) -> None:
    code = f"open({str(tmp_path / 'x.json')!r}, 'w').write('{{}}'); print('hi')"
    (tmp_path / "x_r7.json").write_text("{}")  # an earlier run's repeat
    record = run_all.run_step(step(tmp_path, code), tmp_path, echo=False)
    assert record["status"] == "ok" and record["cpu probe before"]
    assert "hi" in (tmp_path / "logs" / "x.log").read_text()
    assert not (tmp_path / "x_r7.json").exists()


def test_run_step_without_new_output_fails(tmp_path: Path) -> None:
    """An old results file left by an earlier run is not taken for this run's."""
    (tmp_path / "x.json").write_text("{}")
    os.utime(tmp_path / "x.json", (1_000_000, 1_000_000))
    record = run_all.run_step(step(tmp_path, "pass"), tmp_path, echo=False)
    assert record["status"] == "failed" and "no new" in str(record["reason"])


def test_run_step_timeout(tmp_path: Path) -> None:
    record = run_all.run_step(
        step(tmp_path, "import time; time.sleep(30)", timeout=1), tmp_path, echo=False
    )
    assert record["status"] == "timeout" and float(record["seconds"]) < 20  # type: ignore[arg-type]


def test_run_all_records_its_steps() -> None:
    run = harness.Run("run_all", {}, quick=True)
    run_all.record_run(run, [{"step": "engine_r1", "status": "ok", "seconds": 12.5}])
    text = harness.render({**run.document(), "tables": [{"title": "Steps", "by": ["step"]}]})
    assert "| engine_r1 | ok | 12.5 |" in text


def test_machine_description() -> None:
    m = run_all.describe_machine()
    assert m["cpu_count"] and m["python"] and m["os"]
    assert "numpy" in m["versions"]  # type: ignore[operator]
