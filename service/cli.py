"""The ``ownrank`` command line: ingest, search, similar, info, delete, reindex, demo,
serve (the HTTP service) and token (mint a user token); the user commands (recommend,
interact, export, import, forget, consent, recreate) are in ``cli_users``, the erasure
commands (erase, audit, verify-receipt, backup, restore, compact, key rotation) in
``cli_erasure``.

Every command works on one data directory (``--data-dir``, or the
``OWNRANK_DATA_DIR`` environment variable, default ``./ownrank-data``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..demo import CATALOG_PATH
from ..engine.catalog import Hit
from ..engine.engine import Engine
from ..engine.events import RatingScale
from ..errors import OwnrankError
from .cli_common import (
    DEFAULT_DATA_DIR,
    DataDir,
    JsonOut,
    ModelDir,
    Threads,
    console,
    err_console,
    fail,
    open_engine,
)
from .cli_erasure import erasure_app
from .cli_users import users_app
from .ingest import FileFormat, IngestSummary, detect_format, ingest_file, read_records

app = typer.Typer(
    help="ownrank: personalization that can truly forget.",
    no_args_is_help=True,
    add_completion=False,
)

FilterOpt = Annotated[
    str | None,
    typer.Option("--filter", "-f", help='Property filter as JSON, e.g. \'{"topic": "jazz"}\'.'),
]
NOpt = Annotated[int, typer.Option("-n", min=1, max=1000, help="Number of results.")]
ScaleOpt = Annotated[
    str | None,
    typer.Option(
        "--rating-scale",
        envvar="OWNRANK_RATING_SCALE",
        help="Values a rating may take, LOW-HIGH or LOW-HIGH/STEP (e.g. 0.5-5/0.5): recorded "
        "when the store is created (default 1-5); a store refuses to open with another.",
    ),
]


def _rating_scale(raw: str | None) -> RatingScale | None:
    if raw is None:
        return None
    try:
        return RatingScale.parse(raw)
    except ValueError as exc:
        raise fail(f"--rating-scale: {exc}") from None


def _parse_filter(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        parsed = json.loads(raw)
    except json.JSONDecodeError as exc:
        err_console.print(f"[red]error:[/red] --filter is not valid JSON: {exc.msg}")
        raise typer.Exit(2) from None
    if not isinstance(parsed, dict):
        err_console.print("[red]error:[/red] --filter must be a JSON object")
        raise typer.Exit(2)
    return parsed


def _print_hits(hits: list[Hit], as_json: bool) -> None:
    if as_json:
        rows = [
            {
                "id": h.item_id,
                "score": round(h.score, 6),
                "title": h.item.title,
                "properties": h.item.properties,
            }
            for h in hits
        ]
        console.print_json(json.dumps(rows))
        return
    table = Table(show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id")
    table.add_column("title")
    table.add_column("properties", overflow="fold")
    for rank, hit in enumerate(hits, start=1):
        props = ", ".join(f"{k}={v}" for k, v in list(hit.item.properties.items())[:3])
        table.add_row(str(rank), f"{hit.score:.3f}", hit.item_id, hit.item.title, props)
    console.print(table)


def _print_summary(summary: IngestSummary, as_json: bool, show: int) -> None:
    if as_json:
        console.print_json(json.dumps(summary.as_dict()))
        return
    console.print(
        f"[bold]{summary.records}[/bold] records: "
        f"[green]{summary.added} added[/green], [cyan]{summary.updated} updated[/cyan], "
        f"{summary.unchanged} unchanged, "
        f"{'[red]' if summary.rejected else ''}{len(summary.rejected)} rejected"
        f"{'[/red]' if summary.rejected else ''}"
        + (f", {summary.superseded} superseded by a later duplicate" if summary.superseded else "")
        + f" ({summary.embedded} embedded)"
    )
    for rej in summary.rejected[:show]:
        who = f" {rej.item_id}" if rej.item_id else ""
        console.print(f"  [red]rejected[/red] line {rej.line}{who}: {rej.reason}", markup=True)
    if len(summary.rejected) > show:
        console.print(f"  ... and {len(summary.rejected) - show} more (use --show-rejected N)")


@app.command()
def ingest(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    fmt: Annotated[
        str | None, typer.Option("--format", help="jsonl or csv (default: from the suffix).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, max=5000)] = 256,
    threads: Threads = 1,
    show_rejected: Annotated[int, typer.Option(help="Rejections to list.")] = 20,
    rating_scale: ScaleOpt = None,
    as_json: JsonOut = False,
) -> None:
    """Upsert the items of a JSON Lines or CSV file (exit 1 if any record was rejected)."""
    try:
        file_format: FileFormat = detect_format(file) if fmt is None else _checked_format(fmt)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    scale = _rating_scale(rating_scale)
    total = sum(1 for _ in read_records(file, file_format))
    with open_engine(data_dir, model_dir, threads, scale) as engine:
        progress = Progress(
            TextColumn("[bold]ingest[/bold]"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            disable=as_json or not sys.stderr.isatty(),
        )
        with progress:
            task = progress.add_task("ingest", total=total)
            summary = ingest_file(
                engine.catalog,
                file,
                file_format,
                batch_size=batch_size,
                on_progress=lambda k: progress.advance(task, k),
            )
        engine.save_index()
    _print_summary(summary, as_json, show_rejected)
    if summary.rejected:
        raise typer.Exit(1)


def _checked_format(fmt: str) -> FileFormat:
    if fmt == "jsonl":
        return "jsonl"
    if fmt == "csv":
        return "csv"
    raise ValueError(f"unknown format {fmt!r} (use jsonl or csv)")


@app.command()
def search(
    text: str,
    n: NOpt = 10,
    filters: FilterOpt = None,
    user: Annotated[
        str | None, typer.Option("--user", "-u", help="Personalize for this user.")
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Semantic search over the catalog; with --user, re-ranked by that user's model."""
    parsed = _parse_filter(filters)
    with open_engine(data_dir, model_dir) as engine:
        _print_hits(engine.search(text, n, parsed, user_id=user), as_json)


@app.command()
def similar(
    item_id: str,
    n: NOpt = 10,
    filters: FilterOpt = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Items most similar to ITEM_ID."""
    parsed = _parse_filter(filters)
    with open_engine(data_dir, model_dir) as engine:
        _print_hits(engine.similar(item_id, n, parsed), as_json)


@app.command()
def delete(
    item_ids: list[str],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
) -> None:
    """Delete items from the catalog."""
    with open_engine(data_dir, model_dir) as engine:
        report = engine.catalog.delete(item_ids)
    console.print(f"{len(report.deleted)} deleted, {len(report.missing)} not found")


@app.command()
def info(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    as_json: JsonOut = False,
) -> None:
    """Counts, model fingerprint, index type and sizes of the store."""
    with open_engine(data_dir, model_dir) as engine:
        facts = engine.info()
    if as_json:
        console.print_json(json.dumps(facts))
        return
    table = Table(show_header=False)
    table.add_column("fact")
    table.add_column("value", overflow="fold")
    table.add_row("data dir", facts["data_dir"])
    table.add_row("items", str(facts["items"]))
    table.add_row("model fingerprint", facts["model_fingerprint"])
    table.add_row("dimension", str(facts["dimension"]))
    table.add_row("rating scale", str(RatingScale.model_validate(facts["rating_scale"])))
    idx = facts["index"]
    table.add_row(
        "index", f"{idx['type']} ({idx['vectors']} vectors, {idx['tombstones']} tombstones)"
    )
    table.add_row("index file", _size(idx["file_bytes"]))
    table.add_row(
        "LMDB file",
        f"{_size(facts['lmdb']['file_bytes'])} ({_size(facts['lmdb']['used_bytes'])} used)",
    )
    table.add_row("catalog seq", str(facts["catalog_seq"]))
    console.print(table)
    # written by older versions, served without the offending properties: for the
    # operator to fix (re-upsert or delete); a line of its own, so that it greps well
    bad = facts["nonconforming_items"]
    listed = ", ".join(bad["ids"]) + (", ..." if bad["count"] > len(bad["ids"]) else "")
    console.print(
        f"items with properties over the nesting limit: {bad['count']}"
        + (f" ({listed})" if bad["count"] else ""),
        soft_wrap=True,
        markup=False,
        highlight=False,
    )


@app.command()
def reindex(data_dir: DataDir = DEFAULT_DATA_DIR, model_dir: ModelDir = None) -> None:
    """Rebuild the catalog index from LMDB (drops HNSW tombstones, retrains IVF)."""
    with open_engine(data_dir, model_dir) as engine:
        engine.rebuild_index()
        idx = engine.info(check_items=False)["index"]
    console.print(f"rebuilt {idx['type']} index with {idx['vectors']} vectors")


@app.command()
def neighbours(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Build every list from scratch.")
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Compare the lists with a build from scratch (writes nothing)."
        ),
    ] = False,
    as_json: JsonOut = False,
) -> None:
    """Bring the items' content-neighbour lists up to date (waiting for it), or rebuild
    or check them; print where they stand."""
    with open_engine(data_dir, model_dir) as engine:
        lists = engine.catalog.neighbours
        started = time.perf_counter()
        if rebuild:
            lists.rebuild()
        elif not check:
            lists.update()
        seconds = time.perf_counter() - started
        wrong = lists.check() if check else None
        status = lists.status()
    facts: dict[str, Any] = {
        "k": status.k,
        "lists": status.lists,
        "current": status.current,
        "lists_seq": status.seq,
        "catalog_seq": status.catalog_seq,
        "seconds": round(seconds, 3),
    }
    if wrong is not None:
        facts["differing_rows"] = len(wrong)
    if as_json:
        console.print_json(json.dumps(facts))
    else:
        state = "current" if status.current else f"behind (at {status.seq} of {status.catalog_seq})"
        console.print(f"{status.lists} neighbour lists of {status.k}, {state}; {seconds:.2f} s")
        if wrong is not None:
            console.print(f"{len(wrong)} rows differ from a build from scratch")
    if wrong:
        raise typer.Exit(1)


DEMO_QUERIES = [
    ("how do I fix a dripping tap", None),
    ("stars and galaxies", None),
    ("improvisation", None),
    ("opening", {"topic": "chess"}),
    ("saving money", {"reading_minutes": {"$lte": 5}}),
]


@app.command()
def demo(
    data_dir: Annotated[Path, typer.Option("--data-dir", "-d", envvar="OWNRANK_DEMO_DIR")] = Path(
        ".demo-data"
    ),
    interactive: Annotated[
        bool | None, typer.Option(help="Prompt for queries (default: when stdin is a terminal).")
    ] = None,
) -> None:
    """Ingest the bundled demo catalog and search it."""
    logging.basicConfig(level=logging.WARNING)
    with open_engine(data_dir, None) as engine:
        summary = ingest_file(engine.catalog, CATALOG_PATH, "jsonl")
        engine.save_index()
        console.print(
            f"demo catalog: {engine.catalog.count()} items in {data_dir} "
            f"({summary.added} added, {summary.updated} updated, {summary.unchanged} unchanged)"
        )
        for text, filters in DEMO_QUERIES:
            shown = f" filters={json.dumps(filters)}" if filters else ""
            console.rule(f"[bold]search[/bold] {text!r}{shown}")
            _print_hits(engine.search(text, 5, filters), as_json=False)
        _demo_personalization(engine)
        if interactive is None:
            interactive = sys.stdin.isatty()
        while interactive:
            try:
                text = console.input("[bold]query[/bold] (empty to quit): ").strip()
            except EOFError:
                break
            if not text:
                break
            _print_hits(engine.search(text, 5), as_json=False)


def _demo_personalization(engine: Engine) -> None:
    """Recommendations for two readers with opposite tastes (stateless: nothing stored)."""
    for topic in ("astronomy", "cooking"):
        liked = [h.item_id for h in engine.search(topic, 4, filters={"topic": topic})]
        history = [{"kind": "like", "item_id": item_id} for item_id in liked]
        console.rule(f"[bold]recommend_from_history[/bold] for a reader who liked 4 {topic} items")
        recs = engine.recommend_from_history(history, 5, diversity=0.2)
        table = Table()
        for column in ("#", "score", "id", "title", "because of"):
            table.add_column(column)
        for rank, rec in enumerate(recs, start=1):
            source = rec.explanation.get("because_of")
            because = engine.catalog.get(source).title if source else rec.explanation["reason"]
            table.add_row(str(rank), f"{rec.score:.2f}", rec.item_id, rec.item.title, because)
        console.print(table)


@app.command()
def serve(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    model_dir: ModelDir = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
    threads: Threads = 1,
    demo_mode: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="Load the demo catalog, print a key and a token, and serve the demo page at / "
            "(shared statistics: collaborative unless chosen).",
        ),
    ] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
    rating_scale: ScaleOpt = None,
    shared_statistics: Annotated[
        str | None,
        typer.Option(
            help="none, popularity or collaborative (default: the store's; "
            "OWNRANK_SHARED_STATISTICS). A change rebuilds the shared statistics on open."
        ),
    ] = None,
) -> None:
    """Run the HTTP service (FastAPI on uvicorn) over the data directory."""
    from .server import prepare
    from .server import serve as run_server
    from .settings import ServiceSettings

    scale = _rating_scale(rating_scale)
    chosen: dict[str, str] = {} if scale is None else {"rating_scale": str(scale)}
    if shared_statistics is not None:
        chosen["shared_statistics"] = shared_statistics
    elif demo_mode and not os.environ.get("OWNRANK_SHARED_STATISTICS"):
        chosen["shared_statistics"] = "collaborative"  # the demo page shows that part too
    try:  # options over OWNRANK_* variables, validated together
        settings = ServiceSettings.model_validate(
            {
                **ServiceSettings.from_env().model_dump(),
                "data_dir": data_dir,
                "model_dir": model_dir,
                "encoder_threads": threads,
                **chosen,
            }
        )
    except ValidationError as exc:
        raise fail(f"invalid setting: {exc.errors()[0]['msg']}") from None
    if demo_mode:
        from .demo_setup import load_demo

        logging.basicConfig(level=logging.WARNING)
        err_console.print(f"loading the demo catalog into {data_dir} ...")
        try:
            demo_facts = load_demo(settings)
        except OwnrankError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
    prepared = prepare(settings)
    url = f"http://{host if host not in ('0.0.0.0', '::') else '127.0.0.1'}:{port}"
    if prepared.generated_key_file is not None:
        err_console.print(
            f"no admin key was configured: wrote one to {prepared.generated_key_file}"
        )
    if demo_mode:
        from .demo_setup import DEMO_TOKEN_TTL, DEMO_USER, banner

        token_text, _claims = prepared.signer.mint(DEMO_USER, DEMO_TOKEN_TTL)
        typer.echo(f"\nownrank demo page: {url}/   (open it in a browser; docs/demo.md)")
        typer.echo(banner(url, settings.data_dir, demo_facts, prepared.admin_keys[0], token_text))
    from .demo_page import DEMO_ENV

    os.environ[DEMO_ENV] = "true" if demo_mode else "false"  # read by every worker
    run_server(settings, host=host, port=port, workers=workers, log_level=log_level)


@app.command()
def token(
    user_id: Annotated[str, typer.Argument(help="The user the token acts for.")],
    data_dir: DataDir = DEFAULT_DATA_DIR,
    ttl: Annotated[int, typer.Option("--ttl", min=60, help="Lifetime in seconds.")] = 86_400,
    as_json: JsonOut = False,
) -> None:
    """Mint a signed bearer token for USER_ID (the same tokens as POST /tokens)."""
    from ..engine.items import is_valid_item_id
    from .auth import load_signer
    from .settings import ServiceSettings

    settings = ServiceSettings.from_env().model_copy(update={"data_dir": data_dir})
    if not is_valid_item_id(user_id):
        err_console.print(
            "[red]error:[/red] a user id is 1-256 characters from A-Z a-z 0-9 . _ : @ ~ -"
        )
        raise typer.Exit(2)
    if ttl > settings.token_max_ttl_seconds:
        err_console.print(
            f"[red]error:[/red] --ttl may be at most {settings.token_max_ttl_seconds}"
        )
        raise typer.Exit(2)
    token_text, claims = load_signer(settings).mint(user_id, ttl)
    if as_json:
        console.print_json(
            json.dumps({"token": token_text, "user_id": user_id, "expires_at": claims.expires_at})
        )
    else:
        typer.echo(token_text)


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{nbytes} B"  # pragma: no cover


def main() -> None:  # pragma: no cover - console script entry
    app()


# The user commands (``cli_users``) and the erasure commands (``cli_erasure``): listed
# after the ones above.
app.registered_commands.extend(users_app.registered_commands)
app.registered_commands.extend(erasure_app.registered_commands)

__all__ = ["app", "main"]
