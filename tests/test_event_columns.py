"""The event log as columns (record format 4): round trips, the checks on reading,
and the net feedback computed from columns against an event-by-event reference."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ownrank.engine.event_columns import EventColumns
from ownrank.engine.events import KindCode, strength
from ownrank.engine.personal_model import LearnerConfig, Observation, observations
from ownrank.engine.user_record import StoredEvent, UserRecord
from ownrank.errors import StoreFormatError

REFS = ["a", "b", "c", "é", "", "a" * 40]


@st.composite
def logs(draw: Any) -> list[StoredEvent]:
    count = draw(st.integers(0, 40))
    events = []
    for seq in range(count):
        kind = draw(st.sampled_from(list(KindCode)))
        value: float | None = None
        if kind is KindCode.rating:
            value = draw(st.sampled_from([1.0, 2.0, 3.5, 5.0]))
        elif kind is KindCode.dwell:
            value = draw(st.floats(0.0, 600.0))
        weight = draw(st.sampled_from([1.0, 0.5, 2.0, 0.25]))
        ts = draw(st.integers(0, 2**32 - 1))
        eid: bytes | int = draw(st.one_of(st.just(seq), st.binary(min_size=16, max_size=16)))
        events.append(StoredEvent(kind, draw(st.sampled_from(REFS)), value, weight, ts, eid))
    return events


def reference_observations(events: list[StoredEvent], cfg: LearnerConfig) -> list[Observation]:
    """Net feedback event by event (what format 3's readers computed)."""
    if not events:
        return []
    newest = max(e.ts for e in events)
    totals: dict[tuple[str, bool], list[float]] = {}
    for idx, e in enumerate(events):
        decayed = strength(e.kind, e.value, e.weight, cfg.strengths) * 0.5 ** (
            (newest - e.ts) / (cfg.half_life_days * 86_400.0)
        )
        acc = totals.setdefault((e.ref, e.is_search), [0.0, idx])
        acc[0] += decayed
        acc[1] = idx
    found = [Observation(r, q, s, int(last)) for (r, q), (s, last) in totals.items() if s]
    return sorted(found, key=lambda o: o.last_event)


@settings(max_examples=150, deadline=None)
@given(logs())
def test_columns_round_trip_and_give_the_reference_feedback(events: list[StoredEvent]) -> None:
    cols = EventColumns.from_events(events)
    read = EventColumns.unpack(msgpack.unpackb(msgpack.packb(cols.pack()), raw=False))
    assert read.rows(StoredEvent) == events == cols.rows(StoredEvent)
    assert read.item_ids() == {e.ref for e in events if not e.is_search}
    positions = [0, 3, len(events) - 1, len(events), 99]
    assert read.refs_at(positions) == [events[i].ref for i in positions if 0 <= i < len(events)]
    cfg = LearnerConfig()
    assert observations(read, cfg) == reference_observations(events, cfg)  # bit for bit


def test_a_record_reads_its_events_lazily_and_compares_by_events() -> None:
    events = [StoredEvent(KindCode.like, "a", None, 1.0, 5, 0)]
    record = UserRecord(True, 0, log=list(events))
    read = UserRecord.from_bytes(record.to_bytes())
    assert isinstance(read.log, EventColumns) and read.item_ids() == {"a"}
    assert read == record  # columns against a list: compared as events
    assert read.events == events and isinstance(read.log, list)  # built on first use
    read.events.append(StoredEvent(KindCode.view, "b", None, 1.0, 6, 1))
    assert UserRecord.from_bytes(read.to_bytes()).events == read.events != events


def test_times_out_of_the_32_bit_range_still_round_trip() -> None:
    events = [StoredEvent(KindCode.view, "a", None, 1.0, ts, 0) for ts in (-1, 2**33)]
    cols = EventColumns.from_events(events)
    assert cols.ts.dtype == np.dtype("<i8")
    assert EventColumns.unpack(cols.pack()).rows(StoredEvent) == events


def _packed() -> dict[str, Any]:
    return EventColumns.from_events(
        [
            StoredEvent(KindCode.like, "a", None, 1.0, 5, 0),
            StoredEvent(KindCode.search, "q", None, 1.0, 6, 1),
        ]
    ).pack()


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("t"),
        lambda m: m.update(r="a"),
        lambda m: m.update(r=["a", 7]),
        lambda m: m.update(s=b"\x00"),
        lambda m: m.update(s=b"\x00\x02"),
        lambda m: m.update(r=["a", "a"], s=b"\x00\x00"),  # one ref twice
        lambda m: m.update(k=[[99, None, 1]]),
        lambda m: m.update(k=[[2, "x", 1]]),
        lambda m: m.update(k=[[2, None, 1], [2, None, 1]]),  # one triple twice
        lambda m: m.update(j=b"\x00\x07"),  # a triple past the end
        lambda m: m.update(i=b"\x00\x05"),  # a ref past the end
        lambda m: m.update(i=b"\x00\x00"),  # a ref no event names
        lambda m: m.update(j=b"\x00"),  # not one index per event
        lambda m: m.update(t=b"\x00" * 6),  # 3 bytes a time
        lambda m: m.update(d=[0, "x"]),
        lambda m: m.update(d=[], i=b"", j=b"", t=b""),  # refs with no events
    ],
)
def test_malformed_columns_are_a_store_format_error(change: Any) -> None:
    """On reading, or (the ids, which a recommend never reads) when the events are built."""
    packed = _packed()
    EventColumns.unpack(dict(packed)).rows(StoredEvent)  # the unchanged map reads
    change(packed)
    with pytest.raises(StoreFormatError):
        EventColumns.unpack(packed).rows(StoredEvent)


@pytest.mark.parametrize("shared", ["popularity", "collaborative"])
def test_a_recommend_reads_the_columns_and_builds_no_event(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, shared: str
) -> None:
    """The point of format 4: a recommend reads the stored columns only (building the
    events is the write path's business), and ranks as from the events."""
    from conftest import WordHashEncoder, make_engine
    from test_catalog import TOPICS, catalog_items

    items = [f"{TOPICS[k % len(TOPICS)]}-{k:04d}" for k in range(30)]
    with make_engine(tmp_path / "s", WordHashEncoder(), shared_statistics=shared) as engine:
        engine.catalog.upsert(catalog_items(60))
        for u in range(4):
            events: list[dict[str, Any]] = [
                {"kind": "rating", "item_id": items[(u + k) % 30], "value": 1 + k % 5}
                for k in range(12)
            ]
            engine.interact(f"u{u}", [*events, {"kind": "search", "query": "chess"}])
        expected = [[(r.item_id, r.score) for r in engine.recommend(f"u{u}", 5)] for u in range(4)]

        def built(*_args: Any) -> Any:
            raise AssertionError("a recommend built the events")

        monkeypatch.setattr(EventColumns, "rows", built)
        got = [[(r.item_id, r.score) for r in engine.recommend(f"u{u}", 5)] for u in range(4)]
        assert got == expected and all(got)
