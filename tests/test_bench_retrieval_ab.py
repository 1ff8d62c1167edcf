"""bench/retrieval_ab.py: one store, copied twice, each copy retrieving candidates
its own way, both engines' calls timed in turn."""

from __future__ import annotations

from pathlib import Path

import ivf_codes_ab
import pytest
import retrieval_ab


@pytest.mark.slow
def test_both_settings_answer_every_call_kind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["speed", "--items", "2000", "--users", "20", "--calls", "6", "--warmup", "2"]
    assert retrieval_ab.main([*argv, "--cache", str(tmp_path / "cache")]) == 0
    out = capsys.readouterr().out
    for kind in ("recommend", "topic filter", "diversity 0.3"):
        assert kind in out
    table = [line for line in out.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 3  # header, rule, a row per kind
    assert "interest searches (before)" in table[0] and "neighbour lists" in table[0]
    assert not (tmp_path / "cache" / "retrieval-copies").exists()  # the copies are removed
    kept = tmp_path / "cache" / f"2000-20-4321-v{ivf_codes_ab.STORE_VERSION}"
    assert kept.is_dir()  # the store is kept
