"""The README's Python examples run as written (in a fresh folder, with the bundled
base model), one after the other in one namespace, as a reader would paste them."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_examples() -> None:
    assert len(python_blocks()) >= 2


@pytest.mark.slow
def test_the_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(os.environ, "HF_HUB_OFFLINE", "1")
    namespace: dict[str, object] = {"__name__": "readme"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for block in python_blocks():
            exec(compile(block, str(README), "exec"), namespace)
    out = printed.getvalue().splitlines()
    assert out[0].startswith("post-1 ")  # the rose-pruning post answers the pruning query
    assert "5 ['post-9']" in out  # the deleted post is reported, not stored
    recommended = [line.split()[0] for line in out if line.startswith("post-")][3:]
    assert len(recommended) == 3 and not {"post-1", "post-7", "post-2", "post-4"} & set(
        recommended
    )  # nothing already seen comes back
