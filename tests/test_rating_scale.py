"""The rating scale: configurable, checked where the engine takes events, read through
one rule for what is positive, and stored with the data (a store keeps its scale)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from api_support import ADMIN, api_client, sample_items
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from ownrank import (
    Engine,
    EngineConfig,
    InvalidInputError,
    RatingScale,
    RatingScaleMismatchError,
)
from ownrank.engine.events import FeedbackStrengths, KindCode, strength, strengths_of
from ownrank.engine.personal_model import LearnerConfig
from ownrank.engine.rating_scale import META_KEY
from ownrank.service import cli_common
from ownrank.service.cli import app as cli_app
from ownrank.service.settings import ServiceSettings

from conftest import WordHashEncoder
from test_catalog import catalog_items

HALF = RatingScale(low=0.5, high=5.0)
HALF_STARS = RatingScale(low=0.5, high=5.0, step=0.5)
ITEMS = [item["id"] for item in catalog_items(12)]


def rating(item_id: str, value: float) -> dict[str, Any]:
    return {"kind": "rating", "item_id": item_id, "value": value}


def open_store(path: Path, scale: RatingScale | None = None) -> Engine:
    return Engine(path, EngineConfig(rating_scale=scale), encoder=WordHashEncoder())


@pytest.fixture
def half(tmp_path: Path) -> Iterator[Engine]:
    with open_store(tmp_path / "half", HALF) as engine:
        engine.catalog.upsert(catalog_items(12))
        yield engine


def stored_values(engine: Engine, user_id: str) -> list[float | None]:
    record = engine._users.record(user_id)
    return [] if record is None else [e.value for e in record.events]


def popularity(engine: Engine) -> dict[str, int]:
    with engine._env.read() as txn:
        return engine._shared.totals(txn)


def meta(engine: Engine) -> Any:
    with engine._env.read() as txn:
        return engine.catalog.store.get_meta(txn, META_KEY)


# -- the scale itself -------------------------------------------------------------------


def test_a_scale_reads_and_writes_as_low_high_step() -> None:
    assert RatingScale.parse("0.5-5/0.5") == HALF_STARS
    assert RatingScale.parse(" 0.5 - 5 ") == HALF
    assert RatingScale.parse("-2-2") == RatingScale(low=-2, high=2)
    odd = RatingScale(low=0.1234567, high=9.87654321)
    for scale in (RatingScale(), HALF, HALF_STARS, RatingScale(low=0, high=10, step=1), odd):
        assert RatingScale.parse(str(scale)) == scale
    assert str(RatingScale()) == "1-5" and str(HALF_STARS) == "0.5-5/0.5"


@pytest.mark.parametrize("text", ["5-1", "1-1", "0.5-5/0.4", "0.5-5/0", "1..5", "", "a-b"])
def test_a_scale_needs_low_below_high_and_a_step_that_divides(text: str) -> None:
    with pytest.raises(ValueError, match="rating scale"):
        RatingScale.parse(text)


def test_scale_fields_are_validated() -> None:
    with pytest.raises(ValidationError):
        RatingScale(low=5, high=1)
    with pytest.raises(ValidationError):
        RatingScale(low=0, high=float("inf"))
    with pytest.raises(ValidationError):
        RatingScale(low=0, high=5, step=-1)


def test_admits_checks_range_and_grid() -> None:
    assert [HALF_STARS.admits(v) for v in (0.5, 1.0, 4.5, 5.0)] == [True] * 4
    assert [HALF_STARS.admits(v) for v in (0.0, 0.75, 4.25, 5.5)] == [False] * 4
    assert HALF.admits(4.25) and not HALF.admits(0.25)
    assert RatingScale(low=0.1, high=1.0, step=0.1).admits(0.3)  # up to rounding
    assert not RatingScale().admits(float("nan"))


def test_the_learner_reads_ratings_on_the_configured_scale() -> None:
    assert EngineConfig().learner.strengths.rating_scale == RatingScale()
    config = EngineConfig(rating_scale=HALF_STARS)
    assert config.learner.strengths.rating_scale == HALF_STARS
    # a round trip through plain data keeps it (the learner's copy is not dumped)
    again = EngineConfig.model_validate(config.model_dump())
    assert again == config and again.learner.strengths.rating_scale == HALF_STARS
    custom = LearnerConfig(l2=2.0)
    assert EngineConfig(rating_scale=HALF, learner=custom).learner.l2 == 2.0


# -- the one rule for what is positive ------------------------------------------------------


def signed(value: float, scale: RatingScale) -> float:
    return strength(KindCode.rating, value, 1.0, FeedbackStrengths(rating_scale=scale))


@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(KindCode)),
            st.one_of(st.none(), st.floats(-1.0, 12.0), st.integers(0, 24).map(lambda k: k / 4)),
            st.sampled_from([1.0, 0.5, 2.0, 3.3]),
        ),
        max_size=12,
    ),
    st.sampled_from([RatingScale(), HALF, HALF_STARS, RatingScale(low=0, high=10, step=1)]),
    st.floats(-0.9, -0.1),
)
def test_the_table_of_strengths_gives_the_same_bits(
    triples: list[tuple[KindCode, float | None, float]], scale: RatingScale, low: float
) -> None:
    """A recommend's strengths come from a table of the configuration's bases where it
    has them (``strengths_of``): bit for bit what ``strength`` computes."""
    s = FeedbackStrengths(rating_scale=scale, rating=(-1.0, low, -0.15, 0.6, 1.0))
    valued = (KindCode.rating, KindCode.dwell)
    triples = [
        (k, (v if v is not None else 3.0) if k in valued else None, w) for k, v, w in triples
    ]
    assert strengths_of(triples, s) == [strength(k, v, w, s) for k, v, w in triples]


def test_the_default_scale_reads_the_anchors_unchanged() -> None:
    anchors = FeedbackStrengths().rating
    assert [signed(v, RatingScale()) for v in (1, 2, 3, 4, 5)] == list(anchors)
    assert signed(3.5, RatingScale()) == pytest.approx((anchors[2] + anchors[3]) / 2)


def test_ratings_map_linearly_onto_the_anchors() -> None:
    assert signed(0.5, HALF) == -1.0 and signed(5.0, HALF) == 1.0
    # 2.75 is the middle of 0.5-5 as 3 is of 1-5
    assert signed(2.75, HALF) == pytest.approx(signed(3.0, RatingScale()))
    assert signed(0.0, HALF) == -1.0 and signed(9.0, HALF) == 1.0  # clamped, never an error


def test_which_ratings_are_positive_on_each_scale() -> None:
    grid = [k / 2 for k in range(1, 11)]  # 0.5 .. 5
    assert [v for v in (1, 2, 3, 4, 5) if signed(v, RatingScale()) > 0] == [4, 5]
    assert [v for v in grid[1:] if signed(v, RatingScale()) > 0] == [3.5, 4.0, 4.5, 5.0]
    assert [v for v in grid if signed(v, HALF_STARS) > 0] == [3.0, 3.5, 4.0, 4.5, 5.0]


def test_popularity_counts_what_the_rule_calls_positive(half: Engine) -> None:
    half.interact("ann", [rating(ITEMS[0], 4), rating(ITEMS[1], 2.5), rating(ITEMS[2], 3)])
    half.interact("bob", [rating(ITEMS[0], 4.5), rating(ITEMS[1], 0.5)])
    assert popularity(half) == {ITEMS[0]: 2, ITEMS[2]: 1}
    record = half._users.record("ann")
    assert record is not None and sorted(record.ledger["pop"]) == sorted([ITEMS[0], ITEMS[2]])


def test_the_same_values_on_the_default_scale(tmp_path: Path) -> None:
    with open_store(tmp_path / "five") as engine:
        engine.catalog.upsert(catalog_items(12))
        engine.interact("ann", [rating(ITEMS[0], 4), rating(ITEMS[1], 2.5), rating(ITEMS[2], 3)])
        assert popularity(engine) == {ITEMS[0]: 1}


# -- checked where the engine takes events ----------------------------------------------


def test_a_half_star_store_takes_its_ratings(half: Engine) -> None:
    report = half.interact("ann", [rating(ITEMS[0], 0.5), rating(ITEMS[1], 4.5)])
    assert report.accepted == 2
    assert stored_values(half, "ann") == [0.5, 4.5]


@pytest.mark.parametrize("value", [0.0, 5.5, -1.0])
def test_ratings_off_the_scale_are_refused_and_nothing_is_stored(
    half: Engine, value: float
) -> None:
    half.interact("ann", [rating(ITEMS[0], 4)])
    with pytest.raises(InvalidInputError) as caught:
        half.interact("ann", [rating(ITEMS[1], 4.5), rating(ITEMS[2], value)])
    assert "#1: value: a rating event needs a value between 0.5 and 5" in str(caught.value)
    assert caught.value.details["problems"] == [
        "#1: value: a rating event needs a value between 0.5 and 5"
    ]
    assert stored_values(half, "ann") == [4.0]


def test_bulk_and_history_calls_check_the_scale_too(half: Engine) -> None:
    with pytest.raises(InvalidInputError):
        half.interact_many({"ann": [rating(ITEMS[0], 4)], "bob": [rating(ITEMS[1], 5.5)]})
    assert half._users.record("ann") is None
    with pytest.raises(InvalidInputError):
        half.recommend_from_history([rating(ITEMS[0], 0.25)])
    assert half.recommend_from_history([rating(ITEMS[0], 0.5)], 3)


def test_a_step_puts_values_on_a_grid(tmp_path: Path) -> None:
    with open_store(tmp_path / "steps", HALF_STARS) as engine:
        engine.catalog.upsert(catalog_items(12))
        with pytest.raises(InvalidInputError, match=r"between 0\.5 and 5 in steps of 0\.5"):
            engine.interact("ann", [rating(ITEMS[0], 4.25)])
        assert engine.interact("ann", [rating(ITEMS[0], 4.5)]).accepted == 1


def test_the_default_scale_is_1_to_5_with_any_value(tmp_path: Path) -> None:
    with open_store(tmp_path / "five") as engine:
        engine.catalog.upsert(catalog_items(12))
        assert engine.config.rating_scale == RatingScale()
        assert engine.interact("ann", [rating(ITEMS[0], 4.25)]).accepted == 1
        with pytest.raises(InvalidInputError, match="between 1 and 5"):
            engine.interact("ann", [rating(ITEMS[0], 0.5)])


# -- stored with the data ---------------------------------------------------------------


def test_a_store_keeps_its_scale(tmp_path: Path) -> None:
    path = tmp_path / "half"
    with open_store(path, HALF_STARS) as engine:
        engine.catalog.upsert(catalog_items(12))
        engine.interact("ann", [rating(ITEMS[0], 4.5)])
        assert engine.info()["rating_scale"] == {"low": 0.5, "high": 5.0, "step": 0.5}
    for other in (RatingScale(), HALF):
        with pytest.raises(RatingScaleMismatchError) as caught:
            open_store(path, other)
        assert caught.value.store_scale == "0.5-5/0.5"
        assert caught.value.configured_scale == str(other)
    # nothing changed: opened with its scale, or with none, it reads as before
    with open_store(path) as engine:
        assert engine.config.rating_scale == HALF_STARS
        assert engine.config.learner.strengths.rating_scale == HALF_STARS
        assert meta(engine) == HALF_STARS.model_dump()
        assert stored_values(engine, "ann") == [4.5]
        assert engine.interact("ann", [rating(ITEMS[1], 0.5)]).accepted == 1
        with pytest.raises(InvalidInputError):
            engine.interact("ann", [rating(ITEMS[1], 0.25)])
    with open_store(path, HALF_STARS) as engine:
        assert popularity(engine) == {ITEMS[0]: 1}


def test_an_engine_reads_ratings_on_its_stores_scale_however_configured(tmp_path: Path) -> None:
    # model_copy validates nothing: the learner's copy of the scale is still 1-5 here
    copied = EngineConfig().model_copy(update={"rating_scale": HALF})
    with Engine(tmp_path / "copied", copied, encoder=WordHashEncoder()) as engine:
        assert engine.config.learner.strengths.rating_scale == HALF
        engine.catalog.upsert(catalog_items(12))
        engine.interact("ann", [rating(ITEMS[0], 3)])  # positive on 0.5-5, not on 1-5
        assert popularity(engine) == {ITEMS[0]: 1}


def forget_the_scale(path: Path) -> None:
    """Make ``path`` look like a store written before the scale was recorded."""
    with open_store(path) as engine:
        with engine._env.write() as txn:
            txn.delete(META_KEY.encode(), db=engine.catalog.store.meta)
        assert meta(engine) is None


def test_a_store_without_a_recorded_scale_is_1_to_5(tmp_path: Path) -> None:
    path = tmp_path / "old"
    with open_store(path) as engine:
        engine.catalog.upsert(catalog_items(12))
        engine.interact("ann", [rating(ITEMS[0], 4)])
    forget_the_scale(path)
    # another scale is refused, and the store stays as it was
    with pytest.raises(RatingScaleMismatchError):
        open_store(path, HALF)
    with open_store(path) as engine:
        assert engine.config.rating_scale == RatingScale()
        assert meta(engine) == RatingScale().model_dump()  # recorded on this open
        assert popularity(engine) == {ITEMS[0]: 1}
    with pytest.raises(RatingScaleMismatchError):
        open_store(path, HALF)


def test_an_old_store_that_never_held_data_takes_the_configured_scale(tmp_path: Path) -> None:
    path = tmp_path / "empty"
    forget_the_scale(path)
    with open_store(path, HALF) as engine:
        assert meta(engine) == HALF.model_dump()


# -- the command line and the service --------------------------------------------------------


@pytest.fixture
def fast_cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    fast = functools.partial(Engine, encoder=WordHashEncoder())
    monkeypatch.setattr(cli_common, "Engine", fast)
    monkeypatch.delenv("OWNRANK_RATING_SCALE", raising=False)
    return CliRunner()


def test_the_cli_sets_the_scale_of_a_new_store(fast_cli: CliRunner, tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text("\n".join(json.dumps(i) for i in catalog_items(6)) + "\n")
    store = str(tmp_path / "store")

    def run(*args: str) -> Any:
        return fast_cli.invoke(cli_app, [*args, "--data-dir", store])

    bad = run("ingest", str(items), "--rating-scale", "5-1")
    assert bad.exit_code == 2 and "low < high" in bad.output
    assert run("ingest", str(items), "--rating-scale", "0.5-5/0.5").exit_code == 0
    info = run("info")
    assert info.exit_code == 0 and "0.5-5/0.5" in info.output
    assert json.loads(run("info", "--json").output)["rating_scale"]["low"] == 0.5
    refused = run("ingest", str(items), "--rating-scale", "1-5")
    assert refused.exit_code == 2 and "scale 0.5-5/0.5" in refused.output
    assert run("ingest", str(items)).exit_code == 0  # no scale: the store's


def test_service_settings_read_the_scale_from_the_environment() -> None:
    settings = ServiceSettings.from_env({"OWNRANK_RATING_SCALE": "0.5 - 5/0.5"})
    assert settings.rating_scale == "0.5-5/0.5"
    assert settings.engine_rating_scale == HALF_STARS
    assert ServiceSettings.from_env(settings.to_env()) == settings
    assert ServiceSettings().engine_rating_scale is None
    with pytest.raises(ValidationError):
        ServiceSettings.from_env({"OWNRANK_RATING_SCALE": "5-1"})


@pytest.fixture(scope="module")
def half_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    data = tmp_path_factory.mktemp("half") / "data"
    with api_client(data, rating_scale="0.5-5") as client:
        response = client.post("/items", json={"items": sample_items()}, headers=ADMIN)
        assert response.status_code == 200, response.text
        yield client


def test_the_service_takes_the_stores_ratings(half_client: Any) -> None:
    events = [rating("jazz-0", 0.5), rating("chess-1", 4.5)]
    response = half_client.post("/users/ann/interactions", json={"events": events}, headers=ADMIN)
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2


@pytest.mark.parametrize("value", [0, 5.5])
def test_the_service_answers_422_for_ratings_off_the_scale(half_client: Any, value: float) -> None:
    events = [rating("jazz-0", 4), rating("chess-1", value)]
    response = half_client.post("/users/bob/interactions", json={"events": events}, headers=ADMIN)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "validation_error"
    assert "a rating event needs a value between 0.5 and 5" in body["message"]
    assert body["details"][0]["loc"] == ["body", "events", "1", "value"]
    assert half_client.get("/users/bob/export", headers=ADMIN).json()["exists"] is False

    bulk = {"batches": [{"user_id": "bob", "events": events}]}
    response = half_client.post("/interactions", json=bulk, headers=ADMIN)
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["loc"] == ["body", "batches", "0", "events", "1", "value"]

    history = {"events": events}
    response = half_client.post("/recommend/from-history", json=history, headers=ADMIN)
    assert response.status_code == 422, response.text


def test_the_catalog_route_shows_the_scale(half_client: Any) -> None:
    facts = half_client.get("/catalog", headers=ADMIN).json()
    assert facts["rating_scale"] == {"low": 0.5, "high": 5.0, "step": None}


def test_the_openapi_document_states_the_stores_scale(half_client: Any) -> None:
    schema = half_client.get("/openapi.json").json()["components"]["schemas"]["EventIn"]
    (branch,) = [b for b in schema["anyOf"] if b["properties"]["kind"].get("enum") == ["rating"]]
    assert branch["properties"]["value"] == {"type": "number", "minimum": 0.5, "maximum": 5.0}
    assert "between 0.5 and 5" in schema["properties"]["value"]["description"]


def test_the_openapi_document_states_a_step(tmp_path: Path) -> None:
    with api_client(tmp_path / "data", rating_scale="0.5-5/0.5") as client:
        schema = client.get("/openapi.json").json()["components"]["schemas"]["EventIn"]
    (branch,) = [b for b in schema["anyOf"] if b["properties"]["kind"].get("enum") == ["rating"]]
    assert branch["properties"]["value"]["multipleOf"] == 0.5


def test_the_service_refuses_a_store_of_another_scale(tmp_path: Path) -> None:
    with api_client(tmp_path / "data", rating_scale="0.5-5") as client:
        assert client.get("/ready").status_code == 200
    with api_client(tmp_path / "data") as client:  # no scale configured: the store's
        assert client.get("/ready").status_code == 200
    with pytest.raises(RatingScaleMismatchError), api_client(tmp_path / "data", rating_scale="1-5"):
        pass


def test_an_export_with_ratings_off_the_scale_is_refused_on_import(
    half: Engine, tmp_path: Path
) -> None:
    half.interact("star", [rating(ITEMS[0], 0.5), rating(ITEMS[1], 4.5)])
    exported = half.export("star")
    with open_store(tmp_path / "default") as engine:
        engine.catalog.upsert(catalog_items(12))
        with pytest.raises(InvalidInputError, match="off this store's scale"):
            engine.import_user(exported)
        assert engine.export("star")["exists"] is False  # nothing stored
