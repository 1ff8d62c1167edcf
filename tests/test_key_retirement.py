"""A data key destroyed while another writer seals a record with it.

Two races each left a re-created user's record unreadable for good (every later
write failed with ``StoreFormatError`` until the store was reopened, and the record
was lost): a write refused for an erased user destroyed the data key it had made
after a re-creation had taken that key; and an erasure destroyed the user's key
after a re-creation, running meanwhile, had sealed its record with it. Each test
pauses one thread at the race's moment (``Keystore.destroy_exact``, or a writer just
after it took the key) and lets the other run (``engine/key_retirement.py``). The
last test is a hole a cross-process fuzz found in the first fix: a re-seal's own
fresh key destroyed before its commit landed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ownrank import Engine, UserErasedError
from ownrank.engine.audit import shared_statistics_consistent
from ownrank.engine.key_retirement import keep_readable, retire_keys

from conftest import WordHashEncoder, make_engine
from test_catalog import catalog_items

ITEMS = [item["id"] for item in catalog_items(12)]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(tmp_path, WordHashEncoder())
    engine.catalog.upsert(catalog_items(12))
    engine.interact("u", [{"kind": "like", "item_id": ITEMS[0]}])
    yield engine
    engine.close()


def pause(obj: Any, name: str, thread: str) -> tuple[threading.Event, threading.Event]:
    """Make ``obj.name`` wait, in the thread called ``thread``, until released: returns
    (reached, release)."""
    real: Callable[..., Any] = getattr(obj, name)
    reached, release = threading.Event(), threading.Event()

    def paused(*args: Any, **kwargs: Any) -> Any:
        if threading.current_thread().name == thread:
            reached.set()
            assert release.wait(10)
        return real(*args, **kwargs)

    setattr(obj, name, paused)
    return reached, release


def in_thread(name: str, call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # (checked by the test)
            outcome.append(exc)

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, outcome


def assert_readable_after_recreation(engine: Engine) -> None:
    """The re-created user's record reads, takes writes, and holds nothing erased."""
    engine.interact("u", [{"kind": "like", "item_id": ITEMS[5]}])
    events = engine.export("u")["events"]
    assert [e["item_id"] for e in events] == [ITEMS[5]]
    assert engine._users.record("u") is not None
    assert shared_statistics_consistent(engine._users)


def test_a_refused_write_leaves_the_key_a_recreation_took(engine: Engine) -> None:
    engine.erase("u")
    keystore = engine._users.records.keystore
    reached, release = pause(keystore, "destroy_exact", "writer")
    writer, outcome = in_thread(
        "writer", lambda: engine.interact("u", [{"kind": "like", "item_id": ITEMS[1]}])
    )
    assert reached.wait(10)  # refused (erased), about to destroy the key it made
    made = keystore.get(engine._users.records.key("u"))
    engine.recreate_user("u")  # takes that key: the one standing
    release.set()
    writer.join(10)
    assert isinstance(outcome[0], UserErasedError)
    key = engine._users.records.key("u")
    assert keystore.get(key) not in (None, made)  # the refused write's key went
    assert_readable_after_recreation(engine)


def test_an_erasure_leaves_the_record_of_a_recreation_readable(engine: Engine) -> None:
    keystore = engine._users.records.keystore
    key = engine._users.records.key("u")
    erased_key = keystore.get(key)
    reached, release = pause(keystore, "destroy_exact", "eraser")
    eraser, outcome = in_thread("eraser", lambda: engine.erase("u"))
    assert reached.wait(10)  # record deleted, about to destroy the data key
    engine.recreate_user("u")  # seals its first record with the key still standing
    release.set()
    eraser.join(10)
    assert outcome[0].data_key_destroyed
    assert keystore.get(key) not in (None, erased_key)  # the erased generation's key went
    assert_readable_after_recreation(engine)


def test_a_recreation_committing_after_the_erasure_looked_reseals_itself(
    engine: Engine,
) -> None:
    """The recreation takes the key before the erasure destroys it and commits after
    the erasure looked for records sealed with it: the writer's own check after its
    commit seals the record again."""
    keystore = engine._users.records.keystore
    records = engine._users.records
    key = records.key("u")
    erased_key = keystore.get(key)
    destroying, destroy = pause(keystore, "destroy_exact", "eraser")
    eraser, outcome = in_thread("eraser", lambda: engine.erase("u"))
    assert destroying.wait(10)
    writing, write = pause(engine._users.writes, "refit", "recreator")  # key taken, not sealed
    recreator, created = in_thread("recreator", lambda: engine.recreate_user("u"))
    assert writing.wait(10)
    destroy.set()
    eraser.join(10)  # destroyed the key, and found no record sealed with it
    write.set()
    recreator.join(10)
    assert isinstance(created[0], int) and outcome[0].data_key_destroyed
    assert keystore.get(key) not in (None, erased_key)
    assert_readable_after_recreation(engine)


def test_a_reseal_whose_fresh_key_went_meanwhile_seals_again(engine: Engine) -> None:
    """A re-seal is a commit like any other: the fresh key it sealed with may be
    destroyed between the key's creation and the commit (here by another retirement,
    which found no record sealed with it yet); it then seals again."""
    records = engine._users.records
    keystore, key = records.keystore, records.key("u")
    first = keystore.get(key)
    assert first is not None and keystore.destroy_exact({key: first}) == [key]
    assert engine._users.record("u") is None  # sealed with a key that is gone
    made: list[bytes] = []
    real = keystore.get_or_create
    reached, release = threading.Event(), threading.Event()

    def paused(user_key: bytes, now: int) -> tuple[bytes, bool]:
        found = real(user_key, now)
        if threading.current_thread().name == "resealer" and not made:
            made.append(found[0])
            reached.set()
            assert release.wait(10)
        return found

    keystore.get_or_create = paused  # type: ignore[method-assign]
    resealer, _ = in_thread("resealer", lambda: keep_readable(records, {key: first}, time.time))
    assert reached.wait(10)  # it made a fresh key, and has not sealed with it yet
    assert retire_keys(records, {key: made[0]}, time.time) == [key]  # no record had it
    release.set()
    resealer.join(10)
    keystore.get_or_create = real  # type: ignore[method-assign]
    assert keystore.get(key) not in (None, first, made[0])
    assert [e["item_id"] for e in engine.export("u")["events"]] == [ITEMS[0]]
