"""The one result format of every benchmark, and the one renderer of its tables.

A benchmark measures *rows*: one figure each, with its unit and the labels that say
under which conditions it was measured::

    {"metric": "recommend p99", "value": 8.1, "unit": "ms",
     "labels": {"items": 100000, "path": "plain"}}

and writes one JSON document (``Run.finish``)::

    {"format": "ownrank-bench/1", "benchmark": "engine_bench", "mode": "quick",
     "command": [...], "started_at": "...", "seconds": 93.1, "machine": {...},
     "params": {...}, "rows": [...], "tables": [...], "targets": [...],
     "notes": [...], "details": {...}}

``tables`` say how to show the rows (a pivot: one line per combination of the ``by``
labels, one column per value of ``columns``); ``targets`` say which row must be above
or below which bound. The same ``render`` turns a document into the terminal output
of the benchmark and into its section of ``bench/report.py``'s REPORT.md, so a
number is shown the same way wherever it appears, with its unit. ``details`` keeps
what is not a figure (a profile, a failure's text).

    python bench/harness.py bench/results/engine_bench.json   # print any result file
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import machine_info

FORMAT = "ownrank-bench/1"
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
Json = dict[str, Any]
Label = str | int | float | bool | None
Value = float | int | str | None

# Decimal places by unit; a unit not listed shows 3 significant figures.
DIGITS = {
    "ms": 2, "us": 1, "s": 1, "B": 0, "KiB": 1, "MiB": 1, "GiB": 2, "ratio": 2, "x": 2,
    "%": 1, "count": 0, "NDCG@10": 4, "recall": 3, "cosine": 4, "events/s": 0, "items/s": 0,
    "calls/s": 0, "texts/s": 0, "req/s": 0, "queries/s": 0,
}  # fmt: skip


class FromJson:
    """``from_json``: a dataclass back from its JSON form (absent fields: defaults)."""

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in doc.items() if k in names})


@dataclass(frozen=True)
class Row(FromJson):
    """One measured figure: what, how much, in which unit, under which conditions.
    ``low`` / ``high`` / ``runs`` are set where the value is a median over runs."""

    metric: str
    value: Value = None
    unit: str = ""
    labels: Mapping[str, Label] = field(default_factory=dict)
    low: float | None = None
    high: float | None = None
    runs: int | None = None

    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.metric, tuple(sorted((k, str(v)) for k, v in self.labels.items()))

    def matches(self, where: Mapping[str, Label]) -> bool:
        """True where every label in ``where`` has that value (``metric`` included)."""
        return all(
            (self.metric if k == "metric" else self.labels.get(k)) == v for k, v in where.items()
        )

    def to_json(self) -> Json:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


@dataclass(frozen=True)
class Table(FromJson):
    """How to show rows: those matching ``where`` (and, when given, only ``metrics``),
    one line per combination of the ``by`` labels, one column per distinct value of
    the ``columns`` label (``"metric"``: one column per metric)."""

    title: str
    by: Sequence[str]
    columns: str = "metric"
    where: Mapping[str, Label] = field(default_factory=dict)
    metrics: Sequence[str] | None = None
    plot: bool = False  # the report also draws it as a bar chart


@dataclass(frozen=True)
class Target(FromJson):
    """A promise about one row: ``value op bound``, e.g. recommend p99 <= 10 ms."""

    name: str
    metric: str
    op: str  # "<=" or ">="
    bound: float
    where: Mapping[str, Label] = field(default_factory=dict)
    source: str = ""  # where the promise was made, e.g. "issue 5"

    def verdict(self, rows: Sequence[Row]) -> tuple[Row | None, bool | None]:
        """The row the target is about (the first match) and whether it holds
        (None: not measured)."""
        row = next((r for r in rows if r.matches({"metric": self.metric, **self.where})), None)
        if row is None or not isinstance(row.value, int | float):
            return row, None
        return row, row.value <= self.bound if self.op == "<=" else row.value >= self.bound


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (linear interpolation, as numpy's default).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    """
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def git_state() -> Json:
    """The commit measured and whether the tree had changes (a figure from a dirty
    tree says so)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    head = git("rev-parse", "--short", "HEAD")
    return {"head": head, "dirty": bool(git("status", "--porcelain"))}


class Run:
    """One run of one benchmark: collects rows, tables and targets, then prints the
    tables and writes the result file.

    >>> run = Run("example", {"items": 10}, quick=True)
    >>> run.latency("recommend", [0.001, 0.002, 0.003], items=10)
    >>> run.table("Latency", by=["items"])
    >>> run.target("recommend p99", "recommend p99", "<=", 10.0)
    >>> print(render(run.document()))  # doctest: +NORMALIZE_WHITESPACE
    ### Latency
    | items | recommend calls (count) | recommend p50 (ms) | recommend p99 (ms) |
    |---|---|---|---|
    | 10 | 3 | 2.00 | 2.98 |
    <BLANKLINE>
    | target | bound | measured | verdict |
    |---|---|---|---|
    | recommend p99 | <= 10 ms | 2.98 ms | ok |
    """

    def __init__(self, benchmark: str, params: Mapping[str, Any], *, quick: bool) -> None:
        self.benchmark = benchmark
        self.params = dict(params)
        self.quick = quick
        self.rows: list[Row] = []
        self.tables: list[Table] = []
        self.targets: list[Target] = []
        self.notes: list[str] = []
        self.details: Json = {}
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.machine = machine_info.machine()
        self._start = time.perf_counter()

    def add(self, metric: str, value: Value, unit: str, **labels: Label) -> None:
        """One figure (a float is kept with 6 significant digits)."""
        if isinstance(value, float):
            value = float(f"{value:.6g}")
        self.rows.append(Row(metric, value, unit, labels))

    def latency(
        self, name: str, seconds: Sequence[float], *, mean_max: bool = False, **labels: Label
    ) -> None:
        """``<name> calls``, ``<name> p50`` and ``<name> p99`` (ms) of timed calls; with
        ``mean_max``, also ``<name> mean`` and ``<name> max``."""
        ms = [s * 1e3 for s in seconds]
        self.add(f"{name} calls", len(ms), "count", **labels)
        if ms:
            self.add(f"{name} p50", percentile(ms, 50), "ms", **labels)
            self.add(f"{name} p99", percentile(ms, 99), "ms", **labels)
        if ms and mean_max:
            self.add(f"{name} mean", sum(ms) / len(ms), "ms", **labels)
            self.add(f"{name} max", max(ms), "ms", **labels)

    def table(
        self,
        title: str,
        by: Sequence[str],
        columns: str = "metric",
        where: Mapping[str, Label] | None = None,
        metrics: Sequence[str] | None = None,
        plot: bool = False,
    ) -> None:
        self.tables.append(Table(title, list(by), columns, dict(where or {}), metrics, plot))

    def target(
        self,
        name: str,
        metric: str,
        op: str,
        bound: float,
        where: Mapping[str, Label] | None = None,
        source: str = "",
    ) -> None:
        if op not in ("<=", ">="):
            raise ValueError(f"op must be <= or >=, not {op!r}")
        self.targets.append(Target(name, metric, op, bound, dict(where or {}), source))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def document(self) -> Json:
        return {
            "format": FORMAT,
            "benchmark": self.benchmark,
            "mode": "quick" if self.quick else "full",
            "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
            "started_at": self.started_at,
            "seconds": round(time.perf_counter() - self._start, 1),
            "machine": self.machine,
            "loadavg_at_end": machine_info.machine()["loadavg_at_start"],
            "git": git_state(),
            "params": self.params,
            "rows": [r.to_json() for r in self.rows],
            "tables": [asdict(t) for t in self.tables],
            "targets": [asdict(t) for t in self.targets],
            "notes": self.notes,
            "details": self.details,
        }

    def finish(self, out: Path | None) -> Json:
        """Print the tables, and write the document to ``out`` (when given)."""
        doc = self.document()
        print(render(doc), flush=True)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
            print(f"wrote {out} ({doc['seconds']:.0f} s)", flush=True)
        return doc


def default_out(stem: str, quick: bool) -> Path:
    """``bench/results/<stem>.json``, quick runs ``<stem>_quick.json``."""
    return RESULTS / (f"{stem}_quick.json" if quick else f"{stem}.json")


# -- reading and merging ------------------------------------------------------------------


def load(path: Path) -> Json:
    """A result document; refuses files in another format (an old benchmark's)."""
    doc: Json = json.loads(path.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: not an {FORMAT} result file")
    return doc


def rows_of(doc: Mapping[str, Any]) -> list[Row]:
    return [Row.from_json(r) for r in doc.get("rows", [])]


def merge(docs: Sequence[Json]) -> Json:
    """Several runs of one benchmark as one document: each numeric row becomes the
    median over the runs that measured it, with ``low`` / ``high`` / ``runs``."""
    if len(docs) == 1:
        return docs[0]
    groups: dict[Any, list[Row]] = {}
    for doc in docs:
        for row in rows_of(doc):
            groups.setdefault(row.key(), []).append(row)
    merged: list[Row] = []
    for rows in groups.values():
        numbers = [float(r.value) for r in rows if isinstance(r.value, int | float)]
        if len(numbers) != len(rows):  # text rows: the first run's
            merged.append(rows[0])
            continue
        merged.append(
            Row(rows[0].metric, statistics.median(numbers), rows[0].unit, rows[0].labels,
                min(numbers), max(numbers), len(numbers))
        )  # fmt: skip
    return {**docs[0], "rows": [r.to_json() for r in merged], "runs": len(docs)}


# -- rendering ----------------------------------------------------------------------------


def fmt(value: Value, unit: str) -> str:
    """A value as the tables show it.

    >>> fmt(1234.5, "events/s"), fmt(0.14371, "NDCG@10"), fmt(8.126, "ms"), fmt(None, "ms")
    ('1,234', '0.1437', '8.13', '-')
    """
    if value is None:
        return "-"
    if isinstance(value, bool | str):
        return str(value)
    digits = DIGITS.get(unit)
    if digits is None:
        return f"{value:.3g}" if isinstance(value, float) else f"{value:,}"
    return f"{value:,.{digits}f}"


def cell(row: Row) -> str:
    text = fmt(row.value, row.unit)
    if row.runs and row.low is not None and row.high is not None and row.low != row.high:
        text += f" ({fmt(row.low, row.unit)} to {fmt(row.high, row.unit)})"
    return text


def markdown_table(header: Sequence[str], lines: Iterable[Sequence[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(line) + " |" for line in lines]
    return "\n".join(out)


def pivot(rows: Sequence[Row], table: Table) -> str:
    """One table: lines by ``table.by``, columns by ``table.columns``; a column's
    header carries the unit its cells share."""
    chosen = [
        r for r in rows
        if r.matches(table.where) and (table.metrics is None or r.metric in table.metrics)
    ]  # fmt: skip
    if not chosen:
        return f"### {table.title}\n(no rows)"

    def column_of(r: Row) -> str:
        return r.metric if table.columns == "metric" else str(r.labels.get(table.columns))

    columns = list(dict.fromkeys(column_of(r) for r in chosen))
    if table.columns == "metric" and table.metrics is not None:
        columns = [m for m in table.metrics if m in columns]
    units: dict[str, set[str]] = {c: set() for c in columns}
    lines: dict[tuple[str, ...], dict[str, Row]] = {}
    for r in chosen:
        line = tuple(str(r.labels.get(k, "")) for k in table.by)
        lines.setdefault(line, {})[column_of(r)] = r
        units[column_of(r)].add(r.unit)

    def head(c: str) -> str:
        shared = units[c].pop() if len(units[c]) == 1 else ""
        return f"{c} ({shared})" if shared and shared != c else c  # "NDCG@10", not twice

    header = [*table.by, *(head(c) for c in columns)]
    body = [
        [*line, *(cell(cells[c]) if c in cells else "-" for c in columns)]
        for line, cells in lines.items()
    ]
    return f"### {table.title}\n" + markdown_table(header, body)


def flat(rows: Sequence[Row]) -> str:
    """Every row on its own line (a document without tables)."""
    body = [
        [r.metric, ", ".join(f"{k}={v}" for k, v in r.labels.items()), cell(r), r.unit]
        for r in rows
    ]
    return "### Figures\n" + markdown_table(["metric", "labels", "value", "unit"], body)


def target_lines(doc: Mapping[str, Any]) -> list[list[str]]:
    """[target, bound, measured, verdict] for each of the document's targets."""
    rows = rows_of(doc)
    out = []
    for t in (Target.from_json(x) for x in doc.get("targets", [])):
        row, ok = t.verdict(rows)
        unit = row.unit if row else ""
        out.append([
            t.name,
            f"{t.op} {t.bound:,g} {unit}".strip(),
            "-" if row is None else f"{cell(row)} {unit}".strip(),
            "not measured" if ok is None else ("ok" if ok else "MISSES"),
        ])  # fmt: skip
    return out


def render(doc: Mapping[str, Any]) -> str:
    """A document's tables, then its targets and notes, as markdown (the terminal
    output of the benchmark and its section of the report are this text)."""
    rows = rows_of(doc)
    parts = [pivot(rows, Table.from_json(t)) for t in doc.get("tables", [])]
    if not parts:
        parts.append(flat(rows))
    targets = target_lines(doc)
    if targets:
        parts.append(markdown_table(["target", "bound", "measured", "verdict"], targets))
    if doc.get("notes"):
        parts.append("\n".join(f"- {n}" for n in doc["notes"]))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print benchmark result files.")
    parser.add_argument("files", nargs="+", type=Path)
    args = parser.parse_args(argv)
    for path in args.files:
        print(f"## {path.name}\n\n{render(load(path))}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
