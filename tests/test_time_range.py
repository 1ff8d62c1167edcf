"""One range for every time ownrank accepts: 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z.

Times near year 1 or 9999 with a UTC offset used to overflow (500 OverflowError) and
times before 1970 were stored; now any time outside the range (the uint32 seconds a
user record holds) is a 422 from the service or a typed error from the SDK, and
nothing is stored. The two ends themselves are accepted and survive an export.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hypothesis
import pytest
from api_support import ADMIN, api_client, sample_items
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from ownrank import Engine
from ownrank.engine.times import MAX_TIME, MIN_TIME, TIME_RANGE_PATTERN, UtcTime, unix_seconds
from ownrank.errors import InvalidInputError, InvalidItemError

FIRST = "1970-01-01T00:00:00Z"
LAST = "2106-02-07T06:28:15Z"
BAD = [
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59+01:00",
    "9999-12-31T23:59:59Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:59:59+01:00",
    "2106-02-07T06:28:16Z",
    "2106-02-07T06:28:15.500000Z",
    "2106-02-07T05:28:16-01:00",
]


def test_the_range_is_what_a_record_stores() -> None:
    assert datetime(1970, 1, 1, tzinfo=UTC) == MIN_TIME
    assert datetime(2106, 2, 7, 6, 28, 15, tzinfo=UTC) == MAX_TIME
    assert unix_seconds(MIN_TIME) == 0 and unix_seconds(MAX_TIME) == 2**32 - 1
    plus_one = timezone(timedelta(hours=1))
    # whole seconds, rounded down, after converting the offset
    assert unix_seconds(datetime(2106, 2, 7, 7, 28, 14, 999_999, plus_one)) == 2**32 - 2


_DATETIME = TypeAdapter(datetime)


@hypothesis.settings(max_examples=300, derandomize=True, database=None, deadline=None)
@hypothesis.given(st.from_regex(TIME_RANGE_PATTERN, fullmatch=True))
def test_the_schema_pattern_admits_only_times_in_range(text: str) -> None:
    """Schema-driven clients (and tests) draw times from the pattern: all must be taken."""
    try:
        _DATETIME.validate_python(text)
    except ValidationError:
        hypothesis.assume(False)  # not a date (February 30th): the format's business
    TypeAdapter(UtcTime).validate_python(text)


def test_the_schema_pattern_matches_the_ends_and_none_of_the_bad() -> None:
    pattern = re.compile(TIME_RANGE_PATTERN)
    assert pattern.match(FIRST) and pattern.match(LAST)
    assert pattern.match("2106-02-07T06:28:15+01:00") and pattern.match("1970-01-01T00:00:00-05:00")
    assert not any(pattern.match(bad) for bad in BAD)


# -- the service -----------------------------------------------------------------------


def _state(client: TestClient) -> list[Any]:
    users = [client.get(f"/users/{u}/export", headers=ADMIN).json() for u in ("u1", "u2")]
    return [*users, client.get("/items/jazz-0", headers=ADMIN).json()]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with api_client(tmp_path_factory.mktemp("time-range") / "data") as c:
        assert c.post("/items", json={"items": sample_items(6)}, headers=ADMIN).is_success
        like = {"events": [{"kind": "like", "item_id": "jazz-3", "timestamp": "2020-01-01T00:00Z"}]}
        assert c.post("/users/u1/interactions", json=like, headers=ADMIN).is_success
        yield c


@pytest.mark.parametrize("when", BAD)
def test_service_refuses_times_out_of_range(client: TestClient, when: str) -> None:
    before = _state(client)
    event = {"kind": "like", "item_id": "jazz-0", "timestamp": when}
    item = {**sample_items(1)[0], "published_at": when}
    calls = [
        ("/users/u1/interactions", {"events": [event]}),
        ("/users/u2/interactions", {"events": [event]}),
        (
            "/interactions",
            {
                "batches": [
                    {"user_id": "u2", "events": [{"kind": "like", "item_id": "jazz-0"}]},
                    {"user_id": "u1", "events": [event]},
                ]
            },
        ),
        ("/recommend/from-history", {"events": [event]}),
        ("/items", {"items": [item]}),
        ("/users/u1/forget", {"before": when}),
        ("/users/u1/forget", {"after": when}),
        ("/users/u1/forget", {"item_ids": ["jazz-3"], "before": when}),
    ]
    for path, body in calls:
        answer = client.post(path, json=body, headers=ADMIN)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["code"] == "validation_error", (path, answer.text)
        assert "1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z" in answer.text, path
    # a user export to import with the time out of range, at each place it holds one
    export = client.get("/users/u1/export", headers=ADMIN).json()
    for bad_export in (
        {**export, "events": [{**export["events"][0], "timestamp": when}]},
        {**export, "created_at": when},
        {**export, "earlier_items": [{"item_hash": "0000abcd", "last_timestamp": when}]},
    ):
        answer = client.put("/users/u1", json=bad_export, headers={**ADMIN, "If-Match": "*"})
        assert answer.status_code in (400, 422), answer.text  # invalid_input
        assert "out of range" in answer.text
    assert _state(client) == before


def test_service_accepts_both_ends(client: TestClient) -> None:
    events = [
        {"kind": "like", "item_id": "jazz-0", "timestamp": FIRST},
        {"kind": "view", "item_id": "chess-1", "timestamp": "2106-02-07T07:28:15+01:00"},
    ]
    stored = client.post("/users/ends/interactions", json={"events": events}, headers=ADMIN)
    assert stored.status_code == 200, stored.text
    export = client.get("/users/ends/export", headers=ADMIN).json()
    assert [e["timestamp"] for e in export["events"]] == [FIRST, LAST]
    # the export imports back unchanged (but for the version, which only grows)
    put = client.put("/users/ends", json=export, headers={**ADMIN, "If-Match": "*"})
    assert put.status_code == 200, put.text
    assert client.get("/users/ends/export", headers=ADMIN).json() == {
        **export,
        "version": export["version"] + 1,
    }
    for when in (FIRST, LAST):
        bounded = {"item_ids": ["nothing-here"], "before": when, "after": when}
        assert client.post("/users/ends/forget", json=bounded, headers=ADMIN).status_code == 200
        item = {"id": "dated", "title": "a dated story", "published_at": when}
        assert client.post("/items", json={"items": [item]}, headers=ADMIN).status_code == 200
        got = client.get("/items/dated", headers=ADMIN).json()["published_at"]
        assert datetime.fromisoformat(got) == datetime.fromisoformat(when)
        recs = client.post("/users/ends/recommend", json={"n": 7}, headers=ADMIN)
        assert recs.status_code == 200 and "dated" in recs.text


# -- the SDK ---------------------------------------------------------------------------


def _dt(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize("when", BAD)
def test_sdk_refuses_times_out_of_range(engine: Engine, when: str) -> None:
    engine.catalog.upsert(sample_items(3))
    engine.interact("u1", [{"kind": "like", "item_id": "jazz-0"}])
    before = (engine.export("u1"), engine.catalog.get("jazz-0"))
    for moment in (when, _dt(when)):
        event = {"kind": "like", "item_id": "jazz-0", "timestamp": moment}
        with pytest.raises(InvalidInputError, match="out of range"):
            engine.interact("u1", [event])
        with pytest.raises(InvalidInputError, match="out of range"):
            engine.interact_many({"u2": [{"kind": "like", "item_id": "jazz-0"}], "u1": [event]})
        with pytest.raises(InvalidInputError, match="out of range"):
            engine.recommend_from_history([event])
        with pytest.raises(InvalidItemError, match="out of range"):
            engine.catalog.upsert([{**sample_items(1)[0], "published_at": moment}])
    for criteria in ({"before": _dt(when)}, {"after": _dt(when)}):
        with pytest.raises(InvalidInputError, match="out of range"):
            engine.forget("u1", **criteria)
    export = engine.export("u1")
    for bad_export in (
        {**export, "events": [{**export["events"][0], "timestamp": when}]},
        {**export, "created_at": when},
        {**export, "earlier_items": [{"item_hash": "0000abcd", "last_timestamp": when}]},
    ):
        with pytest.raises(InvalidInputError, match="out of range"):
            engine.import_user(bad_export)
    assert (engine.export("u1"), engine.catalog.get("jazz-0")) == before
    assert engine.export("u2")["exists"] is False


def test_sdk_accepts_both_ends_and_naive_is_utc(engine: Engine) -> None:
    engine.catalog.upsert(
        [
            {"id": "first", "title": "the first story", "published_at": _dt(FIRST)},
            {"id": "last", "title": "the last story", "published_at": "2106-02-07T06:28:15"},
        ]
    )
    assert engine.catalog.get("first").published_at == MIN_TIME
    assert engine.catalog.get("last").published_at == MAX_TIME
    engine.interact(
        "u",
        [
            {"kind": "like", "item_id": "first", "timestamp": datetime(1970, 1, 1)},
            {"kind": "like", "item_id": "last", "timestamp": _dt(LAST)},
        ],
    )
    export = engine.export("u")
    assert [e["timestamp"] for e in export["events"]] == [FIRST, LAST]
    engine.import_user(export)
    assert engine.export("u") == {**export, "version": export["version"] + 1}
    # naive bounds are UTC too: only the event at the last second is before it
    report = engine.forget("u", before=datetime(2106, 2, 7, 6, 28, 15), after=datetime(1970, 1, 1))
    assert report.events_removed == 0
    report = engine.forget("u", after=datetime(1970, 1, 1))
    assert report.events_removed == 1
    assert [e["item_id"] for e in engine.export("u")["events"]] == ["first"]
