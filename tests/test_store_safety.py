"""The store stays consistent: index files rebuilt or caught up, failed batches leave no trace,
other processes see changes, and a store never mixes two models."""

from __future__ import annotations

import multiprocessing as mp
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ownrank import DimensionMismatchError, Engine, ModelMismatchError
from ownrank.engine.engine import INDEX_FILE
from ownrank.storage.catalog_store import CatalogStore

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items, ids


def snapshot(engine: Engine) -> list[list[str]]:
    return [ids(engine.search(q, 20)) for q in ("jazz story", "chess", "garden 3", "cooking 5")]


def test_index_is_rebuilt_after_its_file_is_deleted(tmp_path: Path) -> None:
    enc = WordHashEncoder()
    with make_engine(tmp_path, enc) as engine:
        engine.catalog.upsert(catalog_items(90))
        engine.catalog.delete(["jazz-0000", "chess-0001"])
        expected = snapshot(engine)
    (tmp_path / INDEX_FILE).unlink()
    with make_engine(tmp_path, enc) as engine:
        assert engine.catalog.keeper.rebuilds == 1
        assert snapshot(engine) == expected
    assert (tmp_path / INDEX_FILE).exists()  # written back on close
    with make_engine(tmp_path, enc) as engine:
        assert engine.catalog.keeper.rebuilds == 0  # loaded, not rebuilt


def test_corrupt_index_file_is_rebuilt(tmp_path: Path) -> None:
    enc = WordHashEncoder()
    with make_engine(tmp_path, enc) as engine:
        engine.catalog.upsert(catalog_items(30))
        expected = snapshot(engine)
    path = tmp_path / INDEX_FILE
    path.write_bytes(path.read_bytes()[:100])
    with make_engine(tmp_path, enc) as engine:
        assert engine.catalog.keeper.rebuilds == 1
        assert snapshot(engine) == expected


def test_stale_index_file_is_caught_up_from_the_change_log(tmp_path: Path) -> None:
    enc = WordHashEncoder()
    with make_engine(tmp_path, enc) as engine:
        engine.catalog.upsert(catalog_items(60))
    old_file = tmp_path / "old.index"
    shutil.copy(tmp_path / INDEX_FILE, old_file)
    with make_engine(tmp_path, enc) as engine:
        engine.catalog.upsert([{"id": "fresh", "title": "brand new polka article"}])
        engine.catalog.delete(["jazz-0006"])
        engine.catalog.update_properties("chess-0001", {"topic": "moved"})
        expected = snapshot(engine)
    shutil.copy(old_file, tmp_path / INDEX_FILE)  # as if the writer crashed before saving
    with make_engine(tmp_path, enc) as engine:
        assert engine.catalog.keeper.rebuilds == 0
        assert snapshot(engine) == expected
        assert ids(engine.search("polka", 1)) == ["fresh"]
        assert "jazz-0006" not in ids(engine.search("jazz", 60))
        assert ids(engine.search("x", 5, filters={"topic": "moved"})) == ["chess-0001"]


def test_index_far_behind_a_trimmed_log_is_rebuilt(tmp_path: Path) -> None:
    enc = WordHashEncoder()
    with make_engine(tmp_path, enc, changelog_keep=10) as engine:
        engine.catalog.upsert(catalog_items(10))
    old_file = tmp_path / "old.index"
    shutil.copy(tmp_path / INDEX_FILE, old_file)
    with make_engine(tmp_path, enc, changelog_keep=10) as engine:
        for item in catalog_items(40)[10:]:
            engine.catalog.upsert([item])  # 30 writes: the log keeps only 10
        expected = snapshot(engine)
    shutil.copy(old_file, tmp_path / INDEX_FILE)
    with make_engine(tmp_path, enc, changelog_keep=10) as engine:
        assert engine.catalog.keeper.rebuilds == 1
        assert snapshot(engine) == expected


def test_a_batch_failing_half_way_leaves_no_trace(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.catalog.upsert(catalog_items(20))
    before = snapshot(engine)
    seq_before = engine.info()["catalog_seq"]
    real_put = CatalogStore.put_vector
    calls = {"n": 0}

    def failing_put(self: CatalogStore, *args: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("disk on fire")
        real_put(self, *args)

    monkeypatch.setattr(CatalogStore, "put_vector", failing_put)
    new_items = catalog_items(40)[20:]
    with pytest.raises(OSError, match="disk on fire"):
        engine.catalog.upsert(new_items)
    monkeypatch.undo()
    assert engine.catalog.count() == 20
    assert engine.info()["catalog_seq"] == seq_before
    assert not any(i["id"] in engine.catalog for i in new_items)
    assert snapshot(engine) == before
    # and the store still takes writes
    assert len(engine.catalog.upsert(new_items).added) == 20


def test_an_encoder_failure_stores_nothing(tmp_path: Path) -> None:
    class FailingEncoder(WordHashEncoder):
        def encode(self, texts: Any) -> np.ndarray:
            raise RuntimeError("model crashed")

    with make_engine(tmp_path, FailingEncoder()) as engine:
        with pytest.raises(RuntimeError):
            engine.catalog.upsert(catalog_items(5))
        assert engine.catalog.count() == 0


def test_wrong_embedding_dimension_is_refused(tmp_path: Path) -> None:
    class ShortVectors(WordHashEncoder):
        def encode(self, texts: Any) -> np.ndarray:
            return super().encode(texts)[:, :10]

    with make_engine(tmp_path, ShortVectors()) as engine:
        with pytest.raises(DimensionMismatchError):
            engine.catalog.upsert(catalog_items(5))
        assert engine.catalog.count() == 0


def test_store_refuses_another_model(tmp_path: Path) -> None:
    with make_engine(tmp_path, WordHashEncoder(name="model-a")) as engine:
        engine.catalog.upsert(catalog_items(5))
    with pytest.raises(ModelMismatchError) as caught:
        make_engine(tmp_path, WordHashEncoder(name="model-b"))
    assert "test:model-a:64" in str(caught.value) and "test:model-b:64" in str(caught.value)
    with make_engine(tmp_path, WordHashEncoder(name="model-a")) as engine:
        assert engine.catalog.count() == 5


def _writer(path: str, commands: Any, done: Any) -> None:
    """Runs in another process: applies catalog changes on request."""
    with make_engine(Path(path), WordHashEncoder()) as engine:
        while (cmd := commands.get()) is not None:
            op, arg = cmd
            if op == "upsert":
                engine.catalog.upsert(arg)
            elif op == "delete":
                engine.catalog.delete(arg)
            elif op == "props":
                engine.catalog.update_properties(*arg)
            done.put(op)


def mapped_inodes(pid: int | str, path: Path) -> set[int]:
    """The inodes of ``path`` (any version of it) that process ``pid`` has mapped."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[5].startswith(str(path)):
            found.add(int(fields[4]))
    return found


def _ivf_reader(path: str, commands: Any, done: Any) -> None:
    """Runs in another process: opens the IVF store, searches, adds an item on request."""
    with make_engine(Path(path), WordHashEncoder(), index_kind="ivf") as engine:
        done.put(ids(engine.search("jazz story", 20)))
        while (cmd := commands.get()) is not None:
            engine.catalog.upsert(cmd)
            done.put(ids(engine.search("yodel", 1)))


def test_processes_opening_an_ivf_store_share_one_mapped_index_file(tmp_path: Path) -> None:
    """The second process maps the file the first wrote (the same inode: one copy of
    the vectors in the page cache for both), and each catches up with the other's
    writes in its own in-memory delta, leaving the file as it is; at close the file is
    written once for a catalog state both processes hold."""
    ctx = mp.get_context("spawn")
    commands, done = ctx.Queue(), ctx.Queue()
    with make_engine(tmp_path, WordHashEncoder(), index_kind="ivf") as engine:
        engine.catalog.upsert(catalog_items(400))
        expected = ids(engine.search("jazz story", 20))
        path = tmp_path / INDEX_FILE
        inode = path.stat().st_ino
        assert mapped_inodes("self", path) == {inode}
        child = ctx.Process(target=_ivf_reader, args=(str(tmp_path), commands, done))
        child.start()
        try:
            assert done.get(timeout=60) == expected
            assert mapped_inodes(child.pid or 0, path) == {inode}
            commands.put([{"id": "remote", "title": "yodel yodel"}])
            assert done.get(timeout=60) == ["remote"]
            assert ids(engine.search("yodel", 1)) == ["remote"]
            assert engine.catalog.keeper.index.delta_count == 1
            assert path.stat().st_ino == inode
        finally:
            commands.put(None)
            child.join(timeout=60)
        assert child.exitcode == 0
        written_by_child = path.stat().st_ino  # its close saved the state both hold
        assert written_by_child != inode
    assert path.stat().st_ino == written_by_child  # so this close did not write it again


def test_changes_from_another_process_are_visible_at_the_next_query(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    commands, done = ctx.Queue(), ctx.Queue()
    with make_engine(tmp_path, WordHashEncoder()) as engine:
        engine.catalog.upsert(catalog_items(30))
        assert engine.search("jazz", 5)  # index loaded in this process
        child = ctx.Process(target=_writer, args=(str(tmp_path), commands, done))
        child.start()
        try:
            commands.put(("upsert", [{"id": "remote", "title": "yodel yodel"}]))
            assert done.get(timeout=60) == "upsert"
            assert ids(engine.search("yodel", 1)) == ["remote"]
            commands.put(("delete", ["remote", "jazz-0000"]))
            assert done.get(timeout=60) == "delete"
            assert "remote" not in ids(engine.search("yodel", 30))
            assert "jazz-0000" not in ids(engine.search("jazz story", 30))
            commands.put(("props", ("chess-0001", {"topic": "remote-change"})))
            assert done.get(timeout=60) == "props"
            assert ids(engine.search("x", 5, filters={"topic": "remote-change"})) == ["chess-0001"]
        finally:
            commands.put(None)
            child.join(timeout=60)
        assert child.exitcode == 0
