"""The erasure fence: an erased user stays erased across every combination of restored
backups, past the tombstones' retention and across crashes at any step of an erasure;
a re-created user's older generations are refused."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ownrank import Engine, EngineConfig, StaleGenerationError, UserErasedError
from ownrank.engine.audit import shared_statistics_consistent
from ownrank.engine.erasure_log import DAY
from ownrank.errors import StoreFormatError
from ownrank.service.cli import app as cli_app
from ownrank.storage import backup
from ownrank.storage.erasure_fence import (
    ENTRY_SIZE,
    MAGIC,
    FileErasureFence,
    fence_path,
)

from conftest import WordHashEncoder
from test_catalog import catalog_items

ITEMS = [i["id"] for i in catalog_items(60)]
# an export of a user with no events, for imports without a real stale copy at hand
STALE_EMPTY = {
    "exists": True,
    "version": 1,
    "created_at": "2026-01-01T00:00:00Z",
    "consent": {"shared_statistics": True},
    "events": [],
}


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def open_store(path: Path, clock: Clock, **config: Any) -> Engine:
    return Engine(path, EngineConfig(**config), encoder=WordHashEncoder(), clock=clock)


def likes(first: int) -> list[dict[str, Any]]:
    return [{"kind": "like", "item_id": ITEMS[first + k]} for k in (0, 3, 6)]


def assert_erased(engine: Engine, user: str, stale: dict[str, Any] | None = None) -> None:
    """Unreadable, every write and import refused, nothing left (``audit``)."""
    assert engine._users.record(user) is None
    assert engine.export(user)["exists"] is False
    for write in (
        lambda: engine.interact(user, likes(10)),
        lambda: engine.set_consent(user, False),
        lambda: engine.import_user(stale or {"format": 1, "user_id": user, **STALE_EMPTY}),
    ):
        with pytest.raises(UserErasedError):
            write()
    report = engine.audit(user)
    assert report.clean, report


# -- the restore matrix ----------------------------------------------------------------


def _erased_after_backups(root: Path, clock: Clock) -> tuple[Path, dict[str, Any], dict[str, Any]]:
    """A store whose data and keystore were backed up, then alice erased; returns the
    store, alice's stale export and bob's export."""
    store = root / "store"
    with open_store(store, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        engine.interact("alice", likes(0))
        engine.interact("bob", likes(1))
        engine.backup(root / "data-backup")
        engine.backup_keystore(root / "keystore-backups")
        stale = engine.export("alice")
        engine.erase("alice")
        bob = engine.export("bob")
    return store, stale, bob


def _keystore_backup(root: Path) -> Path:
    (found,) = (root / "keystore-backups").iterdir()
    return found


def _restore_data(root: Path, store: Path) -> None:
    backup.restore_data(root / "data-backup", store)


def _restore_keystore(root: Path, store: Path) -> None:
    backup.restore_keystore(_keystore_backup(root), store)


def _restore_both(root: Path, store: Path) -> None:
    _restore_data(root, store)
    _restore_keystore(root, store)


RESTORES: dict[str, Callable[[Path, Path], None]] = {
    "data": _restore_data,
    "keystore": _restore_keystore,
    "both": _restore_both,
}


@pytest.mark.parametrize("then", ["nothing", "stale export", "write"])
@pytest.mark.parametrize("restored", list(RESTORES))
def test_no_restore_brings_an_erased_user_back(tmp_path: Path, restored: str, then: str) -> None:
    clock = Clock()
    store, stale, bob = _erased_after_backups(tmp_path, clock)
    RESTORES[restored](tmp_path, store)
    with open_store(store, clock) as engine:
        assert engine._users.record("alice") is None  # before any write or import
        if then == "stale export":
            with pytest.raises(UserErasedError):
                engine.import_user(stale)
        elif then == "write":
            with pytest.raises(UserErasedError):
                engine.interact("alice", likes(20))
        assert_erased(engine, "alice", stale)
        assert engine.export("bob") == bob
        assert shared_statistics_consistent(engine._users)
        with engine._env.read() as txn:
            assert engine._shared.count(txn, ITEMS[0]) == 0  # alice's like is not counted


def test_a_restore_heals_even_without_reconcile_on_open(tmp_path: Path) -> None:
    """Reads and writes consult the fence themselves; the next reconciling open then
    deletes what the restore brought back."""
    clock = Clock()
    store, stale, _bob = _erased_after_backups(tmp_path, clock)
    RESTORES["both"](tmp_path, store)
    with open_store(store, clock, reconcile_on_open=False) as engine:
        assert engine._users.record("alice") is None
        assert engine.export("alice")["exists"] is False
        for write in (
            lambda: engine.interact("alice", likes(20)),
            lambda: engine.import_user(stale),
        ):
            with pytest.raises(UserErasedError):
                write()
    with open_store(store, clock) as engine:
        assert engine.last_reconcile is not None
        assert engine.last_reconcile.fenced_records_purged == 1
        assert engine.last_reconcile.erasures_reapplied == 1  # the restored data key
        assert_erased(engine, "alice")


def test_the_service_refuses_writes_and_imports_after_a_restore(tmp_path: Path) -> None:
    from api_support import ADMIN, api_client

    clock = Clock()
    store, stale, _bob = _erased_after_backups(tmp_path, clock)
    RESTORES["both"](tmp_path, store)
    with api_client(store) as client:
        put = client.put("/users/alice", json=stale, headers={**ADMIN, "If-Match": "*"})
        assert put.status_code == 409 and put.json()["code"] == "user_erased"
        write = client.post(
            "/users/alice/interactions",
            json={"events": likes(20)},
            headers=ADMIN,
        )
        assert write.status_code == 409
        audit = client.get("/users/alice/audit", headers=ADMIN).json()
        assert audit["clean"] is True


# -- beyond the tombstones' retention ------------------------------------------------------


def test_an_old_erasure_still_blocks_a_stale_write(tmp_path: Path) -> None:
    clock = Clock()
    with open_store(tmp_path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        engine.interact("alice", likes(0))
        stale = engine.export("alice")
        engine.erase("alice")
    clock.now += 400 * DAY  # far past the 30-day tombstones (and the 90-day journal)
    with open_store(tmp_path, clock) as engine:  # the open expires both
        with engine._env.read() as txn:
            assert engine._users.erasures.counts(txn) == (0, 0)
        with pytest.raises(UserErasedError):
            engine.import_user(stale)
        assert_erased(engine, "alice")


# -- generations -------------------------------------------------------------------------


def test_recreating_starts_a_generation_and_older_copies_are_refused(tmp_path: Path) -> None:
    clock = Clock()
    with open_store(tmp_path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        engine.interact("alice", likes(0))
        first = engine.export("alice")
        assert first["generation"] == 0
        engine.erase("alice")
        engine.recreate_user("alice")
        engine.interact("alice", likes(1))
        second = engine.export("alice")
        assert second["generation"] == 1
        with pytest.raises(StaleGenerationError) as refused:
            engine.import_user(first)
        assert refused.value.code == "stale_generation"
        assert engine.export("alice") == second  # nothing written
        engine.import_user(second)  # the current generation's copy is fine
        engine.erase("alice")
        engine.recreate_user("alice")
        for old in (first, second):
            with pytest.raises(StaleGenerationError):
                engine.import_user(old)
        assert engine.export("alice")["generation"] == 2


def test_a_restore_from_before_an_erasure_and_re_creation(tmp_path: Path) -> None:
    """The restored record is of the erased generation: deleted on open; the re-created
    user's own (newer) record was not in the backup, so the user starts empty."""
    clock = Clock()
    store = tmp_path / "store"
    with open_store(store, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        engine.interact("alice", likes(0))
        engine.backup(tmp_path / "data-backup")
        engine.erase("alice")
        engine.recreate_user("alice")
        engine.interact("alice", likes(1))
    backup.restore_data(tmp_path / "data-backup", store)
    with open_store(store, clock) as engine:
        assert engine._users.record("alice") is None
        assert shared_statistics_consistent(engine._users)
        with engine._env.read() as txn:
            assert engine._shared.count(txn, ITEMS[0]) == 0
        engine.interact("alice", likes(2))  # re-created: writes are welcome
        assert engine.export("alice")["generation"] == 1


def test_a_recommend_racing_an_erasure_ranks_as_for_a_stranger(tmp_path: Path) -> None:
    """A recommend reads the record and finds one of its items deleted; before its
    catch-up rewrite reads the record again, an erasure wrote its fence entry (its
    data transaction not yet committed): the call ranks as for a user it never saw
    (it raised UserErasedError, a 409 on a read)."""
    clock = Clock()
    with open_store(tmp_path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        engine.interact("alice", likes(0))
        engine.catalog.delete([ITEMS[0]])  # the next recommend asks for the catch-up
        fenced, release = threading.Event(), threading.Event()
        shared, candidates = engine._users.shared, engine._users.ranking.candidates
        apply, rows_of = shared.apply, candidates.ref_rows

        def paused_apply(*args: Any) -> Any:  # inside the erasure's data transaction
            if threading.current_thread().name == "eraser":
                fenced.set()
                assert release.wait(10)
            return apply(*args)

        eraser = threading.Thread(target=lambda: engine.erase("alice"), name="eraser")

        stranger: list[str] = []

        def erasing_meanwhile(log: Any) -> Any:  # after the recommend read the record
            eraser.start()
            assert fenced.wait(10)
            # (the statistics as the racing call sees them: the erasure not committed)
            stranger.extend(r.item_id for r in engine.recommend("stranger", 10))
            return rows_of(log)

        shared.apply = paused_apply  # type: ignore[method-assign]
        candidates.ref_rows = erasing_meanwhile  # type: ignore[method-assign]
        try:
            found = engine.recommend("alice", 10)
        finally:
            release.set()
            eraser.join(10)
            shared.apply, candidates.ref_rows = apply, rows_of  # type: ignore[method-assign]
        assert [r.item_id for r in found] == stranger and len(stranger) == 10
        assert_erased(engine, "alice")


# -- crashes between the steps -----------------------------------------------------------


class Crash(Exception):
    pass


def _crash(*_args: Any, **_kwargs: Any) -> Any:
    raise Crash


@pytest.mark.parametrize("after", ["fence entry", "data transaction"])
def test_a_crash_during_an_erasure_heals_on_the_next_open(tmp_path: Path, after: str) -> None:
    clock = Clock()
    engine = open_store(tmp_path, clock)
    engine.catalog.upsert(catalog_items(60))
    engine.interact("alice", likes(0))
    engine.interact("bob", likes(1))
    if after == "fence entry":
        engine._users.shared.apply = _crash  # type: ignore[method-assign]
    else:
        engine._users.keystore.destroy_exact = _crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        engine.erase("alice")
    # the crashed process is gone; until then, another process already sees the fence
    assert engine._users.record("alice") is None
    with pytest.raises(UserErasedError):
        engine.interact("alice", likes(20))
    engine.close()
    with open_store(tmp_path, clock) as reopened:
        assert_erased(reopened, "alice")
        with reopened._env.read() as txn:
            assert reopened._users.erasures.tombstone(txn, reopened._users.key("alice"), clock())
        assert reopened._users.record("bob") is not None


def test_a_crash_during_a_re_creation_heals_on_the_next_open(tmp_path: Path) -> None:
    clock = Clock()
    engine = open_store(tmp_path, clock)
    engine.catalog.upsert(catalog_items(60))
    engine.interact("alice", likes(0))
    engine.erase("alice")
    engine._users.erasures.lift = _crash  # type: ignore[method-assign]
    with pytest.raises(Crash):
        engine.recreate_user("alice")  # the fence has the re-creation, LMDB not yet
    engine.close()
    with open_store(tmp_path, clock) as reopened:
        with reopened._env.read() as txn:
            key = reopened._users.key("alice")
            assert reopened._users.erasures.tombstone(txn, key, clock()) is None
        reopened.interact("alice", likes(1))
        assert reopened.export("alice")["generation"] == 1


# -- the fence itself --------------------------------------------------------------------


def test_the_fence_is_outside_both_backups_and_holds_no_raw_id(tmp_path: Path) -> None:
    clock = Clock()
    store, _stale, _bob = _erased_after_backups(tmp_path, clock)
    fence = fence_path(store)
    assert fence.exists() and fence.parent.parent == store
    for backup_dir in (tmp_path / "data-backup", _keystore_backup(tmp_path)):
        assert not any(p.name == fence.name for p in backup_dir.rglob("*"))
    raw = fence.read_bytes()
    assert b"alice" not in raw and raw.startswith(MAGIC)
    assert (len(raw) - len(MAGIC)) % ENTRY_SIZE == 0


def test_a_torn_last_entry_is_skipped_then_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "fence.log"
    fence = FileErasureFence(path, sync=False)
    fence.erased(b"a" * 16, 100, 0)
    with open(path, "ab") as fh:  # a crash in the middle of the next append
        fh.write(b"\x01torn")
    other = FileErasureFence(path, sync=False)  # another process
    assert other.state(b"a" * 16) is not None and other.state(b"b" * 16) is None
    other.erased(b"b" * 16, 101, 0)
    assert (path.stat().st_size - len(MAGIC)) % ENTRY_SIZE == 0
    assert fence.state(b"b" * 16) is not None  # the first instance catches up
    fence.recreated(b"a" * 16, 102, 1)
    state = other.state(b"a" * 16)
    assert state is not None and not state.erased and state.generation == 1
    assert state.last_erased_at == 100


def test_a_retention_moves_the_horizon_and_older_backups_are_refused(tmp_path: Path) -> None:
    clock = Clock()
    store, _stale, _bob = _erased_after_backups(tmp_path, clock)
    clock.now += 3 * DAY
    with open_store(store, clock, erasure_fence_retention_days=1.0) as engine:
        assert len(engine._fence.states()) == 0  # alice's entry is past the retention
        assert engine._fence.horizon() == int(clock.now - DAY)
    with pytest.raises(StoreFormatError, match="horizon"):
        backup.restore_data(tmp_path / "data-backup", store)
    refused = CliRunner().invoke(
        cli_app, ["restore", str(tmp_path / "data-backup"), "--data-dir", str(store)]
    )
    assert refused.exit_code != 0 and "erasure fence's horizon" in refused.output
    with pytest.raises(StoreFormatError, match="horizon"):
        backup.restore_keystore(_keystore_backup(tmp_path), store)
    entries = (fence_path(store).stat().st_size - len(MAGIC)) // ENTRY_SIZE
    assert entries == 1  # the horizon entry only


def test_an_older_store_s_erasures_move_into_the_fence(tmp_path: Path) -> None:
    clock = Clock()
    with open_store(tmp_path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        engine.interact("alice", likes(0))
        engine.erase("alice")
    os.remove(fence_path(tmp_path))  # as a store from before the fence
    with open_store(tmp_path, clock) as engine:
        assert engine.last_reconcile is not None
        assert engine.last_reconcile.fence_entries_migrated == 1
        state = engine._fence.state(engine._users.key("alice"))
        assert state is not None and state.erased


def test_a_write_from_an_erased_generation_is_refused(tmp_path: Path) -> None:
    """A client (a device, a retried request) that says which generation its copy is
    of cannot write into the user's next generation."""
    clock = Clock()
    with open_store(tmp_path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        first = engine.interact("alice", likes(0), generation=0)
        assert first.generation == 0
        engine.erase("alice")
        engine.recreate_user("alice")
        before = engine.export("alice")
        with pytest.raises(StaleGenerationError):
            engine.interact("alice", likes(1), generation=0)
        assert engine.export("alice") == before  # nothing written
        assert engine.interact("alice", likes(1), generation=1).generation == 1
        assert engine.interact("alice", likes(2)).generation == 1  # no claim: accepted


def test_the_service_refuses_a_stale_generation(tmp_path: Path) -> None:
    from api_support import ADMIN, api_client, sample_items

    with api_client(tmp_path / "data") as client:
        assert client.post("/items", json={"items": sample_items()}, headers=ADMIN).is_success
        events = {"events": [{"kind": "like", "item_id": "jazz-0"}]}
        first = client.post("/users/alice/interactions", json=events, headers=ADMIN).json()
        assert first["generation"] == 0
        assert client.delete("/users/alice", headers=ADMIN).is_success
        assert client.post("/users/alice/recreate", json={}, headers=ADMIN).is_success
        stale = client.post(
            "/users/alice/interactions", json={**events, "generation": 0}, headers=ADMIN
        )
        assert stale.status_code == 409 and stale.json()["code"] == "stale_generation"
        current = client.post(
            "/users/alice/interactions", json={**events, "generation": 1}, headers=ADMIN
        )
        assert current.status_code == 200 and current.json()["generation"] == 1


@pytest.mark.parametrize("path", ["interact", "interact_many"])
def test_a_refused_writer_leaves_the_data_key_of_a_stored_record(tmp_path: Path, path: str) -> None:
    """The interleaving a 1,000-race run once hit (``test_erasure_races``): writer A makes
    the new user's data key, writer B commits a record sealed with it, an erasure writes
    its fence entry, A retries and is refused. A's cleanup must not destroy the key of
    B's record, or the erasure finds an unreadable record and its receipt counts none of
    B's events."""
    with open_store(tmp_path, Clock()) as engine:
        engine.catalog.upsert(catalog_items(60))
        records = engine._users.records
        keystore = records.keystore
        key = engine._users.key("u")
        interleaved: list[int] = []
        started: list[bool] = []

        def b_commits_then_the_fence_goes_up() -> None:
            started.append(True)
            interleaved.append(engine.interact("u", likes(0)).accepted)  # B, with A's key
            state = records.fence.state(key)
            records.fence.erased(key, int(time.time()), state.generation if state else 0)

        if path == "interact":
            made = records.data_key

            def data_key(user_key: bytes, known: bytes | None) -> tuple[bytes | None, bool]:
                found = made(user_key, known)
                if not started:
                    b_commits_then_the_fence_goes_up()
                return found

            records.data_key = data_key  # type: ignore[method-assign]
            with pytest.raises(UserErasedError):
                engine.interact("u", likes(1))  # A
        else:
            make_many = keystore.get_or_create_many

            def get_or_create_many(keys: Any, now: int) -> dict[bytes, tuple[bytes, bool]]:
                found = make_many(keys, now)
                if not started:
                    b_commits_then_the_fence_goes_up()
                return found

            keystore.get_or_create_many = get_or_create_many  # type: ignore[method-assign]
            assert engine.interact_many({"u": likes(1)}).erased == ["u"]  # A
        assert interleaved == [3]
        assert keystore.wrapped(key) is not None, "a refused writer destroyed a record's key"
        receipt = engine.erase("u")
        assert (receipt.existed, receipt.events_removed, receipt.data_key_destroyed) == (
            True,
            3,
            True,
        )
        assert_erased(engine, "u")
