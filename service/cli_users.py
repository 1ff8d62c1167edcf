"""The user commands of the ``ownrank`` CLI, each a thin call of the SDK (as
sqlite-utils' CLI mirrors its library): recommend, interact, export, import, forget,
consent, recreate. ``search --user`` (personalized search) is ``cli.search``. Every
command prints a table or a line, or JSON with ``--json``.

Defined on ``users_app``, whose commands the main app (``cli.py``) adds to its top
level; shared options and helpers come from ``cli_common``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..engine.times import parse_time
from .cli_common import DEFAULT_DATA_DIR, DataDir, JsonOut, ModelDir, console, fail, open_engine

# not an app of its own: ``cli`` adds these commands to ``ownrank``'s top level
users_app = typer.Typer()

UserArg = Annotated[str, typer.Argument(help="The user id.")]
FileArg = Annotated[Path, typer.Argument(help="A JSON file ('-' reads standard input).")]
Consent = Annotated[
    bool | None,
    typer.Option(
        "--shared-statistics/--no-shared-statistics",
        help="Consent to the shared statistics (popularity, co-likes), or withdraw it.",
    ),
]


def _emit(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _read_json(path: Path) -> Any:
    """A JSON document, or JSON Lines (a list of their values)."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise fail(f"{path}, line {number}: not JSON ({exc.msg})") from None
    return rows


def _json_object(raw: str | None, option: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise fail(f"{option} is not valid JSON: {exc.msg}") from None
    if not isinstance(parsed, dict):
        raise fail(f"{option} must be a JSON object")
    return parsed


def _time(raw: str | None, option: str) -> datetime | None:
    if raw is None:
        return None
    try:
        return parse_time(raw)
    except ValueError as exc:
        raise fail(f"{option}: {exc}") from None


@users_app.command()
def recommend(
    user_id: UserArg,
    n: Annotated[int, typer.Option("-n", min=1, max=1000, help="Number of results.")] = 10,
    filters: Annotated[
        str | None, typer.Option("--filter", "-f", help="Property filter as JSON.")
    ] = None,
    diversity: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="0 = by score, 1 = most diverse.")
    ] = 0.0,
    include_seen: Annotated[
        bool, typer.Option("--include-seen", help="Also items the user has events on.")
    ] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Recommendations for USER_ID, each with its explanation (Engine.recommend)."""
    parsed = _json_object(filters, "--filter")
    with open_engine(data_dir, model_dir) as engine:
        recs = engine.recommend(
            user_id, n, parsed, exclude_seen=not include_seen, diversity=diversity
        )
    if as_json:
        _emit(
            [
                {
                    "id": r.item_id,
                    "score": round(r.score, 6),
                    "title": r.item.title,
                    "explanation": r.explanation,
                }
                for r in recs
            ]
        )
        return
    table = Table()
    for column in ("#", "score", "id", "title", "why", "parts"):
        table.add_column(column, overflow="fold")
    for rank, rec in enumerate(recs, start=1):
        why = rec.explanation["reason"]
        if rec.explanation.get("because_of"):
            why += f" ({rec.explanation['because_of']})"
        parts = ", ".join(f"{k} {v:.3f}" for k, v in rec.explanation["parts"].items() if v)
        table.add_row(str(rank), f"{rec.score:.3f}", rec.item_id, rec.item.title, why, parts)
    console.print(table)


@users_app.command()
def interact(
    user_id: UserArg,
    file: FileArg,
    generation: Annotated[
        int | None,
        typer.Option(help="The user's generation the events are of (refused if erased since)."),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Record USER_ID's events from FILE: a JSON array, {"events": [...]} or JSON Lines."""
    data = _read_json(file)
    events = data.get("events") if isinstance(data, dict) else data
    if not isinstance(events, list):
        raise fail('the file holds no events: a JSON array, {"events": [...]} or JSON Lines')
    with open_engine(data_dir, model_dir) as engine:
        report = engine.interact(user_id, events, generation=generation)
    if as_json:
        _emit(dataclasses.asdict(report))
        return
    unknown = f" ({', '.join(report.unknown_items)})" if report.unknown_items else ""
    console.print(
        f"{report.accepted} accepted, {len(report.unknown_items)} unknown items{unknown}, "
        f"{report.duplicates} duplicates; version {report.version}"
    )


@users_app.command()
def export(
    user_id: UserArg,
    out: Annotated[Path | None, typer.Option("--out", help="Write the record here.")] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Everything stored about USER_ID (Engine.export); the record with --json or --out."""
    with open_engine(data_dir, model_dir) as engine:
        data = engine.export(user_id)
    if out is not None:
        out.write_text(json.dumps(data, indent=2) + "\n")
    if as_json:
        _emit(data)
        return
    if not data["exists"]:
        console.print(f"no record of {user_id}")
        return
    consent = data.get("consent", {}).get("shared_statistics")
    console.print(
        f"{user_id}: version {data['version']}, generation {data['generation']}, "
        f"{len(data.get('events', []))} events, {len(data.get('devices', []))} devices, "
        f"shared statistics {'on' if consent else 'off'}"
        + (f"; written to {out}" if out is not None else "; --json or --out for the record")
    )


@users_app.command("import")
def import_user(
    file: FileArg,
    if_version: Annotated[
        int | None,
        typer.Option(
            "--if-version",
            min=0,
            help="Write only if the stored record is at this version (0: no such user).",
        ),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Restore a user from an export in FILE, replacing the record (Engine.import_user)."""
    data = _read_json(file)
    if not isinstance(data, dict):
        raise fail("an export is a JSON object")
    with open_engine(data_dir, model_dir) as engine:
        version = engine.import_user(data, expected_version=if_version)
    if as_json:
        _emit({"user_id": data.get("user_id"), "version": version})
    else:
        console.print(f"imported {data.get('user_id')}: version {version}")


@users_app.command()
def forget(
    user_id: UserArg,
    item_ids: Annotated[
        list[str] | None, typer.Argument(help="Forget the events on these items.")
    ] = None,
    before: Annotated[
        str | None, typer.Option(help="Events before this ISO-8601 time (UTC if no offset).")
    ] = None,
    after: Annotated[
        str | None, typer.Option(help="Events at or after this ISO-8601 time.")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Forget USER_ID's events on ITEM_IDS and/or in a time range (Engine.forget)."""
    if not item_ids and before is None and after is None:
        raise fail("forget needs ITEM_IDS, --before or --after")
    start, end = _time(after, "--after"), _time(before, "--before")
    with open_engine(data_dir, model_dir) as engine:
        report = engine.forget(user_id, item_ids or None, before=end, after=start)
    if as_json:
        _emit(dataclasses.asdict(report))
        return
    console.print(
        f"{report.events_removed} events forgotten, {report.shared_units_subtracted} shared "
        f"units subtracted; version {report.version}"
    )


@users_app.command()
def consent(
    user_id: UserArg,
    shared_statistics: Consent = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Show USER_ID's consent to the shared statistics, or set it (Engine.set_consent)."""
    with open_engine(data_dir, model_dir) as engine:
        if shared_statistics is None:
            data = engine.export(user_id)
            exists, version = bool(data["exists"]), int(data.get("version", 0))
            default = engine.config.default_consent  # what a new user starts with
            current = bool(data.get("consent", {}).get("shared_statistics", default))
        else:
            version = engine.set_consent(user_id, shared_statistics)
            exists, current = True, shared_statistics
    if as_json:
        _emit(
            {"user_id": user_id, "exists": exists, "shared_statistics": current, "version": version}
        )
    else:
        note = "" if exists else " (no record yet: the default)"
        console.print(f"{user_id}: shared statistics {'on' if current else 'off'}{note}")


@users_app.command()
def recreate(
    user_id: UserArg,
    shared_statistics: Consent = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Bring an erased USER_ID back as a new generation (Engine.recreate_user)."""
    with open_engine(data_dir, model_dir) as engine:
        version = engine.recreate_user(user_id, shared_statistics=shared_statistics)
        generation = int(engine.export(user_id).get("generation", 0))
    if as_json:
        _emit({"user_id": user_id, "version": version, "generation": generation})
    else:
        console.print(f"{user_id} recreated: generation {generation}, version {version}")
