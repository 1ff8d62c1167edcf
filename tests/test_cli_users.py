"""The user commands of the ``ownrank`` CLI (``service/cli_users.py``), with the real base
model, as a user runs them: each is a thin call of the SDK, prints JSON with ``--json``,
and turns the SDK's typed errors into exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ownrank.service.cli import app
from ownrank.service.cli_users import users_app

runner = CliRunner()

ITEMS = [
    {"id": "g1", "title": "Pruning roses in late winter", "properties": {"topic": "gardening"}},
    {"id": "g2", "title": "Composting kitchen scraps", "properties": {"topic": "gardening"}},
    {"id": "g3", "title": "Tomato blight: the early signs", "properties": {"topic": "gardening"}},
    {"id": "c1", "title": "The Najdorf Sicilian explained", "properties": {"topic": "chess"}},
    {"id": "c2", "title": "Endgames with rook and pawn", "properties": {"topic": "chess"}},
    {"id": "k1", "title": "Sharpening a chef knife", "properties": {"topic": "cooking"}},
]  # fmt: skip


def run(*args: str, stdin: str | None = None) -> tuple[int, str]:
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, result.output


def run_json(*args: str) -> Any:
    code, out = run(*args, "--json")
    assert code == 0, out
    return json.loads(out)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("cli-users")
    items = root / "items.jsonl"
    items.write_text("".join(json.dumps(i) + "\n" for i in ITEMS))
    code, out = run("ingest", str(items), "--data-dir", str(root / "data"))
    assert code == 0, out
    return str(root / "data")


def events_file(tmp_path: Path, events: Any, name: str = "events.json") -> str:
    path = tmp_path / name
    path.write_text(events if isinstance(events, str) else json.dumps(events))
    return str(path)


def test_every_user_command_prints_json_on_request() -> None:
    for command in users_app.registered_commands:
        assert command.callback is not None
        result = runner.invoke(app, [command.name or command.callback.__name__, "--help"])
        assert "--json" in result.output, command.name


def test_interact_recommend_search_forget(store: str, tmp_path: Path) -> None:
    likes = [{"kind": "like", "item_id": i} for i in ("g1", "g2")]
    lines = "".join(json.dumps(e) + "\n" for e in likes) + '{"kind": "search", "query": "roses"}\n'
    report = run_json("interact", "ann", events_file(tmp_path, lines, "a.jsonl"), "-d", store)
    assert (report["accepted"], report["unknown_items"], report["version"]) == (3, [], 1)
    # a JSON array, {"events": [...]}, standard input; an unknown item is reported
    more = [{"kind": "like", "item_id": "nope"}]
    report = run_json("interact", "ann", events_file(tmp_path, more), "-d", store)
    assert report["unknown_items"] == ["nope"]
    report = run_json("interact", "bob", events_file(tmp_path, {"events": likes}), "-d", store)
    assert report["accepted"] == 2
    code, out = run("interact", "cy", "-", "-d", store, stdin=json.dumps(likes[:1]))
    assert code == 0 and "1 accepted" in out

    recs = run_json("recommend", "ann", "-n", "3", "-d", store)
    assert recs and {r["id"] for r in recs}.isdisjoint({"g1", "g2"})  # seen items left out
    explanation = recs[0]["explanation"]  # the nearest item to the two liked, explained
    assert recs[0]["id"] == "g3" and explanation["reason"] in explanation["parts"]
    assert set(explanation["parts"]) >= {"personal", "neighbours", "popularity"}
    code, out = run("recommend", "ann", "-n", "3", "-d", store)
    assert code == 0 and "g3" in out and "parts" in out
    everything = run_json("recommend", "ann", "--include-seen", "-n", "6", "-d", store)
    assert {"g1", "g2"} <= {r["id"] for r in everything}
    chess = run_json("recommend", "ann", "--filter", '{"topic": "chess"}', "-d", store)
    assert {r["id"] for r in chess} == {"c1", "c2"}

    plain = run_json("search", "garden work", "-n", "3", "-d", store)
    personal = run_json("search", "garden work", "--user", "ann", "-n", "3", "-d", store)
    assert len(personal) == 3 and personal != plain  # re-ranked by ann's model

    forgot = run_json("forget", "ann", "g1", "-d", store)
    assert forgot["events_removed"] == 1 and forgot["version"] == 2
    forgot = run_json("forget", "ann", "--after", "2000-01-01T00:00:00Z", "-d", store)
    assert forgot["events_removed"] == 2  # the other like and the search
    assert run("forget", "ann", "-d", store)[0] == 2  # no criterion
    assert run("forget", "ann", "--before", "yesterday", "-d", store)[0] == 2


def test_export_import_consent_erase_recreate(store: str, tmp_path: Path) -> None:
    run_json("interact", "dee", events_file(tmp_path, [{"kind": "like", "item_id": "c1"}]),
             "-d", store)  # fmt: skip
    code, out = run("export", "dee", "-d", store)
    assert code == 0 and "version 1" in out and "1 events" in out
    saved = tmp_path / "dee.json"
    data = run_json("export", "dee", "--out", str(saved), "-d", store)
    assert data["exists"] and data["events"][0]["item_id"] == "c1"
    assert json.loads(saved.read_text()) == data

    assert run_json("consent", "dee", "-d", store)["shared_statistics"] is True
    withdrawn = run_json("consent", "dee", "--no-shared-statistics", "-d", store)
    assert withdrawn == {"user_id": "dee", "exists": True, "shared_statistics": False,
                         "version": 2}  # fmt: skip
    assert run_json("consent", "dee", "-d", store)["shared_statistics"] is False
    assert run_json("consent", "nobody", "-d", store)["exists"] is False

    # the export is of version 1; the record is at 2: a conditional import is refused
    code, out = run("import", str(saved), "--if-version", "1", "-d", store)
    assert code == 2 and "version" in out
    imported = run_json("import", str(saved), "--if-version", "2", "-d", store)
    assert imported == {"user_id": "dee", "version": 3}
    assert run_json("consent", "dee", "-d", store)["shared_statistics"] is True  # as exported

    code, out = run("erase", "dee", "-d", store)
    assert code == 0 and json.loads(out)["existed"]
    like = events_file(tmp_path, [{"kind": "like", "item_id": "c2"}])
    code, out = run("interact", "dee", like, "-d", store)
    assert code == 2 and "erased" in out
    back = run_json("recreate", "dee", "--no-shared-statistics", "-d", store)
    assert back["generation"] == 1
    assert run_json("interact", "dee", like, "-d", store)["accepted"] == 1
    assert run_json("consent", "dee", "-d", store)["shared_statistics"] is False


def test_unreadable_files_exit_2(store: str, tmp_path: Path) -> None:
    assert run("interact", "eve", events_file(tmp_path, "{not json\n"), "-d", store)[0] == 2
    assert run("interact", "eve", events_file(tmp_path, {"no": "events"}), "-d", store)[0] == 2
    assert run("interact", "eve", str(tmp_path / "missing.json"), "-d", store)[0] == 2
    assert run("import", events_file(tmp_path, [1, 2]), "-d", store)[0] == 2
    assert run("recommend", "eve", "--filter", "[1]", "-d", store)[0] == 2
