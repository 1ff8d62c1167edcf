"""The benchmark report: REPORT.md, headline.md and PNG plots from bench/results/*.json.

    python bench/report.py [--quick] [--results-dir DIR]

Reads whatever result files exist (``bench/run_all.py`` writes them all), says
which are missing, and never shows a number that is not in one of them (ratios
and medians are computed from them, and each table names its file). A benchmark
that ran several times (``<stem>_r<i>.json``) is shown as the median over the
runs with the min-max beside it. In quick mode, ``<stem>_quick.json`` files are
read; where only the full-mode file exists it is used and marked as such.

Writes ``REPORT.md`` (quick: ``REPORT_quick.md``), ``headline.md`` (quick:
``headline_quick.md``: the targets table the README quotes) and plots under
``plots/``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

Json = dict[str, Any]

RESULTS = Path(__file__).resolve().parent / "results"
OK, MISSES, NOT_MEASURED = "ok", "MISSES", "not measured"

# Issue 5's targets (the figures are measured; these are the promises).
TARGET_CHRONO20_NDCG = 0.090
TARGET_COLD20_NDCG = 0.22
TARGET_RECOMMEND_P99_MS = 10.0
TARGET_INGEST_EVENTS_PER_S = 5_000.0
TARGET_ERASE_P99_MS = 5.0
TARGET_MEDIAN_RECORD_BYTES = 4_080.0
TARGET_ENCODER_SHORT_PER_S = 600.0
TARGET_SERVICE_PER_S = 1_000.0
TARGET_SERVICE_P99_MS = 50.0
TARGET_SEALING_COST = 0.10
OWNRANK_HEADLINE_MODEL = "ownrank +popularity"
CF_ON_COLD = "new items unknown"  # run_peers' note on collaborative rows of cold20

# key -> (file stem, repeated by run_all)
SOURCES: dict[str, tuple[str, bool]] = {
    "run_all": ("run_all", False),
    "quality": ("quality", False),
    "peers": ("peers", False),
    "erasure": ("erasure_vs_retrain", False),
    "engine": ("engine_bench", True),
    "engine_noencrypt": ("engine_bench_noencrypt", False),
    "scale": ("scale_bench", False),
    "index": ("index_bench", True),
    "encoder": ("encoder_bench", True),
    "service": ("service_bench", False),
    "catalog": ("catalog_bench", False),
}
RUN_ALL_NAME = {  # report source -> run_all's benchmark name (to say how to produce it)
    "erasure": "erasure_vs_retrain",
}


# -- loading --------------------------------------------------------------------------------


def base_name(stem: str, quick: bool) -> str:
    """File stem of a benchmark's results in a mode (engine_bench --no-encrypt's quick
    file is ``engine_bench_quick_noencrypt``)."""
    if not quick:
        return stem
    if stem.endswith("_noencrypt"):
        return stem.replace("_noencrypt", "_quick_noencrypt")
    return f"{stem}_quick"


def find_files(results: Path, base: str, repeatable: bool) -> list[Path]:
    """``<base>_r<i>.json`` in repeat order if there are any, else ``<base>.json``."""
    if repeatable:
        pattern = re.compile(rf"^{re.escape(base)}_r(\d+)\.json$")
        found = []
        for path in results.glob(f"{base}_r*.json"):
            match = pattern.match(path.name)
            if match:
                found.append((int(match.group(1)), path))
        if found:
            return [p for _n, p in sorted(found)]
    path = results / f"{base}.json"
    return [path] if path.exists() else []


def mode_of(doc: Json) -> str | None:
    """``quick`` / ``full`` as the file itself records it (None if it does not say)."""
    flag = doc.get("quick", dig(doc, "args", "quick"))
    return None if flag is None else ("quick" if flag else "full")


@dataclass
class Source:
    """The JSON document(s) of one benchmark (several when it was repeated)."""

    key: str
    files: list[Path]
    docs: list[Json]
    notes: list[str] = field(default_factory=list)
    flag: str = ""  # why these files may not be of the report's mode

    @property
    def doc(self) -> Json:
        return self.docs[0]

    def cite(self) -> str:
        names = [p.name for p in self.files]
        if len(names) > 3:
            text = f"`{names[0]}` ... `{names[-1]}` ({len(names)} runs)"
        else:
            text = ", ".join(f"`{n}`" for n in names)
        return text + (f" ({self.flag})" if self.flag else "")


@dataclass
class Results:
    """Every source found for one report mode, and what is missing."""

    directory: Path
    quick: bool
    sources: dict[str, Source]
    missing: dict[str, str]  # key -> expected file name

    def get(self, key: str) -> Source | None:
        return self.sources.get(key)


def load_results(results: Path, quick: bool) -> Results:
    sources: dict[str, Source] = {}
    missing: dict[str, str] = {}
    mode = "quick" if quick else "full"
    for key, (stem, repeatable) in SOURCES.items():
        base = base_name(stem, quick)
        files = find_files(results, base, repeatable)
        notes: list[str] = []
        if not files and quick and key != "run_all":
            files = find_files(results, stem, repeatable)
            if files:
                notes.append(f"no `{base}.json`: the file without `_quick` is shown")
        if not files:
            missing[key] = f"{base}.json"
            continue
        docs: list[Json] = []
        for path in files:
            try:
                docs.append(json.loads(path.read_text()))
            except ValueError as exc:
                notes.append(f"`{path.name}` is not valid JSON ({exc}); left out")
        pairs = [(p, d) for p, d in zip(files, docs, strict=False) if isinstance(d, dict)]
        if not pairs:
            missing[key] = f"{base}.json"
            continue
        src = Source(key, [p for p, _ in pairs], [d for _, d in pairs], notes)
        recorded = {m for m in (mode_of(d) for d in src.docs) if m}
        if recorded and recorded != {mode}:
            src.notes.append(f"recorded as a {'/'.join(sorted(recorded))}-mode run")
            src.flag = f"a {'/'.join(sorted(recorded))}-mode run"
        elif notes and not recorded:
            src.flag = f"no {mode}-mode file: this one"
        sources[key] = src
    return Results(results, quick, sources, missing)


# -- numbers --------------------------------------------------------------------------------


def dig(doc: Any, *keys: str | int) -> Any:
    """``doc[k1][k2]...``, or None where a key is missing."""
    for key in keys:
        in_dict = isinstance(doc, dict) and key in doc
        in_list = isinstance(doc, list) and isinstance(key, int) and -len(doc) <= key < len(doc)
        if not (in_dict or in_list):
            return None
        doc = doc[key]
    return doc


def as_float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass(frozen=True)
class Stat:
    """A figure over repeated runs: median, with min-max and the number of runs."""

    values: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.values))

    @property
    def lo(self) -> float:
        return min(self.values)

    @property
    def hi(self) -> float:
        return max(self.values)

    @property
    def n(self) -> int:
        return len(self.values)

    def show(self, digits: int = 2) -> str:
        text = num(self.median, digits)
        if self.n > 1:
            text += f" [{num(self.lo, digits)}-{num(self.hi, digits)}, {self.n} runs]"
        return text


def stat(values: Iterable[Any]) -> Stat | None:
    floats = tuple(f for f in (as_float(v) for v in values) if f is not None)
    return Stat(floats) if floats else None


def over(src: Source | None, *keys: str | int) -> Stat | None:
    """One figure of every run of ``src``."""
    return None if src is None else stat(dig(d, *keys) for d in src.docs)


def num(x: float | None, digits: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def show(s: Stat | None, digits: int = 2) -> str:
    return "-" if s is None else s.show(digits)


def pair(a: Stat | None, b: Stat | None, digits: int = 2) -> str:
    """``p50 / p99`` (each with its spread over runs)."""
    return f"{show(a, digits)} / {show(b, digits)}"


def p50_p99(doc: Any, *keys: str) -> str:
    """``p50 / p99`` of the latency block at ``keys`` (one run)."""
    return (
        f"{num(as_float(dig(doc, *keys, 'p50_ms')))} / {num(as_float(dig(doc, *keys, 'p99_ms')))}"
    )


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


# -- headline -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One target against what was measured."""

    metric: str
    target: str
    measured: str
    verdict: str
    source: str


def _verdict(ok: bool | None) -> str:
    return NOT_MEASURED if ok is None else (OK if ok else MISSES)


def _missing(metric: str, target: str, results: Results, key: str, why: str = "") -> Check:
    src = results.get(key)
    if not why:
        why = (
            f"not in {src.cite()} (older run?)"
            if src is not None
            else f"`{results.missing.get(key, SOURCES[key][0] + '.json')}` missing"
        )
    return Check(metric, target, why, NOT_MEASURED, "-")


def _scale_note(src: Source) -> str:
    items = dig(src.doc, "args", "items")
    users = dig(src.doc, "args", "users")
    if items is None:
        return ""
    note = f"{items:,} items, {users:,} users" if users else f"{items:,} items"
    return note + ("" if items == 100_000 else "; the target is stated at 100k items")


def quality_check(results: Results, protocol: str, threshold: float) -> Check:
    metric = f"quality: ml-1m-half {protocol} NDCG@10, ownrank + popularity"
    target = f">= {threshold:.3f}"
    src = results.get("quality")
    row = dig(src.doc, f"ml-1m-half/{protocol}", OWNRANK_HEADLINE_MODEL) if src else None
    value = as_float(dig(row, "NDCG@10"))
    if src is None or value is None:
        return _missing(metric, target, results, "quality")
    users = as_float(dig(row, "n_users"))
    measured = f"{value:.3f}" + (f" ({users:,.0f} test users)" if users else "")
    return Check(metric, target, measured, _verdict(value >= threshold), src.cite())


def engine_checks(results: Results) -> list[Check]:
    src = results.get("engine")
    specs: list[tuple[str, str, tuple[str, ...], float, bool, int]] = [
        (
            "recommend p99, in-process",
            f"<= {TARGET_RECOMMEND_P99_MS:g} ms at 100k items",
            ("recommend", "plain", "p99_ms"),
            TARGET_RECOMMEND_P99_MS,
            False,
            2,
        ),
        (
            "ingest in batches (interact_many)",
            f">= {TARGET_INGEST_EVENTS_PER_S:,.0f} events/s",
            ("interact_bulk", "events_per_s"),
            TARGET_INGEST_EVENTS_PER_S,
            True,
            0,
        ),
        (
            "erase p99",
            f"<= {TARGET_ERASE_P99_MS:g} ms",
            ("erase", "p99_ms"),
            TARGET_ERASE_P99_MS,
            False,
            2,
        ),
        (
            "median user record",
            f"<= {TARGET_MEDIAN_RECORD_BYTES:,.0f} B",
            ("records", "all_users", "median_bytes"),
            TARGET_MEDIAN_RECORD_BYTES,
            False,
            0,
        ),
    ]
    checks = []
    for metric, target, keys, threshold, higher, digits in specs:
        s = over(src, *keys)
        if src is None or s is None:
            checks.append(_missing(metric, target, results, "engine"))
            continue
        ok = s.median >= threshold if higher else s.median <= threshold
        unit = {"events_per_s": " events/s", "p99_ms": " ms", "median_bytes": " B"}[keys[-1]]
        note = _scale_note(src) if keys[0] == "recommend" else ""
        measured = s.show(digits) + unit + (f" ({note})" if note else "")
        checks.append(Check(metric, target, measured, _verdict(ok), src.cite()))
    return checks


def encoder_rates(src: Source) -> dict[tuple[str, int, str], Stat]:
    """(backend, threads, short/long) -> texts/s at its best batch size, one value per run
    (a single run's spread is over its own timed rounds)."""
    per_run: dict[tuple[str, int, str], list[Json]] = {}
    for doc in src.docs:
        best: dict[tuple[str, int, str], Json] = {}
        for run in doc.get("throughput") or []:
            for key, cell in (run.get("texts_per_s") or {}).items():
                kind = str(key).split("_b")[0]
                k = (str(run.get("backend")), int(run.get("threads", 0)), kind)
                if as_float(dig(cell, "median")) is None:
                    continue
                if k not in best or cell["median"] > best[k]["median"]:
                    best[k] = {**cell, "config": key}
        for k, cell in best.items():
            per_run.setdefault(k, []).append(cell)
    out: dict[tuple[str, int, str], Stat] = {}
    for k, cells in per_run.items():
        if len(cells) == 1:
            c = cells[0]
            values = [c["median"], c.get("min", c["median"]), c.get("max", c["median"])]
            out[k] = _RoundStat(tuple(float(v) for v in values), int(c.get("runs", 1)))
        else:
            out[k] = Stat(tuple(float(c["median"]) for c in cells))
    return out


@dataclass(frozen=True)
class _RoundStat(Stat):
    """One run's median with the min-max of its own timed rounds."""

    rounds: int = 1

    @property
    def median(self) -> float:
        return self.values[0]

    def show(self, digits: int = 2) -> str:
        text = num(self.median, digits)
        if self.rounds > 1:
            text += f" [{num(self.lo, digits)}-{num(self.hi, digits)}, {self.rounds} rounds]"
        return text


def accepted_backends(src: Source) -> set[str] | None:
    """Backends that may be the default (torch, and ONNX variants whose agreement with
    torch passes); None when agreement was not measured."""
    variants = dig(src.doc, "agreement", "variants")
    if not isinstance(variants, dict):
        return None
    return {"torch-fp32", "torch"} | {v for v, r in variants.items() if dig(r, "passes")}


def encoder_check(results: Results) -> Check:
    metric = "encoder throughput, short texts, 2 threads"
    target = f">= {TARGET_ENCODER_SHORT_PER_S:,.0f} texts/s"
    src = results.get("encoder")
    if src is None:
        return _missing(metric, target, results, "encoder")
    rates = {k: s for k, s in encoder_rates(src).items() if k[1] == 2 and k[2] == "short"}
    accepted = accepted_backends(src)
    usable = {k: s for k, s in rates.items() if accepted is None or k[0] in accepted}
    if not usable:
        return _missing(metric, target, results, "encoder", "no 2-thread short-text run")
    (backend, _t, _kind), best = max(usable.items(), key=lambda kv: kv[1].median)
    why = (
        "best backend; agreement not measured"
        if accepted is None
        else "best backend passing the agreement rule"
    )
    measured = f"{best.show(0)} texts/s ({backend}: {why})"
    ok = best.median >= TARGET_ENCODER_SHORT_PER_S
    return Check(metric, target, measured, _verdict(ok), src.cite())


def service_checks_of(doc: Json) -> list[Json]:
    """service_bench's own target checks (recomputed from its runs if absent)."""
    checks = dig(doc, "target", "checks")
    if isinstance(checks, list):
        return [c for c in checks if isinstance(c, dict)]
    out = []
    for r in doc.get("runs") or []:
        if r.get("scenario") != "recommend":
            continue
        rps, p99 = as_float(r.get("ok_per_s")), as_float(r.get("p99_ms"))
        if rps is None or p99 is None:
            continue
        met = rps >= TARGET_SERVICE_PER_S and p99 <= TARGET_SERVICE_P99_MS and not r.get("errors")
        out.append(
            {"connections": r.get("connections"), "requests_per_s": rps, "p99_ms": p99, "met": met}
        )
    return out


def service_check(results: Results) -> Check:
    metric = "service: recommend calls/s (2 workers, HTTP)"
    target = f">= {TARGET_SERVICE_PER_S:,.0f}/s at p99 <= {TARGET_SERVICE_P99_MS:g} ms"
    src = results.get("service")
    checks = service_checks_of(src.doc) if src else []
    if src is None or not checks:
        return _missing(metric, target, results, "service")
    met = [c for c in checks if c.get("met")]
    in_budget = [c for c in checks if (as_float(c.get("p99_ms")) or 1e9) <= TARGET_SERVICE_P99_MS]
    pool = met or in_budget or checks
    best = max(pool, key=lambda c: as_float(c.get("requests_per_s")) or 0.0)
    rps = as_float(best.get("requests_per_s")) or 0.0
    items = as_float(best.get("recommendations_per_s"))
    measured = (
        f"{rps:,.0f} calls/s"
        + (f" ({items:,.0f} items/s)" if items is not None else "")
        + f" at p99 {num(as_float(best.get('p99_ms')), 1)} ms, "
        f"{best.get('connections')} connections"
    )
    items_n = dig(src.doc, "args", "items")
    if items_n is not None and items_n != 100_000:
        measured += f" ({items_n:,} items)"
    return Check(metric, target, measured, _verdict(bool(met)), src.cite())


@dataclass(frozen=True)
class SealingCost:
    """What sealing user records costs: sealed runs (median) against the unsealed run."""

    rows: list[tuple[str, Stat | None, float | None, float | None]]  # name, sealed, open, cost
    comparable: bool
    why: str


SEALING_METRICS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    # name, keys, higher is better (cost = slowdown in time per operation)
    ("recommend p50 ms", ("recommend", "plain", "p50_ms"), False),
    ("recommend p99 ms", ("recommend", "plain", "p99_ms"), False),
    ("interact events/s (25 per call)", ("interact", "events_per_s"), True),
    ("interact call p50 ms", ("interact", "call_latency", "p50_ms"), False),
    ("bulk ingest events/s", ("interact_bulk", "events_per_s"), True),
    ("erase p50 ms", ("erase", "p50_ms"), False),
)
SEALING_TARGETED = ("recommend p50 ms", "interact events/s (25 per call)")


def sealing_cost(results: Results) -> SealingCost | None:
    sealed, plain = results.get("engine"), results.get("engine_noencrypt")
    if sealed is None or plain is None:
        return None
    why = ""
    same = all(dig(sealed.doc, "args", k) == dig(plain.doc, "args", k) for k in ("items", "users"))
    if not same:
        why = "sealed and unsealed runs used different sizes"
    if dig(plain.doc, "config", "encrypt_user_records") is True:
        same, why = False, "the 'unsealed' run has encrypt_user_records = true"
    rows: list[tuple[str, Stat | None, float | None, float | None]] = []
    for name, keys, higher in SEALING_METRICS:
        s = over(sealed, *keys)
        p = as_float(dig(plain.doc, *keys))
        cost = None
        if s is not None and p:
            cost = (p / s.median - 1.0) if higher else (s.median / p - 1.0)
        rows.append((name, s, p, cost))
    return SealingCost(rows, same, why)


def sealing_check(results: Results) -> Check:
    metric = "sealing cost (sealed vs unsealed records)"
    target = f"<= {TARGET_SEALING_COST:.0%} slower recommend and interact"
    cost = sealing_cost(results)
    if cost is None:
        key = "engine_noencrypt" if results.get("engine") else "engine"
        return _missing(metric, target, results, key)
    targeted = {name: c for name, _s, _p, c in cost.rows if name in SEALING_TARGETED}
    if any(c is None for c in targeted.values()) or not cost.comparable:
        return _missing(metric, target, results, "engine", cost.why or "figures missing")
    values = [c for c in targeted.values() if c is not None]
    measured = ", ".join(
        f"{n.split(' ')[0]} {c:+.1%}" for n, c in targeted.items() if c is not None
    )
    sealed, plain = results.sources["engine"], results.sources["engine_noencrypt"]
    return Check(
        metric,
        target,
        measured,
        _verdict(max(values) <= TARGET_SEALING_COST),
        f"{sealed.cite()} vs {plain.cite()}",
    )


def headline(results: Results) -> list[Check]:
    return [
        quality_check(results, "chrono20", TARGET_CHRONO20_NDCG),
        quality_check(results, "cold20", TARGET_COLD20_NDCG),
        *engine_checks(results),
        encoder_check(results),
        service_check(results),
        sealing_check(results),
    ]


def headline_table(checks: Sequence[Check]) -> str:
    rows = [(c.metric, c.target, c.measured, f"**{c.verdict}**", c.source) for c in checks]
    return table(("metric", "target", "measured", "verdict", "source"), rows)


# -- machine --------------------------------------------------------------------------------


MACHINE_PREFERENCE = ("run_all", "engine", "encoder", "index", "service", "catalog", "erasure")


def machine_of(results: Results) -> Json:
    """run_all's machine record, else the fullest one a benchmark file recorded."""
    run_all = results.get("run_all")
    if run_all and isinstance(run_all.doc.get("machine"), dict):
        return dict(run_all.doc["machine"])
    keys = [*MACHINE_PREFERENCE, *results.sources]
    for key in dict.fromkeys(keys):
        src = results.get(key)
        m = src.doc.get("machine") if src else None
        if src is not None and isinstance(m, dict) and m.get("cpu_model"):
            return {**m, "from": src.files[0].name}
    for src in results.sources.values():
        m = src.doc.get("machine")
        if isinstance(m, dict):
            return {**m, "from": src.files[0].name}
    return {}


def machine_line(m: Json) -> str:
    if not m:
        return "machine: not recorded"
    parts = [f"{m.get('cpu_count', '?')} CPUs ({m.get('cpu_model', '?')})"]
    if m.get("ram_gib"):
        parts.append(f"{m['ram_gib']} GiB RAM")
    parts.append(str(m.get("os") or m.get("platform", "")))
    parts.append(f"Python {m.get('python', '?')}")
    git = m.get("git")
    if isinstance(git, dict) and git.get("commit"):
        parts.append(f"commit {str(git['commit'])[:10]}{' (dirty)' if git.get('dirty') else ''}")
    return ", ".join(p for p in parts if p)


def machine_section(results: Results) -> str:
    m = machine_of(results)
    out = ["## Machine", ""]
    if not m:
        return "\n".join([*out, "Not recorded (no run_all JSON, no machine block in any file)."])
    src = "`" + m.pop("from") + "`" if "from" in m else results.sources["run_all"].cite()
    out.append(f"From {src}: {machine_line(m)}.")
    out.append("")
    fields = [
        (k, json.dumps(v) if isinstance(v, dict | list) else str(v))
        for k, v in m.items()
        if k not in ("blas",)
    ]
    out.append(table(("field", "value"), fields))
    out += ["", "Load and date of every result file (other work on a shared machine skews speed):"]
    out.append("")
    rows = []
    for key, src_ in results.sources.items():
        if key == "run_all":
            continue
        for path, doc in zip(src_.files, src_.docs, strict=True):
            start = dig(doc, "machine", "loadavg_at_start") or dig(doc, "loadavg_at_start")
            start = start or dig(doc, "machine", "load_average")
            end = doc.get("loadavg_at_end") or doc.get("load_average_end")
            when = doc.get("started_at") or doc.get("date") or _mtime(path)
            head = dig(doc, "git", "head") or "-"
            rows.append(
                (
                    f"`{path.name}`",
                    str(when),
                    mode_of(doc) or "-",
                    _load(start),
                    _load(end),
                    str(head),
                )
            )
    out.append(table(("file", "started", "mode", "load avg at start", "at end", "git"), rows))
    return "\n".join(out)


def _mtime(path: Path) -> str:
    """When the file was written, for files that do not record their date."""
    stamp = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S+0000") + " (file time)"


def _load(value: Any) -> str:
    if isinstance(value, list) and value:
        return " / ".join(f"{float(x):.2f}" for x in value)
    return "-"


# -- sections -------------------------------------------------------------------------------


def missing_line(results: Results, key: str) -> str:
    name = results.missing.get(key, f"{SOURCES[key][0]}.json")
    run = RUN_ALL_NAME.get(key, key)
    mode = " --quick" if results.quick else ""
    return f"_Not measured: `{name}` is missing (`python bench/run_all.py{mode} --only {run}`)._"


def notes_line(src: Source) -> str:
    text = f"Source: {src.cite()}."
    if src.notes:
        text += " Note: " + "; ".join(src.notes) + "."
    return text


QualityRow = tuple[str, str, str, Json, str]  # model, source file, params, fields, note


def quality_rows(results: Results) -> dict[str, list[QualityRow]]:
    """``dataset/protocol`` -> rows from quality.json then peers.json."""
    out: dict[str, list[QualityRow]] = {}
    q = results.get("quality")
    if q is not None:
        for split, models in q.doc.items():
            if not isinstance(models, dict):
                continue
            for model, r in models.items():
                if not isinstance(r, dict) or "NDCG@10" not in r:
                    continue
                chosen = r.get("chosen", "")
                params = (
                    ", ".join(f"{k} {v:g}" for k, v in chosen.items())
                    if isinstance(chosen, dict)
                    else str(chosen)
                )
                fields = {
                    **{m: r.get(m) for m in ("Recall@10", "NDCG@10", "HR@10", "n_users")},
                    "fit_s": r.get("fit_s"),
                    "update_ms": r.get("update_ms_p50"),
                }
                note = (
                    "fit = building the store (every user's interact calls); "
                    "update = p50 of one user's interact"
                    if "update_ms_p50" in r
                    else ""
                )
                out.setdefault(split, []).append(
                    (model, q.files[0].name, params or "-", fields, note)
                )
    p = results.get("peers")
    if p is not None:
        for r in p.doc.get("rows") or []:
            split = f"{r.get('dataset')}/{r.get('protocol')}"
            metrics = r.get("metrics") or {}
            fields = {
                **{m: metrics.get(m) for m in ("Recall@10", "NDCG@10", "HR@10", "n_users")},
                "fit_s": r.get("fit_s"),
                "update_ms": r.get("update_ms"),
            }
            method = str(r.get("update_method") or "")
            note = "; ".join(
                x for x in (str(r.get("note") or ""), method and f"update: {method}") if x
            )
            row = (str(r.get("model")), p.files[0].name, str(r.get("params", "-")), fields, note)
            rows = out.setdefault(split, [])
            same = next((i for i, q_row in enumerate(rows) if _same_model(q_row, row)), None)
            if same is None:
                rows.append(row)
            else:  # the same model with the same results: one row, the update time from peers
                model, source, params, q_fields, _ = rows[same]
                merged = {**q_fields, "update_ms": fields["update_ms"]}
                rows[same] = (model, f"{source}`, update: `{row[1]}", params, merged, note)
    return out


def _same_model(a: QualityRow, b: QualityRow) -> bool:
    """Rows of two files for one model with identical metrics (so one row can show both)."""
    if a[0] != b[0] or a[1] == b[1] or a[3].get("update_ms") is not None:
        return False
    return all(as_float(a[3][m]) == as_float(b[3][m]) for m in ("Recall@10", "NDCG@10", "HR@10"))


def quality_section(results: Results, plot: Path | None) -> str:
    out = ["## Recommendation quality", ""]
    q, p = results.get("quality"), results.get("peers")
    if q is None and p is None:
        return "\n".join([*out, missing_line(results, "quality"), missing_line(results, "peers")])
    for src, key in ((q, "quality"), (p, "peers")):
        out.append(notes_line(src) if src else missing_line(results, key))
    out += [
        "",
        "Protocols of `../shared/data/README.md` (chrono20, cold20); every model tuned on the "
        "inner validation split. `fit s`: wall seconds to fit on the training data; `update "
        "ms`: one user's update after new feedback (see each model's note).",
    ]
    rows = quality_rows(results)
    for split in sorted(rows, key=lambda s: (s.split("/")[0] != "ml-1m-half", s)):
        dataset, protocol = split.split("/")
        out += ["", f"### {dataset}, {protocol}", ""]
        body = []
        for model, source, params, f, note in rows[split]:
            body.append(
                (
                    f"**{model}**" if model.startswith("ownrank") else model,
                    f"`{source}`",
                    params,
                    num(as_float(f["Recall@10"]), 4),
                    num(as_float(f["NDCG@10"]), 4),
                    num(as_float(f["HR@10"]), 4),
                    num(as_float(f["fit_s"]), 2),
                    num(as_float(f["update_ms"]), 2),
                    note,
                )
            )
        out.append(
            table(
                (
                    "model",
                    "source",
                    "params",
                    "Recall@10",
                    "NDCG@10",
                    "HR@10",
                    "fit s",
                    "update ms",
                    "note",
                ),
                body,
            )
        )
    if plot is not None:
        out += ["", f"![NDCG@10 per model](plots/{plot.name})", "", f"Plot data: {_cites(q, p)}."]
    return "\n".join(out)


def _cites(*sources: Source | None) -> str:
    return ", ".join(s.cite() for s in sources if s is not None)


def erasure_section(results: Results, plot: Path | None) -> str:
    out = ["## Erasure against retraining", ""]
    src = results.get("erasure")
    if src is None:
        return "\n".join([*out, missing_line(results, "erasure")])
    d = src.doc
    e = d.get("erase") or {}
    out += [
        notes_line(src),
        "",
        f"Store: {d.get('split', '')}; {dig(d, 'store', 'users') or '?'} users built as "
        "bench/quality.py does. `Engine.erase` per user (durable commit, data key destroyed, "
        "signed receipt) against refitting each peer from scratch without that user.",
        "",
        table(
            ("operation", "count", "p50", "p99", "mean", "max"),
            [
                (
                    "ownrank `erase`",
                    str(e.get("count", "-")),
                    f"{num(as_float(e.get('p50_ms')), 2)} ms",
                    f"{num(as_float(e.get('p99_ms')), 2)} ms",
                    f"{num(as_float(e.get('mean_ms')), 2)} ms",
                    f"{num(as_float(e.get('max_ms')), 2)} ms",
                )
            ],
        ),
        "",
        f"Receipts: {e.get('existed', '-')} users existed, data key destroyed for "
        f"{e.get('data_key_destroyed', '-')}, {e.get('mean_events_removed', '-')} events "
        "removed on average.",
        "",
    ]
    rows = []
    for model, r in (d.get("retrain") or {}).items():
        s = stat(r.get("seconds") or [])
        ratio50 = dig(d, "ratios", f"{model}_over_erase_p50")
        ratio99 = dig(d, "ratios", f"{model}_over_erase_p99")
        rows.append(
            (
                f"{model} refit ({r.get('params', '')})",
                f"{show(s, 2)} s" if s else str(r.get("unavailable", "-")),
                f"{num(as_float(ratio50), 0)}x",
                f"{num(as_float(ratio99), 0)}x",
            )
        )
    out.append(table(("retrain from scratch", "seconds", "/ erase p50", "/ erase p99"), rows))
    if plot is not None:
        out += ["", f"![erase vs retrain](plots/{plot.name})", "", f"Plot data: {src.cite()}."]
    return "\n".join(out)


ENGINE_ROWS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("catalog upsert items/s", ("catalog", "items_per_s"), 0),
    ("interact events/s (25 events per call)", ("interact", "events_per_s"), 0),
    ("interact call p50 ms", ("interact", "call_latency", "p50_ms"), 2),
    ("interact call p99 ms", ("interact", "call_latency", "p99_ms"), 2),
    ("bulk ingest events/s (interact_many)", ("interact_bulk", "events_per_s"), 0),
    ("bulk call p50 ms", ("interact_bulk", "call_latency", "p50_ms"), 1),
    ("record bytes, median", ("records", "all_users", "median_bytes"), 0),
    ("record bytes, p99", ("records", "all_users", "p99_bytes"), 0),
    ("record bytes, max", ("records", "all_users", "max_bytes"), 0),
    ("recommend p50 ms", ("recommend", "plain", "p50_ms"), 2),
    ("recommend p99 ms", ("recommend", "plain", "p99_ms"), 2),
    ("recommend, topic filter p50 ms", ("recommend", "topic_filter", "p50_ms"), 2),
    ("recommend, topic filter p99 ms", ("recommend", "topic_filter", "p99_ms"), 2),
    ("recommend, diversity 0.3 p99 ms", ("recommend", "diversity_0.3", "p99_ms"), 2),
    ("recommend, cold start p99 ms", ("recommend", "cold_start", "p99_ms"), 2),
    ("recommend_from_history p99 ms", ("recommend", "from_history_50_events", "p99_ms"), 2),
    ("search, personalized p50 ms", ("search", "personalized", "p50_ms"), 2),
    ("search, personalized p99 ms", ("search", "personalized", "p99_ms"), 2),
    ("erase p50 ms", ("erase", "p50_ms"), 2),
    ("erase p99 ms", ("erase", "p99_ms"), 2),
    ("durable LMDB commit p50 ms (floor)", ("lmdb_commit_floor_at_start", "p50_ms"), 2),
    ("peak RSS MiB", ("memory", "process_peak_mb"), 0),
    ("run seconds", ("total_seconds",), 0),
)


def engine_section(results: Results) -> str:
    out = ["## Engine, in-process (`engine_bench.py`)", ""]
    src = results.get("engine")
    if src is None:
        return "\n".join([*out, missing_line(results, "engine")])
    d = src.doc
    out += [
        notes_line(src),
        "",
        f"{_scale_note(src) or 'size not recorded'}; index {dig(d, 'sizes', 'index_type') or '?'}"
        f"; sealed records: {_sealed(d)}. Figures: median "
        "[min-max, runs] over the repeated runs.",
        "",
    ]
    rows = [(name, show(over(src, *keys), digits)) for name, keys, digits in ENGINE_ROWS]
    out.append(table(("metric", "measured"), [r for r in rows if r[1] != "-"]))
    busy = [dig(doc, "phase_memory") for doc in src.docs]
    cores = [
        ", ".join(f"{k} {v.get('other_processes_cpu_cores', '-')}" for k, v in b.items())
        for b in busy
        if isinstance(b, dict)
    ]
    if cores:
        out += ["", "Cores other processes kept busy, per phase and run: " + "; ".join(cores)]
    cost = sealing_cost(results)
    out += ["", "### What sealing user records costs", ""]
    if cost is None:
        out.append(missing_line(results, "engine_noencrypt"))
    else:
        plain = results.sources["engine_noencrypt"]
        out.append(
            f"Sealed: {src.cite()} (median [min-max]); unsealed: {plain.cite()} "
            "(`--no-encrypt`, one run). Cost: how much more time per operation sealing takes "
            f"(target <= {TARGET_SEALING_COST:.0%} for recommend and interact)."
        )
        if not cost.comparable:
            out.append(f"**Not comparable: {cost.why}.**")
        out.append("")
        out.append(
            table(
                ("metric", "sealed", "unsealed", "cost"),
                [
                    (n, show(s, 2), num(p, 2), "-" if c is None else f"{c:+.1%}")
                    for n, s, p, c in cost.rows
                ],
            )
        )
    return "\n".join(out)


def _sealed(doc: Json) -> str:
    flag = dig(doc, "config", "encrypt_user_records")
    return "not recorded" if flag is None else ("yes" if flag else "no")


SCALE_KINDS = ("plain", "topic_filter", "cold_start")


def scale_sizes(src: Source) -> list[tuple[int, Json]]:
    sizes = src.doc.get("sizes") or {}
    return sorted(((int(k), v) for k, v in sizes.items() if isinstance(v, dict)))


def scale_section(results: Results) -> str:
    out = ["## Latency as the catalog grows (`scale_bench.py`)", ""]
    src = results.get("scale")
    if src is None:
        return "\n".join([*out, missing_line(results, "scale")])
    out += [notes_line(src), ""]
    rows = []
    for items, s in scale_sizes(src):
        rec = s.get("recommend") or {}
        rows.append(
            (
                f"{items:,}",
                str(s.get("index_type", "-")),
                str(s.get("users", "-")),
                *(p50_p99(rec, k) for k in SCALE_KINDS),
                p50_p99(s, "search", "personalized"),
                num(as_float(dig(s, "interact", "events_per_s")), 0),
                num(as_float(dig(s, "record_bytes", "median")), 0),
                p50_p99(s, "erase"),
                num(as_float(s.get("peak_rss_mb")), 0),
            )
        )
    out.append(
        table(
            (
                "items",
                "index",
                "users",
                "recommend p50 / p99 ms",
                "topic filter p50 / p99",
                "cold start p50 / p99",
                "search p50 / p99",
                "interact events/s",
                "record B (median)",
                "erase p50 / p99",
                "peak RSS MiB",
            ),
            rows,
        )
    )
    failed = src.doc.get("failed")
    if failed:
        out += ["", f"Failed sizes: {json.dumps(failed)}"]
    return "\n".join(out)


def index_sizes(src: Source) -> list[int]:
    sizes: set[int] = set()
    for doc in src.docs:
        sizes |= {int(k) for k in (doc.get("sizes") or {})}
    return sorted(sizes)


def index_section(results: Results) -> str:
    out = ["## Vector index (`index_bench.py`)", ""]
    src = results.get("index")
    if src is None:
        return "\n".join([*out, missing_line(results, "index")])
    out += [
        notes_line(src),
        "",
        "One query per call, one thread; recall against exact search. Latencies: median "
        "[min-max, runs] where the benchmark ran several times.",
        "",
    ]
    rows = []
    for size in index_sizes(src):
        kinds: set[str] = set()
        for doc in src.docs:
            kinds |= set(dig(doc, "sizes", str(size), "kinds") or {})
        for kind in sorted(kinds):
            base = ("sizes", str(size), "kinds", kind)
            search = (*base, "search")
            rows.append(
                (
                    f"{size:,}",
                    kind,
                    show(over(src, *base, "build", "seconds"), 2),
                    num(as_float(dig(src.doc, *base, "memory", "file_bytes_per_vector")), 0),
                    pair(over(src, *search, "k10", "p50_ms"), over(src, *search, "k10", "p99_ms")),
                    num(as_float(dig(src.doc, *search, "k10", "recall")), 3),
                    pair(
                        over(src, *search, "k100", "p50_ms"), over(src, *search, "k100", "p99_ms")
                    ),
                    num(as_float(dig(src.doc, *search, "k100", "recall")), 3),
                    pair(
                        over(src, *search, "engine_filtered_k10", "p50_ms"),
                        over(src, *search, "engine_filtered_k10", "p99_ms"),
                    ),
                )
            )
    out.append(
        table(
            (
                "items",
                "kind",
                "build s",
                "file B/vector",
                "k=10 p50 / p99 ms",
                "recall@10",
                "k=100 p50 / p99 ms",
                "recall@100",
                "filtered k=10 (engine path) p50 / p99 ms",
            ),
            rows,
        )
    )
    return "\n".join(out)


def encoder_section(results: Results, plot: Path | None) -> str:
    out = ["## Base encoder (`encoder_bench.py`)", ""]
    src = results.get("encoder")
    if src is None:
        return "\n".join([*out, missing_line(results, "encoder")])
    out += [
        notes_line(src),
        "",
        "Texts/s at the best batch size; a single run's spread is over its timed rounds, "
        "repeated runs' over the runs.",
        "",
    ]
    rates = encoder_rates(src)
    loads: dict[tuple[str, int], list[Any]] = {}
    for doc in src.docs:
        for run in doc.get("throughput") or []:
            key = (str(run.get("backend")), int(run.get("threads", 0)))
            loads.setdefault(key, []).append(run)
    rows = []
    for (backend, threads), runs in sorted(loads.items()):
        rows.append(
            (
                backend,
                str(threads),
                show(rates.get((backend, threads, "short")), 0),
                show(rates.get((backend, threads, "long")), 0),
                show(stat(r.get("load_seconds") for r in runs), 2),
                show(stat(r.get("rss_delta_after_load_mb") for r in runs), 0),
                show(stat(r.get("other_processes_cpu_cores") for r in runs), 2),
            )
        )
    out.append(
        table(
            (
                "backend",
                "threads",
                "short texts/s",
                "long texts/s",
                "load s",
                "RSS after load MiB",
                "other processes' cores",
            ),
            rows,
        )
    )
    variants = dig(src.doc, "agreement", "variants")
    if isinstance(variants, dict):
        out += ["", "Agreement with torch (per-text cosine, top-10 neighbour overlap):", ""]
        arows = []
        for variant, sets in variants.items():
            for name, a in sets.items():
                if isinstance(a, dict):
                    arows.append(
                        (
                            variant,
                            name,
                            str(a.get("texts", "-")),
                            num(as_float(a.get("cosine_min")), 4),
                            num(as_float(a.get("cosine_mean")), 5),
                            num(as_float(a.get("neighbour_overlap")), 4),
                            "yes" if a.get("passes") else "NO",
                        )
                    )
        out.append(
            table(
                ("variant", "text set", "n", "cosine min", "cosine mean", "overlap", "passes"),
                arows,
            )
        )
    if plot is not None:
        out += ["", f"![encoder throughput](plots/{plot.name})", "", f"Plot data: {src.cite()}."]
    return "\n".join(out)


def service_section(results: Results) -> str:
    out = ["## HTTP service under load (`service_bench.py`)", ""]
    src = results.get("service")
    if src is None:
        return "\n".join([*out, missing_line(results, "service")])
    d = src.doc
    out += [
        notes_line(src),
        "",
        f"{dig(d, 'args', 'items') or '?'} items, {dig(d, 'args', 'users') or '?'} users, "
        f"{dig(d, 'args', 'workers') or '?'} workers, wrk closed loop "
        f"{dig(d, 'args', 'duration') or '?'} s per run. A recommend call returns 10 items: "
        "the verdict counts calls (service_bench.py's rule); items/s is 10x. `floor`: the "
        "recommend requests against a server whose engine answers a result computed at "
        "start, i.e. what the service alone allows on the machine.",
        "",
    ]
    rows = []
    for r in d.get("runs") or []:
        cores = r.get("cpu_cores") or {}
        rows.append(
            (
                str(r.get("scenario")),
                str(r.get("connections")),
                num(as_float(r.get("requests_per_s")), 1),
                f"{num(as_float(r.get('p50_ms')), 1)} / {num(as_float(r.get('p90_ms')), 1)} / "
                f"{num(as_float(r.get('p99_ms')), 1)}",
                str(r.get("errors", "-")),
                num(as_float(cores.get("server_workers")), 2),
                num(as_float(cores.get("other_processes")), 2),
            )
        )
    out.append(
        table(
            (
                "scenario",
                "connections",
                "requests/s",
                "p50 / p90 / p99 ms",
                "errors",
                "server cores",
                "other processes' cores",
            ),
            rows,
        )
    )
    return "\n".join(out)


def catalog_section(results: Results) -> str:
    out = ["## Catalog (`catalog_bench.py`)", ""]
    src = results.get("catalog")
    if src is None:
        return "\n".join([*out, missing_line(results, "catalog")])
    d = src.doc
    out += [notes_line(src), ""]
    rows = []
    for kind, s in (d.get("synthetic") or {}).items():
        rows.append(
            (
                kind,
                num(as_float(dig(s, "ingest", "items")), 0),
                num(as_float(dig(s, "ingest", "items_per_s")), 0),
                *(
                    p50_p99(s, k)
                    for k in ("search_unfiltered", "search_topic_filter", "search_selective_filter")
                ),
                num(as_float(dig(s, "recall_at_10", "unfiltered")), 3),
                num(as_float(s.get("reopen_rebuild_seconds")), 2),
            )
        )
    out.append(
        table(
            (
                "index",
                "items",
                "ingest items/s",
                "search p50 / p99 ms",
                "topic filter",
                "selective filter",
                "recall@10",
                "rebuild s",
            ),
            rows,
        )
    )
    real = d.get("real")
    if isinstance(real, dict):
        out += [
            "",
            f"Real encoder ({real.get('threads', '?')} thread): ingest "
            f"{num(as_float(dig(real, 'ingest', 'items_per_s')), 1)} items/s end to end "
            f"({num(as_float(dig(real, 'ingest', 'items')), 0)} items); re-ingest unchanged "
            f"{num(as_float(dig(real, 'reingest', 'items_per_s')), 0)} items/s; text query p50 / "
            f"p99 {num(as_float(dig(real, 'text_query', 'p50_ms')))} / "
            f"{num(as_float(dig(real, 'text_query', 'p99_ms')))} ms.",
        ]
    return "\n".join(out)


def run_log_section(results: Results) -> str:
    out = ["## Run log (`run_all.py`)", ""]
    src = results.get("run_all")
    if src is None:
        return "\n".join([*out, "_No run_all JSON: the files above were produced one by one._"])
    rows = []
    for s in src.doc.get("steps") or []:
        rows.append(
            (
                str(s.get("label")),
                str(s.get("status")),
                num(as_float(s.get("seconds")), 0),
                _load(s.get("loadavg_before")),
                _load(s.get("loadavg_after")),
                f"`{s.get('log')}`",
                str(s.get("reason", "")),
            )
        )
    out += [
        notes_line(src),
        "",
        table(("step", "status", "seconds", "load before", "load after", "log", "note"), rows),
    ]
    return "\n".join(out)


# -- plots ----------------------------------------------------------------------------------


def plot_quality(results: Results, path: Path) -> Path | None:
    """Grouped bars: NDCG@10 per model, one group per dataset/protocol."""
    rows = quality_rows(results)
    values: dict[str, dict[str, float]] = {}
    for split, entries in rows.items():
        for model, _source, _params, f, note in entries:
            v = as_float(f["NDCG@10"])
            if v is None or CF_ON_COLD in note or model in values.get(split, {}):
                continue  # constant rankings left out; quality.json's row wins a duplicate
            values.setdefault(split, {})[model] = v
    if not values:
        return None
    splits = sorted(values, key=lambda s: (s.split("/")[0] != "ml-1m-half", s))
    models = list(dict.fromkeys(m for s in splits for m in values[s]))
    fig, ax = plt.subplots(figsize=(max(8.0, 1.6 * len(splits) * max(1, len(models)) / 4), 4.8))
    width = 0.8 / len(models)
    cmap = plt.get_cmap("tab20")
    for i, model in enumerate(models):
        xs = [j + (i - (len(models) - 1) / 2) * width for j, s in enumerate(splits)]
        ys = [values[s].get(model, 0.0) for s in splits]
        hatch = "//" if model.startswith("ownrank") else None
        ax.bar(xs, ys, width, label=model, color=cmap(i % 20), hatch=hatch, edgecolor="black")
    ax.set_xticks(range(len(splits)), [s.replace("/", "\n") for s in splits])
    ax.set_ylabel("NDCG@10")
    ax.set_title("Recommendation quality (NDCG@10)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_latency(results: Results, path: Path) -> Path | None:
    """recommend p50/p99 (scale_bench) and index search p50/p99 (index_bench) vs size."""
    scale, index = results.get("scale"), results.get("index")
    if scale is None and index is None:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.3))
    if scale is not None:
        sizes = scale_sizes(scale)
        xs = [n for n, _ in sizes]
        for kind, color in (("plain", "tab:blue"), ("topic_filter", "tab:orange")):
            for q, style in (("p50_ms", "o-"), ("p99_ms", "s--")):
                ys = [as_float(dig(s, "recommend", kind, q)) for _, s in sizes]
                pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
                if pts:
                    left.plot(*zip(*pts, strict=True), style, color=color, label=f"{kind} {q[:3]}")
        left.axhline(TARGET_RECOMMEND_P99_MS, color="red", lw=0.8, ls="--", label="p99 target")
    left.set_title("recommend latency (scale_bench)")
    if index is not None:
        for kind, color in (("flat", "tab:blue"), ("hnsw", "tab:green")):
            for q, style in (("p50_ms", "o-"), ("p99_ms", "s--")):
                spread: list[tuple[int, float, float, float]] = []
                for size in index_sizes(index):
                    s = over(index, "sizes", str(size), "kinds", kind, "search", "k10", q)
                    if s is not None:
                        spread.append((size, s.median, s.median - s.lo, s.hi - s.median))
                if spread:
                    x, y, lo, hi = zip(*spread, strict=True)
                    right.errorbar(
                        x, y, yerr=[lo, hi], fmt=style, color=color, label=f"{kind} {q[:3]}"
                    )
    right.set_title("index search, k=10 (index_bench)")
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xlabel("catalog items")
        ax.set_ylabel("ms")
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return _save(fig, path)


def plot_encoder(results: Results, path: Path) -> Path | None:
    """texts/s per backend: short/long texts x 1/2 threads (spread as error bars)."""
    src = results.get("encoder")
    if src is None:
        return None
    rates = encoder_rates(src)
    if not rates:
        return None
    backends = sorted({k[0] for k in rates})
    series = [(kind, t) for kind in ("short", "long") for t in (1, 2)]
    fig, ax = plt.subplots(figsize=(9, 4.3))
    width = 0.8 / len(series)
    for i, (kind, threads) in enumerate(series):
        xs, ys, lo, hi = [], [], [], []
        for j, b in enumerate(backends):
            s = rates.get((b, threads, kind))
            if s is None:
                continue
            xs.append(j + (i - (len(series) - 1) / 2) * width)
            ys.append(s.median)
            lo.append(s.median - s.lo)
            hi.append(s.hi - s.median)
        if xs:
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=2, label=f"{kind}, {threads} thread(s)")
    ax.axhline(TARGET_ENCODER_SHORT_PER_S, color="red", lw=0.8, ls="--", label="target (short, 2)")
    ax.set_xticks(range(len(backends)), backends)
    ax.set_ylabel("texts/s")
    ax.set_title("Base encoder throughput")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_erasure(results: Results, path: Path) -> Path | None:
    """Seconds to forget one user: ownrank's erase against refitting the peers."""
    src = results.get("erasure")
    if src is None:
        return None
    d = src.doc
    bars: list[tuple[str, float, float, float]] = []
    for q in ("p50", "p99"):
        v = as_float(dig(d, "erase", f"{q}_ms"))
        if v is not None:
            bars.append((f"ownrank erase {q}", v / 1000, 0.0, 0.0))
    for model, r in (d.get("retrain") or {}).items():
        s = stat(r.get("seconds") or [])
        if s is not None:
            bars.append((f"{model} refit", s.median, s.median - s.lo, s.hi - s.median))
    if not bars:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.3))
    names, ys, lo, hi = zip(*bars, strict=True)
    colors = ["tab:green" if n.startswith("ownrank") else "tab:gray" for n in names]
    ax.bar(names, ys, yerr=[lo, hi], color=colors, capsize=3)
    for i, y in enumerate(ys):
        ax.text(i, y, f"{y * 1000:.1f} ms" if y < 1 else f"{y:.1f} s", ha="center", va="bottom")
    ax.set_yscale("log")
    ax.set_ylabel("seconds to forget one user (log)")
    ax.set_title("Erasure vs retraining from scratch")
    ax.grid(axis="y", alpha=0.3, which="both")
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# -- assembling -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """What :func:`build` wrote."""

    report: Path
    headline: Path
    plots: dict[str, Path]
    checks: list[Check]


def build(results_dir: Path = RESULTS, quick: bool = False) -> Built:
    """Read the results, write the report, the headline and the plots."""
    results = load_results(results_dir, quick)
    suffix = "_quick" if quick else ""
    plots_dir = results_dir / "plots"
    makers: dict[str, Callable[[Results, Path], Path | None]] = {
        "quality": plot_quality,
        "latency": plot_latency,
        "encoder": plot_encoder,
        "erasure": plot_erasure,
    }
    names = {
        "quality": "quality_ndcg",
        "latency": "latency_vs_size",
        "encoder": "encoder_throughput",
        "erasure": "erase_vs_retrain",
    }
    plots: dict[str, Path] = {}
    for key, make in makers.items():
        made = make(results, plots_dir / f"{names[key]}{suffix}.png")
        if made is not None:
            plots[key] = made
    checks = headline(results)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = machine_line(machine_of(results))
    mode = "quick" if quick else "full"
    latency_plot = ""
    if "latency" in plots:
        latency_plot = (
            f"![latency vs catalog size](plots/{plots['latency'].name})\n\nPlot data: "
            f"{_cites(results.get('scale'), results.get('index'))}."
        )
    missing = "\n".join(
        f"- `{name}` ({key})" for key, name in results.missing.items() if key != "run_all"
    )
    parts = [
        f"# ownrank benchmark report ({mode} mode)",
        "",
        f"Generated {now} by `python bench/report.py{' --quick' if quick else ''}` from the "
        f"JSON files in `bench/results/`; reproduce with "
        f"`python bench/run_all.py{' --quick' if quick else ''}`. Every figure names its "
        "file. `a [b-c, n runs]`: median a of n repeated runs, min b, max c.",
        "",
        "Missing result files (their figures are marked not measured):",
        "",
        missing or "- none",
        "",
        "## Targets",
        "",
        headline_table(checks),
        "",
        machine_section(results),
        "",
        quality_section(results, plots.get("quality")),
        "",
        erasure_section(results, plots.get("erasure")),
        "",
        engine_section(results),
        "",
        scale_section(results),
        "",
        index_section(results),
        "",
        latency_plot,
        "",
        encoder_section(results, plots.get("encoder")),
        "",
        service_section(results),
        "",
        catalog_section(results),
        "",
        run_log_section(results),
        "",
    ]
    report = results_dir / f"REPORT{suffix}.md"
    report.write_text("\n".join(parts).replace("\n\n\n", "\n\n"))
    head = results_dir / f"headline{suffix}.md"
    head.write_text(
        f"Measured {now} ({mode} mode) on {machine}.\n\n{headline_table(checks)}\n\n"
        f"Reproduce: `python bench/run_all.py{' --quick' if quick else ''}`; details in "
        f"`bench/results/REPORT{suffix}.md`.\n"
    )
    return Built(report, head, plots, checks)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help="read the *_quick.json files")
    p.add_argument("--results-dir", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    built = build(args.results_dir, bool(args.quick))
    print(built.headline.read_text())
    print(f"wrote {built.report}, {built.headline} and {len(built.plots)} plots:")
    for path in built.plots.values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
