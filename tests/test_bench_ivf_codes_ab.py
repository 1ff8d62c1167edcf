"""bench/ivf_codes_ab.py: one store, copied twice, each copy's IVF index of other
codes, both engines' calls timed in turn."""

from __future__ import annotations

from pathlib import Path

import ivf_codes_ab
import pytest


@pytest.mark.slow
def test_both_settings_answer_every_call_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--items", "2000", "--users", "20", "--calls", "6", "--warmup", "2"]
    assert ivf_codes_ab.main([*argv, "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    assert "building" in out
    for kind in ("recommend", "topic filter", "diversity 0.3", "search, personalized"):
        assert kind in out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4  # header, rule, a row per kind
    assert all(" of 6 |" in line for line in table[2:])  # identical lists, of the calls
    assert not (tmp_path / "cache" / "copies").exists()  # the copies are removed
    kept = tmp_path / "cache" / f"2000-20-4321-v{ivf_codes_ab.STORE_VERSION}"
    assert kept.is_dir()  # the store is kept
    # a second run reuses the store
    assert ivf_codes_ab.main([*argv, "--cache", str(tmp_path / "cache")]) == 0
    assert "building" not in capsys.readouterr().out
