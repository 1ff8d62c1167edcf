"""bench/engine_ab.py: a git revision's engine and the working tree's, each on its own
store of the engine benchmark's catalog and users, timed call by call in one process."""

from __future__ import annotations

from pathlib import Path

import engine_ab
import ivf_codes_ab
import pytest
import recommend_ab

from conftest import needs_git_checkout

pytestmark = needs_git_checkout


@pytest.mark.slow
def test_a_revision_and_the_working_tree_answer_every_recommend_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    argv = ["--base", "HEAD", "--items", "2000", "--users", "20", "--calls", "6"]
    assert engine_ab.main([*argv, "--warmup", "2", "--cache", str(cache)]) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3  # header, rule, a row per recommend kind
    assert "base / new p99" in table[0]
    for row in table[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(float(ratio) > 0 for ratio in cells[3:])
    rev = recommend_ab.revision_id("HEAD")
    # both stores kept (the base revision's named after it), the copies removed
    built = {p.name for p in cache.iterdir()}
    assert built == {f"2000-20-4321-v{ivf_codes_ab.STORE_VERSION}", f"{rev}-2000-20-4321"}
