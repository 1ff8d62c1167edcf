"""The ``ownrank`` command line with the real base model, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ownrank.service.cli import app

runner = CliRunner()

SAMPLE = [
    '{"id": "g1", "title": "Pruning roses in late winter", "tags": ["roses"],'
    ' "properties": {"topic": "gardening", "minutes": 4}}',
    '{"id": "g2", "title": "Composting kitchen scraps at home",'
    ' "properties": {"topic": "gardening", "minutes": 7}}',
    "this line is not JSON",
    '{"id": "bad id", "title": "spaces are not allowed in ids"}',
    '{"id": "no-text", "title": "  "}',
    '{"id": "c1", "title": "Sicilian defence: the Najdorf explained",'
    ' "properties": {"topic": "chess", "minutes": 9}, "published_at": "2026-02-01T10:00:00Z"}',
    "[1, 2, 3]",
    '{"id": "k1", "title": "Sharpening a chef knife on a whetstone",'
    ' "properties": {"topic": "cooking", "minutes": 5}}',
]


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("\n".join(SAMPLE) + "\n")
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_ingest_reports_rejected_rows_and_stores_the_good_ones(
    sample: Path, tmp_path: Path
) -> None:
    store = str(tmp_path / "store")
    code, out = run("ingest", str(sample), "--data-dir", store, "--json")
    assert code == 1  # some records were rejected
    summary = json.loads(out)
    assert (summary["records"], summary["added"], summary["embedded"]) == (8, 4, 4)
    assert [(r["line"], r["item_id"]) for r in summary["rejected"]] == [
        (3, None),
        (4, "bad id"),
        (5, "no-text"),
        (7, None),
    ]
    assert "invalid JSON" in summary["rejected"][0]["reason"]
    assert "item id" in summary["rejected"][1]["reason"]

    code, out = run("ingest", str(sample), "--data-dir", store)
    assert code == 1 and "0 added" in out and "4 unchanged" in out and "0 embedded" in out

    code, out = run("info", "--data-dir", store, "--json")
    facts = json.loads(out)
    assert code == 0 and facts["items"] == 4 and facts["index"]["type"] == "flat"
    assert facts["model_fingerprint"].startswith("sha256:")

    code, out = run("search", "growing flowers", "-n", "2", "--data-dir", store, "--json")
    assert code == 0 and json.loads(out)[0]["id"] == "g1"
    code, out = run(
        "search", "x", "--filter", '{"minutes": {"$gt": 4}}', "--data-dir", store, "--json"
    )
    assert {h["id"] for h in json.loads(out)} == {"g2", "c1", "k1"}

    code, out = run("similar", "g1", "-n", "5", "--data-dir", store, "--json")
    assert code == 0 and {h["id"] for h in json.loads(out)} == {"g2", "c1", "k1"}

    code, out = run("delete", "g2", "nope", "--data-dir", store)
    assert code == 0 and "1 deleted, 1 not found" in out
    code, out = run("similar", "g1", "-n", "3", "--data-dir", store, "--json")
    assert "g2" not in {h["id"] for h in json.loads(out)}


def test_csv_ingest(tmp_path: Path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "id,title,tags,topic,minutes,properties\n"
        'k1,Sharpening a chef knife,knives|tools,cooking,5,"{""level"": ""beginner""}"\n'
        "k2,,,cooking,3,\n"
    )
    store = str(tmp_path / "store")
    code, out = run("ingest", str(path), "--data-dir", store, "--json")
    summary = json.loads(out)
    assert code == 1 and summary["added"] == 1 and summary["rejected"][0]["item_id"] == "k2"
    code, out = run("search", "knife", "--data-dir", store, "--json")
    hit = json.loads(out)[0]
    assert hit["properties"] == {"topic": "cooking", "minutes": 5, "level": "beginner"}


def test_usage_errors_exit_2(sample: Path, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    run("ingest", str(sample), "--data-dir", store)
    assert run("search", "x", "--filter", "{not json", "--data-dir", store)[0] == 2
    code, out = run("search", "x", "--filter", '{"a": {"$bad": 1}}', "--data-dir", store)
    assert code == 2 and "unknown operator" in out
    assert run("similar", "missing-item", "--data-dir", store)[0] == 2
    weird = tmp_path / "items.xml"
    weird.write_text("<x/>")
    assert run("ingest", str(weird), "--data-dir", store)[0] == 2


def test_demo_ingests_the_shipped_catalog_and_finds_topics(tmp_path: Path) -> None:
    store = tmp_path / "demo"
    code, out = run("demo", "--data-dir", str(store), "--no-interactive")
    assert code == 0, out
    assert "demo catalog: 480 items" in out
    code, out = run("search", "telescope eyepiece", "-n", "5", "--data-dir", str(store), "--json")
    assert [h["properties"]["topic"] for h in json.loads(out)] == ["astronomy"] * 5
    code, out = run(
        "search",
        "opening",
        "-n",
        "5",
        "--data-dir",
        str(store),
        "--json",
        "--filter",
        '{"topic": "chess"}',
    )
    assert len(json.loads(out)) == 5
    # running the demo again re-embeds nothing
    code, out = run("demo", "--data-dir", str(store), "--no-interactive")
    assert code == 0 and "480 unchanged" in out
