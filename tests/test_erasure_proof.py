"""Erasure that reaches every copy: sealed records, destroyed keys, tombstones,
backups, compaction, crash states between the two environments, signed receipts."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ownrank import Engine, EngineConfig, UserErasedError
from ownrank.engine.audit import scan_files, shared_statistics_consistent
from ownrank.engine.erasure_log import DAY
from ownrank.engine.receipts import verify_receipt
from ownrank.engine.record_cipher import is_sealed
from ownrank.errors import StoreBusyError
from ownrank.storage import backup
from ownrank.storage.keystore import MASTER_KEY_ENV

from conftest import WordHashEncoder
from test_catalog import catalog_items

NOW = 1_770_000_000.0
SECRET_QUERY = "whispered-query-about-qwertyzx"
ITEMS = [i["id"] for i in catalog_items(60)]


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def open_store(path: Path, clock: Clock, **config: Any) -> Engine:
    return Engine(path, EngineConfig(**config), encoder=WordHashEncoder(), clock=clock)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    engine = open_store(tmp_path / "store", clock)
    engine.catalog.upsert(catalog_items(60))
    yield engine
    engine.close()


def add_user(engine: Engine, user_id: str, first: int = 0) -> None:
    engine.interact(
        user_id,
        [
            {"kind": "like", "item_id": ITEMS[first]},
            {"kind": "like", "item_id": ITEMS[first + 3]},
            {"kind": "search", "query": SECRET_QUERY},
        ],
    )


def sealed_value(engine: Engine, user_id: str) -> bytes | None:
    with engine._env.read() as txn:
        raw = engine._users.records.raw(txn, engine._users.key(user_id))
    return None if raw is None else bytes(raw)


def test_records_are_sealed_with_the_users_own_key(store: Engine) -> None:
    add_user(store, "alice")
    add_user(store, "bob", first=1)
    raw = sealed_value(store, "alice")
    assert raw is not None and is_sealed(raw)
    assert SECRET_QUERY.encode() not in raw and ITEMS[0].encode() not in raw
    assert store._keystore.count() == 2
    # a record moved under another user's key does not open
    bob_key = store._users.key("bob")
    with store._env.write() as txn:
        store._users.records.put(txn, bob_key, raw)
    assert store._users.record("bob") is None


def test_erase_destroys_the_key_and_signs_a_receipt(store: Engine) -> None:
    add_user(store, "alice")
    key = store._users.key("alice")
    receipt = store.erase("alice")
    assert receipt.existed and receipt.data_key_destroyed and receipt.events_removed == 3
    assert receipt.shared_units_subtracted > 0 and receipt.model_fingerprint_unchanged
    assert store._keystore.wrapped(key) is None and sealed_value(store, "alice") is None
    body = receipt.as_dict()
    keys = store.receipt_public_keys()
    assert verify_receipt(body, keys)
    assert not verify_receipt({**body, "events_removed": 2}, keys)  # tampered
    assert not verify_receipt(body, {})  # untrusted key
    again = store.erase("alice")
    assert (
        not again.existed and not again.data_key_destroyed and verify_receipt(again.as_dict(), keys)
    )
    # rotation: old receipts still verify, new ones carry the new key
    old_key_id = store._signer.key_id
    new_key_id = store._signer.rotate()
    assert new_key_id != old_key_id
    assert verify_receipt(body, store.receipt_public_keys())
    assert store.erase("nobody").key_id == new_key_id


def test_a_tombstone_blocks_writes_until_the_user_is_recreated(store: Engine, clock: Clock) -> None:
    add_user(store, "alice")
    stale_copy = store.export("alice")
    store.erase("alice")
    for write in (
        lambda: store.interact("alice", [{"kind": "like", "item_id": ITEMS[5]}]),
        lambda: store.set_consent("alice", False),
        lambda: store.import_user(stale_copy),  # a device re-uploading its old copy
    ):
        with pytest.raises(UserErasedError):
            write()
    assert store.export("alice")["exists"] is False
    assert store._keystore.wrapped(store._users.key("alice")) is None  # no key left behind
    store.recreate_user("alice", shared_statistics=False)
    store.interact("alice", [{"kind": "like", "item_id": ITEMS[5]}])
    assert store.export("alice")["consent"]["shared_statistics"] is False
    # tombstones expire after their retention; the erasure fence does not
    add_user(store, "carol")
    carol_copy = store.export("carol")
    store.erase("carol")
    clock.now += store.config.tombstone_retention_days * DAY + 1
    with store._env.read() as txn:
        assert store._users.erasures.tombstone(txn, store._users.key("carol"), clock.now) is None
    for write in (
        lambda: store.interact("carol", [{"kind": "like", "item_id": ITEMS[7]}]),
        lambda: store.import_user(carol_copy),
    ):
        with pytest.raises(UserErasedError):
            write()
    assert store._users.record("carol") is None


def test_a_restored_data_backup_cannot_bring_an_erased_user_back(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "store"
    with open_store(path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        add_user(engine, "alice")
        add_user(engine, "bob", first=1)
        engine.backup(tmp_path / "backup")
        engine.erase("alice")
        bob = engine.export("bob")
    backup.restore_data(tmp_path / "backup", path)
    with open_store(path, clock) as engine:  # opening reconciles
        assert engine.last_reconcile is not None
        assert engine.last_reconcile.fenced_records_purged == 1
        assert engine._users.record("alice") is None and sealed_value(engine, "alice") is None
        assert engine.export("bob") == bob
        assert shared_statistics_consistent(engine._users)
        with engine._env.read() as txn:  # alice's likes are no longer counted
            assert engine._shared.count(txn, ITEMS[0]) == 0
            assert engine._shared.count(txn, ITEMS[1]) == 1


def test_restoring_an_older_keystore_reapplies_erasures(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "store"
    with open_store(path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        add_user(engine, "alice")
        add_user(engine, "bob", first=1)
        made = engine.backup_keystore(tmp_path / "keystores")
        clock.now += 60
        engine.erase("alice")
        alice_key = engine._users.key("alice")
    backup.restore_keystore(Path(made["path"]), path)
    with open_store(path, clock) as engine:
        assert engine.last_reconcile is not None
        assert engine.last_reconcile.erasures_reapplied == 1
        assert engine._keystore.wrapped(alice_key) is None
        assert engine._users.record("bob") is not None


def test_keystore_backups_expire(store: Engine, tmp_path: Path, clock: Clock) -> None:
    first = store.backup_keystore(tmp_path / "keystores", retention_days=7)
    clock.now += 8 * DAY
    second = store.backup_keystore(tmp_path / "keystores", retention_days=7)
    assert second["pruned"] == [Path(first["path"]).name]
    assert sorted(p.name for p in (tmp_path / "keystores").iterdir()) == [Path(second["path"]).name]


def test_after_erase_and_compaction_no_byte_of_the_user_is_left(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "store"
    user = "zed-4471@example.org"
    with open_store(path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        add_user(engine, user)
        add_user(engine, "bob", first=1)
        for k in range(8):  # more writes: more old copies in free pages
            engine.interact(user, [{"kind": "click", "item_id": ITEMS[10 + k]}])
        ciphertext = sealed_value(engine, user)
        wrapped = engine._keystore.wrapped(engine._users.key(user))
        assert ciphertext is not None and wrapped is not None
        engine.erase(user)
        with pytest.raises(StoreBusyError):  # never swapped under an open engine
            backup.compact(path)
    sizes = backup.compact(path)
    assert sizes["lmdb"]["bytes_after"] <= sizes["lmdb"]["bytes_before"]
    terms = {
        "user id": user.encode(),
        "query": SECRET_QUERY.encode(),
        "ciphertext": ciphertext[13:61],
        "wrapped key": wrapped[-48:],
    }
    findings, files, scanned = scan_files(path, terms)
    assert findings == [] and files >= 4 and scanned > 0
    with open_store(path, clock) as engine:
        report = engine.audit(user, {"query": SECRET_QUERY.encode()})
        assert report.clean, report
        assert report.tombstone_erased_at == int(NOW)
        assert engine._users.record("bob") is not None


def test_the_byte_scan_finds_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.bin").write_bytes(b"xx-needle-yy-needle")
    findings, files, _ = scan_files(tmp_path, {"n": b"needle"})
    assert files == 1 and [f.offset for f in findings] == [3, 13]


def test_crash_states_between_the_two_environments_heal_on_open(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "store"
    with open_store(path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        add_user(engine, "alice")
        add_user(engine, "bob", first=1)
        add_user(engine, "carol", first=2)
        # 1. the data transaction of an erase committed, the key deletion did not
        alice_key = engine._users.key("alice")
        alice_wrapped = engine._keystore.wrapped(alice_key)
        engine.erase("alice")
        with engine._keystore.env.write() as txn:
            txn.put(alice_key, alice_wrapped, db=engine._keystore.db)
        # 2. the key was destroyed, the data transaction did not commit
        engine._keystore.destroy(engine._users.key("bob"))
        assert engine._users.record("bob") is None  # unreadable: gone for every purpose
        assert [r.item_id for r in engine.recommend("bob", 3)]  # cold start, not an error
        with pytest.raises(UserErasedError):  # erased users stay erased
            engine.interact("alice", [{"kind": "like", "item_id": ITEMS[9]}])
        # 3. a key whose record was never written (a failed first write), old enough
        orphan_key = engine._users.key("dave")
        engine._keystore.get_or_create(orphan_key, int(NOW))
    clock.now += 2 * 3_600
    with open_store(path, clock) as engine:
        report = engine.last_reconcile
        assert report is not None
        assert report.erasures_reapplied == 1 and report.orphan_records_purged == 1
        assert report.orphan_keys_purged == 1
        assert engine._keystore.wrapped(alice_key) is None
        assert sealed_value(engine, "bob") is None
        assert engine._users.record("carol") is not None
        assert shared_statistics_consistent(engine._users)
        assert engine._keystore.count() == 1  # carol's


def test_a_fresh_key_without_record_is_left_to_its_writer(tmp_path: Path, clock: Clock) -> None:
    with open_store(tmp_path / "s", clock) as engine:
        engine._keystore.get_or_create(engine._users.key("dave"), int(NOW))
    with open_store(tmp_path / "s", clock) as engine:  # within the grace period
        assert engine._keystore.count() == 1


def test_records_written_before_sealing_are_sealed_on_open(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "store"
    with open_store(path, clock, encrypt_user_records=False) as engine:
        engine.catalog.upsert(catalog_items(60))
        add_user(engine, "alice")
        assert not is_sealed(sealed_value(engine, "alice") or b"")
        before = engine.export("alice")
    with open_store(path, clock) as engine:
        assert engine.last_reconcile is not None and engine.last_reconcile.records_sealed == 1
        assert is_sealed(sealed_value(engine, "alice") or b"")
        assert engine.export("alice") == before


def test_master_key_rotation_rewraps_keys_without_touching_records(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = (base64.b64encode(secrets.token_bytes(32)).decode() for _ in range(2))
    path = tmp_path / "store"
    monkeypatch.setenv(MASTER_KEY_ENV, old)
    with open_store(path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        add_user(engine, "alice")
        record = sealed_value(engine, "alice")
        before = engine.export("alice")
    monkeypatch.setenv(MASTER_KEY_ENV, f"{new},{old}")
    with open_store(path, clock) as engine:
        assert engine.rotate_master_key() == 1
        assert sealed_value(engine, "alice") == record
    monkeypatch.setenv(MASTER_KEY_ENV, new)  # the old master key is no longer needed
    with open_store(path, clock) as engine:
        assert engine.export("alice") == before
    monkeypatch.setenv(MASTER_KEY_ENV, old)  # and no longer enough
    with pytest.raises(Exception, match="unknown master key"):
        open_store(path, clock).close()


def test_reopening_keeps_the_key_of_a_user_recreated_after_erasure(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "store"
    with open_store(path, clock) as engine:
        engine.catalog.upsert(catalog_items(60))
        add_user(engine, "alice")
        engine.erase("alice")
        clock.now += 60
        engine.recreate_user("alice")
        add_user(engine, "alice", first=4)
        before = engine.export("alice")
    with open_store(path, clock) as engine:  # the journal entry predates the new key
        assert engine.last_reconcile is not None
        assert engine.last_reconcile.erasures_reapplied == 0
        assert engine.export("alice") == before


def test_an_audit_tells_catalog_text_from_user_data(store: Engine) -> None:
    """A term that is also catalog text ("story number") matches the store's files
    whatever the user did: listed, marked, and not counted; a term only the user wrote
    still makes the audit unclean while it is there."""
    add_user(store, "alice")
    terms = {"catalog words": b"story number", "the query": SECRET_QUERY.encode()}
    before = store.audit("alice", terms)
    assert not before.clean
    store.erase("alice")
    report = store.audit("alice", terms)
    catalog = [f for f in report.findings if f.term == "catalog words"]
    assert catalog and all(f.catalog_text for f in catalog)
    query = [f for f in report.findings if f.term == "the query"]
    assert all(not f.catalog_text for f in query)
    assert report.clean == (not query)  # the query's bytes may sit in a free page


def test_an_audit_says_how_often_each_term_turns_up_by_chance(store: Engine) -> None:
    """Sealed records and keys look random, so a short term is found in them now and
    then whatever the user did: the report gives, per term, the matches expected by
    chance in the bytes it scanned (bytes / 256^len), so a finding can be judged."""
    import doctest

    from ownrank.engine import audit as audit_module

    add_user(store, "alice")
    store.erase("alice")
    long_term = b"a term of thirty-two bytes, long"
    report = store.audit("z", {"long": long_term})
    assert report.bytes_scanned > 100_000
    assert report.chance_matches["user id"] == pytest.approx(report.bytes_scanned / 256)
    assert 0 < report.chance_matches["long"] < 1e-70
    assert report.as_dict()["chance_matches"] == report.chance_matches
    failed, attempted = doctest.testmod(audit_module)
    assert attempted >= 2 and failed == 0


def test_catalog_text_is_text_not_the_bytes_around_it(store: Engine) -> None:
    """A term counts as catalog text when an item's id, title, body, tags or a
    property's name or string value holds it, not when it matches the numbers,
    times or field names stored beside them (a short user id would otherwise have
    every finding written off as catalog text)."""
    import msgpack

    store.catalog.upsert(
        [{"id": "odd-1", "title": "Plain words", "properties": {"colour": {"x": ["rare-ink"]}}}]
    )
    catalogue = store.catalog.store
    with store._env.read() as txn:
        raw = bytes(txn.get(b"odd-1", db=catalogue.items))
        created = msgpack.packb(msgpack.unpackb(raw)["c"])[1:]  # 8 bytes of a float
        assert created in raw and b"\xa2at" in raw  # a time, and a field's name
        assert not catalogue.holds_text(txn, created)
        assert not catalogue.holds_text(txn, b"\xa2at")
        for text in (b"odd-1", b"Plain", b"colour", b"rare-ink"):
            assert catalogue.holds_text(txn, text)
