"""Reading catalog files (JSON Lines or CSV) into the catalog, record by record.

File schemas (documented in the README):

- JSON Lines: one object per line with the fields of ``Item``: ``id``
  (required), ``title``, ``body``, ``tags`` (list of strings), ``properties``
  (object), ``published_at`` (ISO-8601). Blank lines are skipped.
- CSV (UTF-8, header row): ``id``, ``title``, ``body``, ``tags`` (separated by
  ``|``), ``published_at``, ``properties`` (a JSON object). Any other column
  becomes a property: cells that read as a JSON number, ``true``, ``false`` or
  ``null`` keep that type, everything else is a string; empty cells are skipped.

Each bad record is rejected with its line number and reason; the good ones are
upserted in batches, each batch one transaction.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..engine.catalog import Catalog, validate_item
from ..engine.items import Item

FileFormat = Literal["jsonl", "csv"]
_CSV_ITEM_COLUMNS = {"id", "title", "body", "tags", "published_at", "properties"}


@dataclass
class Rejection:
    line: int
    item_id: str | None
    reason: str


@dataclass
class IngestSummary:
    records: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    superseded: int = 0  # records overridden by a later record with the same id in a batch
    embedded: int = 0
    rejected: list[Rejection] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "superseded": self.superseded,
            "embedded": self.embedded,
            "rejected": [r.__dict__ for r in self.rejected],
        }


def detect_format(path: Path) -> FileFormat:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    if suffix in (".csv", ".tsv"):
        return "csv"
    raise ValueError(f"cannot tell the format of {path.name}; pass --format jsonl|csv")


# A record is (line number, parsed object or None, error or None).
Record = tuple[int, dict[str, Any] | None, str | None]


def read_jsonl(path: Path) -> Iterator[Record]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, None, f"not valid UTF-8 at byte {exc.start}"
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                yield lineno, None, f"invalid JSON: {exc.msg} at column {exc.colno}"
                continue
            except RecursionError:
                yield lineno, None, "invalid JSON: nested too deeply to parse"
                continue
            if not isinstance(obj, dict):
                yield lineno, None, f"expected a JSON object, got {type(obj).__name__}"
                continue
            yield lineno, obj, None


def _reject_constant(name: str) -> Any:
    raise ValueError(name)


def _csv_cell(value: str) -> Any:
    """A JSON number, true, false or null keeps its type; anything else stays text."""
    try:
        parsed = json.loads(value, parse_constant=_reject_constant)
    except (ValueError, RecursionError):  # JSONDecodeError, NaN / Infinity, too deep
        return value
    if isinstance(parsed, float) and not math.isfinite(parsed):
        return value
    return parsed if parsed is None or isinstance(parsed, bool | int | float) else value


def read_csv(path: Path) -> Iterator[Record]:
    # utf-8-sig: spreadsheet exports often start with a byte-order mark
    with path.open("r", encoding="utf-8-sig", newline="") as fh:
        dialect = "excel-tab" if path.suffix.lower() == ".tsv" else "excel"
        reader = csv.reader(fh, dialect=dialect)
        header = next(reader, None)
        if not header or "id" not in header:
            yield 1, None, "the CSV header must have an 'id' column"
            return
        start = reader.line_num + 1
        for cells in reader:  # a quoted cell may span lines: report where the record starts
            lineno, start = start, reader.line_num + 1
            if not cells:
                continue  # blank line
            if len(cells) > len(header):
                yield lineno, None, "more cells than header columns"
                continue
            try:
                yield lineno, _csv_record(dict(zip(header, cells, strict=False))), None
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                yield lineno, None, f"properties: {exc}"


def _csv_record(row: dict[str, str]) -> dict[str, Any]:
    obj: dict[str, Any] = {"id": row.get("id") or ""}
    props: dict[str, Any] = {}
    for name, value in row.items():
        if value == "" or name == "id":
            continue
        if name == "tags":
            obj["tags"] = [t.strip() for t in value.split("|") if t.strip()]
        elif name == "properties":
            try:
                extra = json.loads(value)
            except RecursionError:
                raise ValueError("the properties column is nested too deeply") from None
            if not isinstance(extra, dict):
                raise ValueError("the properties column must hold a JSON object")
            props.update(extra)
        elif name in _CSV_ITEM_COLUMNS:
            obj[name] = value
        else:
            props[name] = _csv_cell(value)
    if props:
        obj["properties"] = props
    return obj


def read_records(path: Path, fmt: FileFormat) -> Iterator[Record]:
    return read_jsonl(path) if fmt == "jsonl" else read_csv(path)


def ingest_file(
    catalog: Catalog,
    path: Path,
    fmt: FileFormat | None = None,
    *,
    batch_size: int = 256,
    on_progress: Callable[[int], None] | None = None,
) -> IngestSummary:
    """Validate every record, upsert the valid ones in batches, report the rest."""
    summary = IngestSummary()
    batch: list[Item] = []

    def flush() -> None:
        if not batch:
            return
        report = catalog.upsert(batch)
        summary.added += len(report.added)
        summary.updated += len(report.updated)
        summary.unchanged += len(report.unchanged)
        summary.superseded += len(batch) - len({it.id for it in batch})
        summary.embedded += report.embedded
        if on_progress:
            on_progress(len(batch))
        batch.clear()

    for lineno, obj, error in read_records(path, fmt or detect_format(path)):
        summary.records += 1
        if error is None and obj is not None:
            try:
                batch.append(validate_item(obj))
            except ValueError as exc:
                error = str(exc)
        if error is not None:
            raw_id = obj.get("id") if obj else None
            summary.rejected.append(
                Rejection(lineno, raw_id if isinstance(raw_id, str) else None, error)
            )
            if on_progress:
                on_progress(1)
        if len(batch) >= batch_size:
            flush()
    flush()
    return summary
