"""The benchmark report: REPORT.md, headline.md and PNG plots from bench/results/*.json.

    python bench/report.py [--quick] [--results-dir DIR]

Reads the result files ``bench/run_all.py`` writes (one per benchmark, in the one
format of ``bench/harness.py``), says which are missing, and shows only numbers found
in them: each benchmark's section is ``harness.render`` of its file, the same text the
benchmark printed. A benchmark that ran several times (``<stem>_r<i>.json``) is shown
as the median over the runs with the range beside it. In quick mode the
``<stem>_quick*.json`` files are read; where only a full-mode file exists it is used,
and the section says so.

``headline.md`` (quick: ``headline_quick.md``) is every target any benchmark declared,
with its verdict, plus the cost of sealing user records (the sealed engine run against
the ``--no-encrypt`` one); the README quotes it.
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import harness
import matplotlib
import run_all

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

Json = dict[str, Any]
SEALING_BOUND = 0.10  # issue 5: sealing costs at most 10% on recommend and interact
SEALING_METRICS = ("recommend p50", "ingest")  # compared between the two engine runs


@dataclass
class Source:
    """One benchmark's result files in the mode asked for, merged over its repeats."""

    name: str
    stem: str
    files: list[Path] = field(default_factory=list)
    doc: Json | None = None
    fallback: bool = False  # quick report, full-mode file
    problem: str = ""  # files there but unreadable (an older format)

    def cite(self) -> str:
        names = ", ".join(f"`{p.name}`" for p in self.files)
        return names + (" (no quick-mode file: a full-mode run)" if self.fallback else "")


def find_files(results: Path, stem: str, quick: bool) -> list[Path]:
    """``<stem>[_quick]_r<i>.json`` if any, else ``<stem>[_quick].json``."""
    base = harness.default_out(stem, quick).stem
    pattern = re.compile(rf"^{re.escape(base)}_r(\d+)\.json$")
    repeats = sorted(
        (p for p in results.glob(f"{base}_r*.json") if pattern.match(p.name)),
        key=lambda p: int(pattern.match(p.name).group(1)),  # type: ignore[union-attr]
    )
    single = results / f"{base}.json"
    return repeats or ([single] if single.exists() else [])


def load_source(results: Path, name: str, stem: str, quick: bool) -> Source:
    src = Source(name, stem, find_files(results, stem, quick))
    if not src.files and quick:
        src.files, src.fallback = find_files(results, stem, False), True
    if not src.files:
        src.fallback = False
        return src
    try:
        src.doc = harness.merge([harness.load(p) for p in src.files])
    except (ValueError, KeyError) as exc:
        src.problem = f"{exc}: rerun `{rerun(name, quick)}`"
    return src


def rerun(name: str, quick: bool) -> str:
    return f"python bench/run_all.py {'--quick ' if quick else ''}--only {name}"


def load_results(results: Path, quick: bool) -> dict[str, Source]:
    """Every benchmark of run_all's list (in its order), then run_all's own record."""
    named = [(b.name, b.stem) for b in run_all.BENCHMARKS] + [("run_all", "run_all")]
    return {name: load_source(results, name, stem, quick) for name, stem in named}


# -- the headline -------------------------------------------------------------------------


def sealing_line(sources: dict[str, Source]) -> list[str] | None:
    """How much slower the sealed engine run is than the unsealed one: for each figure
    in SEALING_METRICS, the median cost over the rows both runs measured (a rate's
    cost is unsealed / sealed - 1, a time's sealed / unsealed - 1), with the range;
    judged on the worst median."""
    sealed, plain = sources["engine"].doc, sources["engine_noencrypt"].doc
    if sealed is None or plain is None:
        return None
    unsealed = {r.key(): r for r in harness.rows_of(plain)}
    costs: dict[str, list[float]] = {}
    for row in harness.rows_of(sealed):
        other = unsealed.get(row.key())
        if row.metric not in SEALING_METRICS or other is None:
            continue
        if not isinstance(row.value, int | float) or not isinstance(other.value, int | float):
            continue
        rate = row.unit.endswith("/s")
        cost = (other.value / row.value if rate else row.value / other.value) - 1
        costs.setdefault(row.metric, []).append(cost)
    if not costs:
        return None
    medians = {m: statistics.median(c) for m, c in costs.items()}
    measured = "; ".join(
        f"{m} {medians[m]:+.1%} (median of {len(c)}, {min(c):+.0%} to {max(c):+.0%})"
        for m, c in costs.items()
    )
    verdict = "ok" if max(medians.values()) <= SEALING_BOUND else "MISSES"
    return ["engine", "sealing cost", f"<= {SEALING_BOUND:.0%}", measured, verdict]


def headline_lines(sources: dict[str, Source]) -> list[list[str]]:
    """[benchmark, target, bound, measured, verdict] for every declared target."""
    lines = []
    for src in sources.values():
        if src.doc is None:
            continue
        for target in harness.target_lines(src.doc):
            lines.append([src.name, *target])
    sealing = sealing_line(sources)
    if sealing is not None:
        lines.append(sealing)
    return lines


def headline(sources: dict[str, Source]) -> str:
    lines = headline_lines(sources)
    if not lines:
        return "No targets measured yet."
    table = harness.markdown_table(["benchmark", "target", "bound", "measured", "verdict"], lines)
    return table + "\n\n" + machine_line(sources)


def machine_line(sources: dict[str, Source]) -> str:
    docs = [s.doc for s in sources.values() if s.doc is not None]
    if not docs:
        return ""
    m, git = docs[0].get("machine", {}), docs[0].get("git", {})
    return (
        f"Machine: {m.get('cpu_model')}, {m.get('cpu_affinity')} cores usable, "
        f"Python {m.get('python')}, {m.get('platform')}; commit {git.get('head')}"
        f"{' (dirty)' if git.get('dirty') else ''}."
    )


# -- sections -----------------------------------------------------------------------------


def runs_table(sources: dict[str, Source]) -> str:
    """When and where each benchmark ran: the VM's speed drifts, so this says which
    figures can be compared."""
    lines = []
    for src in sources.values():
        if src.doc is None:
            continue
        d, git = src.doc, src.doc.get("git", {})
        lines.append([
            src.name,
            str(d.get("started_at", "")),
            harness.fmt(d.get("seconds"), "s"),
            f"{git.get('head', '')}{'+' if git.get('dirty') else ''}",
            str(d.get("machine", {}).get("loadavg_at_start", "")),
            str(d.get("loadavg_at_end", "")),
            str(d.get("runs", 1)),
        ])  # fmt: skip
    header = ["benchmark", "started", "seconds", "commit", "load at start", "at end", "runs"]
    return harness.markdown_table(header, lines)


def plot_tables(src: Source, plots: Path) -> list[Path]:
    """A horizontal bar chart of each table the benchmark marked ``plot``."""
    assert src.doc is not None
    rows = harness.rows_of(src.doc)
    made = []
    for i, spec in enumerate(harness.Table.from_json(t) for t in src.doc.get("tables", [])):
        if not spec.plot:
            continue
        chosen = [r for r in rows if r.matches(spec.where) and isinstance(r.value, int | float)]
        if spec.metrics is not None:
            chosen = [r for r in chosen if r.metric in spec.metrics]
        if not chosen:
            continue
        labels = [
            " / ".join([*(str(r.labels.get(k, "")) for k in spec.by), r.metric]) for r in chosen
        ]
        fig, ax = plt.subplots(figsize=(8, 0.3 * len(chosen) + 1.2))
        ax.barh(range(len(chosen)), [float(r.value) for r in chosen])  # type: ignore[arg-type]
        ax.set_yticks(range(len(chosen)), labels, fontsize=7)
        ax.invert_yaxis()
        units = sorted({r.unit for r in chosen})
        ax.set_xlabel(", ".join(units))
        ax.set_title(spec.title, fontsize=9)
        fig.tight_layout()
        plots.mkdir(parents=True, exist_ok=True)
        path = plots / f"{src.name}_{i}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


def section(src: Source, quick: bool, plots: Path) -> tuple[str, list[Path]]:
    if src.doc is None:
        return f"## {src.name}\n\n{src.cite()}: {src.problem}", []
    made = plot_tables(src, plots)
    command = " ".join(src.doc.get("command", []))
    parts = [
        f"## {src.name}",
        f"From {src.cite()}; `python bench/{command}`.",
        harness.render(src.doc),
        *(f"![{p.stem}](plots/{p.name})" for p in made),
    ]
    return "\n\n".join(parts), made


@dataclass(frozen=True)
class Built:
    report: Path
    headline: Path
    plots: list[Path]
    headline_lines: list[list[str]]
    missing: list[str]


def build(results: Path = harness.RESULTS, quick: bool = False) -> Built:
    sources = load_results(results, quick)
    missing = [s.name for s in sources.values() if s.doc is None]
    suffix = "_quick" if quick else ""
    sections, plots = [], []
    for src in sources.values():
        if src.doc is None and not src.problem:
            continue  # listed under Missing
        text, made = section(src, quick, results / "plots")
        sections.append(text)
        plots += made
    missing_text = "\n".join(f"- {name}: `{rerun(name, quick)}`" for name in missing) or "- none"
    report = "\n\n".join([
        f"# ownrank benchmarks{' (quick mode)' if quick else ''}",
        "Every figure below is in the result file its section names; the VM's speed "
        "drifts by 20-60% from hour to hour, so compare speeds within one benchmark run.",
        "## Targets\n\n" + headline(sources),
        "## Runs\n\n" + runs_table(sources),
        "## Missing\n\n" + missing_text,
        *sections,
    ])  # fmt: skip
    report_path = results / f"REPORT{suffix}.md"
    headline_path = results / f"headline{suffix}.md"
    results.mkdir(parents=True, exist_ok=True)
    report_path.write_text(report + "\n")
    headline_path.write_text(headline(sources) + "\n")
    return Built(report_path, headline_path, plots, headline_lines(sources), missing)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="read the quick-mode files")
    parser.add_argument("--results-dir", type=Path, default=harness.RESULTS)
    args = parser.parse_args(argv)
    built = build(args.results_dir, args.quick)
    print(built.headline.read_text())
    print(f"wrote {built.report} and {built.headline} ({len(built.plots)} plots)")
    if built.missing:
        print(f"missing: {', '.join(built.missing)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
