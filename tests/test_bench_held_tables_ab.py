"""bench/held_tables_ab.py: one store, copied three times, each copy keeping what a
retrieved pool reads its own way, the three engines' calls timed in turn."""

from __future__ import annotations

from pathlib import Path

import held_tables_ab
import ivf_codes_ab
import pytest


@pytest.mark.slow
def test_three_settings_answer_every_call_kind_with_the_same_lists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--items", "2000", "--users", "20", "--calls", "6", "--warmup", "2"]
    # lists never held whole, so the second and third settings hold them by owner
    argv += ["--whole", "0", "--cache", str(tmp_path / "cache")]
    assert held_tables_ab.main(argv) == 0
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3  # header, rule, a row per kind
    for setting in held_tables_ab.SETTINGS:
        assert setting in table[0]
    for row in table[2:]:
        assert row.rstrip(" |").endswith("| 0")  # no call's list differs
    assert not (tmp_path / "cache" / "held-tables-copies").exists()  # copies removed
    kept = tmp_path / "cache" / f"2000-20-4321-v{ivf_codes_ab.STORE_VERSION}"
    assert kept.is_dir()  # the store is kept
