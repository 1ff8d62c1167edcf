"""The multiprocess metrics directory of ``ownrank serve --workers N`` does not outlive
a server killed with ``kill -9``: the next start removes it, and only it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from api_support import settings_for

from ownrank.service import server

HOLD = (
    "import sys, time; from pathlib import Path;"
    "from ownrank.service.server import make_metrics_dir;"
    "print(make_metrics_dir(Path(sys.argv[1])), flush=True); time.sleep(120)"
)


def _holder(root: Path) -> tuple[subprocess.Popen[str], Path]:
    """A process that made a metrics directory under ``root`` and keeps running."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    return proc, Path(proc.stdout.readline().strip())


def test_kill_9_leaves_a_directory_that_the_next_start_removes(tmp_path: Path) -> None:
    proc, made = _holder(tmp_path)
    try:
        assert made.is_dir() and made.parent == tmp_path
        (made / f"counter_{proc.pid}.db").write_bytes(b"\0" * 16)
        mine = Path(server.make_metrics_dir(tmp_path))  # this live process's
        assert server.remove_stale_metrics_dirs(tmp_path) == []
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert made.is_dir()  # nothing cleans up after a kill -9 ...
    assert server.remove_stale_metrics_dirs(tmp_path) == [made]  # ... but the next start
    assert not made.exists() and mine.is_dir()


def test_a_directory_stays_while_a_worker_of_a_dead_parent_writes_to_it(tmp_path: Path) -> None:
    dead_parent = tmp_path / f"{server.METRICS_DIR_PREFIX}999999999-1-abc"
    dead_parent.mkdir()
    assert server.remove_stale_metrics_dirs(tmp_path) == [dead_parent]
    orphaned = tmp_path / f"{server.METRICS_DIR_PREFIX}999999999-1-def"
    orphaned.mkdir()
    (orphaned / f"histogram_{os.getpid()}.db").write_bytes(b"")  # a live "worker"
    assert server.remove_stale_metrics_dirs(tmp_path) == []


def test_directories_of_older_releases(tmp_path: Path) -> None:
    """Named without an owner: gone once every worker named in it is gone; one no
    worker wrote to yet may belong to a server still starting, and stays."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # a pid that no longer runs
    dead = tmp_path / f"{server.METRICS_DIR_PREFIX}k2j3h4"
    dead.mkdir()
    (dead / f"counter_{proc.pid}.db").write_bytes(b"")
    live = tmp_path / f"{server.METRICS_DIR_PREFIX}q8w7e6"
    live.mkdir()
    (live / f"counter_{os.getpid()}.db").write_bytes(b"")
    starting = tmp_path / f"{server.METRICS_DIR_PREFIX}z0x9c8"
    starting.mkdir()
    assert server.remove_stale_metrics_dirs(tmp_path) == [dead]
    assert live.is_dir() and starting.is_dir()


def test_serve_removes_stale_directories_and_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / f"{server.METRICS_DIR_PREFIX}999999999-1-stale"
    stale.mkdir()
    seen: list[str] = []

    def run(_self: object) -> None:  # instead of serving: note the directory in use
        seen.append(os.environ[server.MULTIPROC_ENV])

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(server._SocketPerWorker, "run", run)
    environ = dict(os.environ)  # serve exports the settings to its workers' environment
    try:
        server.serve(settings_for(tmp_path / "data"), port=0, workers=2)
    finally:
        os.environ.clear()
        os.environ.update(environ)
    assert not stale.exists()
    assert len(seen) == 1 and Path(seen[0]).parent == tmp_path
    assert list(tmp_path.glob(f"{server.METRICS_DIR_PREFIX}*")) == []
