"""User feedback events and what each kind says about the user's taste.

An event is about one catalog item (``view``, ``click``, ``like``, ``dislike``,
``rating`` on the store's ``RatingScale``, 1-5 unless configured, ``dwell`` seconds,
``skip`` = shown and not taken) or, for ``search``, a free-text query, with an
optional client-chosen ``id`` that makes retries idempotent. Each kind
maps to a signed *strength* (positive = wants more like this, negative = wants
less), times the event's optional weight. The mapping is part of the config so it
is documented and replayable.
"""

from __future__ import annotations

import math
import re
from enum import IntEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .event_ids import format_event_id, parse_event_id
from .items import ItemId
from .times import UtcTime

MAX_QUERY_CHARS = 500
MAX_DWELL_SECONDS = 86_400.0

EventKind = Literal["view", "click", "like", "dislike", "rating", "dwell", "skip", "search"]


class KindCode(IntEnum):
    """Compact on-disk codes of event kinds (part of the record format: never renumber)."""

    view = 0
    click = 1
    like = 2
    dislike = 3
    rating = 4
    dwell = 5
    skip = 6
    search = 7


def finite_or_none(v: float | None) -> float | None:
    """A field validator: None, or a finite number."""
    if v is not None and not math.isfinite(v):
        raise ValueError("must be a finite number")
    return v


class RatingScale(BaseModel):
    """The values a ``rating`` event may take: ``low`` to ``high``, and with ``step`` only
    ``low + k * step`` (e.g. half stars: low 0.5, high 5, step 0.5); ``step`` None =
    any value in the range. The scale is stored with the data (``rating_scale.py``):
    a store keeps the scale it was created with. Written ``LOW-HIGH`` or
    ``LOW-HIGH/STEP`` (``0.5-5/0.5``) on the command line and in the environment."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    low: float = 1.0
    high: float = 5.0
    step: float | None = Field(None, gt=0.0)

    _finite = field_validator("low", "high", "step")(finite_or_none)

    @model_validator(mode="after")
    def _ordered(self) -> RatingScale:
        if not self.low < self.high:
            raise ValueError("a rating scale needs low < high")
        if self.step is not None and not _on_grid(self.high, self.low, self.step):
            raise ValueError("the step of a rating scale must divide high - low")
        return self

    @classmethod
    def parse(cls, text: str) -> RatingScale:
        """``"0.5-5"`` or ``"0.5-5/0.5"`` (``str`` of a scale reads back the same)."""
        number = r"\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*"
        found = re.fullmatch(f"{number}-{number}(?:/{number})?", text)
        if found is None:
            raise ValueError(f"a rating scale is written LOW-HIGH or LOW-HIGH/STEP, not {text!r}")
        low, high, step = found.groups()
        try:
            return cls(low=float(low), high=float(high), step=None if step is None else float(step))
        except ValidationError as exc:  # one line, as a command line shows it
            why = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ValueError(f"rating scale {text!r}: {why}") from None

    def __str__(self) -> str:
        step = "" if self.step is None else f"/{_number(self.step)}"
        return f"{_number(self.low)}-{_number(self.high)}{step}"

    def describe(self) -> str:
        """The rule in words, as error messages state it."""
        steps = "" if self.step is None else f" in steps of {_number(self.step)}"
        return f"between {_number(self.low)} and {_number(self.high)}{steps}"

    def admits(self, value: float) -> bool:
        return (
            math.isfinite(value)
            and self.low <= value <= self.high
            and (self.step is None or _on_grid(value, self.low, self.step))
        )

    def anchor(self, value: float) -> float:
        """``value`` mapped linearly onto the 1-5 anchors of ``FeedbackStrengths.rating``
        (low -> 1, high -> 5), clamped to them."""
        if self.low == 1.0 and self.high == 5.0:
            mapped = value  # the default scale: the value itself, bit for bit
        else:
            mapped = 1.0 + 4.0 * (value - self.low) / (self.high - self.low)
        return min(5.0, max(1.0, mapped))


def _number(x: float) -> str:
    """``x`` short (``5``, ``0.5``), yet exactly what it is (it must read back the same)."""
    short = f"{x:g}"
    return short if float(short) == x else repr(x)


def _on_grid(value: float, origin: float, step: float) -> bool:
    """Whether ``value`` is ``origin + k * step`` for a whole k (up to rounding)."""
    k = round((value - origin) / step)
    return abs(value - (origin + k * step)) <= 1e-9 * max(1.0, abs(value), abs(step))


DEFAULT_RATING_SCALE = RatingScale()


class Event(BaseModel):
    """One piece of feedback. ``timestamp`` defaults to the engine's clock; it must lie in
    the range of ``times`` (what a user record can store). A rating's value is checked
    against the engine's ``RatingScale`` when the engine takes the event (``write_path``);
    here only that it is there and finite."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EventKind
    item_id: ItemId | None = None
    query: str | None = Field(None, max_length=MAX_QUERY_CHARS)
    value: float | None = Field(
        None, description="the rating (on the engine's RatingScale) or dwell seconds"
    )
    weight: float = Field(1.0, gt=0.0, le=10.0)
    timestamp: UtcTime | None = None
    id: str | None = Field(
        None,
        description="a client-chosen event id (a random UUID); a retry with the same id "
        "and content is a no-op (engine/event_ids.py); absent: the engine assigns one",
    )

    _finite = field_validator("value", "weight")(finite_or_none)

    @field_validator("id")
    @classmethod
    def _canonical_id(cls, v: str | None) -> str | None:
        return None if v is None else format_event_id(parse_event_id(v))

    @model_validator(mode="after")
    def _consistent(self) -> Event:
        if self.kind == "search":
            if self.item_id is not None or not (self.query and self.query.strip()):
                raise ValueError("a search event has a non-blank query and no item_id")
        else:
            if self.item_id is None or self.query is not None:
                raise ValueError(f"a {self.kind} event has an item_id and no query")
        if self.kind == "rating":
            if self.value is None:
                raise ValueError("a rating event needs a value")
        elif self.kind == "dwell":
            if self.value is None or not 0.0 <= self.value <= MAX_DWELL_SECONDS:
                raise ValueError(f"a dwell event needs seconds between 0 and {MAX_DWELL_SECONDS:g}")
        elif self.value is not None:
            raise ValueError(f"a {self.kind} event takes no value")
        return self


class FeedbackStrengths(BaseModel):
    """Signed strength of each kind of feedback (before the event's weight).

    Ratings: the value is mapped linearly onto the scale's 1-5 anchors (``low`` -> 1,
    ``high`` -> 5, ``RatingScale.anchor``), then interpolated linearly in ``rating``.
    With the default anchors the strength crosses zero at anchor 3.2, so a rating is
    *positive* when it maps above 3.2: on the default 1-5 scale, 4 and 5 (3.5 and up
    with half stars; 3 is mildly negative); on a 0.5-5 scale, 3 and up (3 maps to
    3.22, barely positive; 2.5 maps to 2.78, negative). Positive is what the personal
    model, popularity and the collaborative pairs all use: an item is a positive
    when the net, time-decayed strength of the user's events on it is above zero.
    ``rating_scale`` is set from ``EngineConfig.rating_scale`` (or the store's scale);
    set the scale there, not here.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    view: float = 0.3
    click: float = 0.5
    like: float = 1.0
    dislike: float = -1.0
    skip: float = -0.25
    search: float = 0.5
    # the anchors ratings 1..5 map to (linear in between, see above); 3 of 5 is mildly
    # negative, as on most sites
    rating: tuple[float, float, float, float, float] = (-1.0, -0.6, -0.15, 0.6, 1.0)
    rating_scale: RatingScale = Field(DEFAULT_RATING_SCALE, exclude=True)
    # dwell: grows with time spent, saturating at dwell_full seconds
    dwell_min: float = 0.1
    dwell_full_seconds: float = 120.0


def strength(kind: KindCode, value: float | None, weight: float, s: FeedbackStrengths) -> float:
    """The signed strength of one stored event."""
    if kind == KindCode.rating:
        assert value is not None
        anchor = s.rating_scale.anchor(value)  # in [1, 5]
        lo = min(math.floor(anchor), 4)  # the anchors lo and lo + 1 (1-based)
        frac = anchor - lo
        base = s.rating[lo - 1] * (1 - frac) + s.rating[lo] * frac
    elif kind == KindCode.dwell:
        assert value is not None
        base = s.dwell_min + (1.0 - s.dwell_min) * min(1.0, value / s.dwell_full_seconds)
    else:
        base = float(getattr(s, _KIND_NAMES[kind]))
    return base * weight


_KIND_NAMES = {kind: kind.name for kind in KindCode}


def strengths_of(
    combos: list[tuple[KindCode, float | None, float]], s: FeedbackStrengths
) -> list[float]:
    """``strength`` of each ``(kind, value, weight)``, the same bits: a recommend computes
    them for every distinct triple of the user's log. Bases come from a table built
    from the configuration alone (``_bases``; no user's value goes in); the rest are
    computed.

    >>> s = FeedbackStrengths()
    >>> triples = [(KindCode.like, None, 2.0), (KindCode.rating, 4.0, 1.0),
    ...            (KindCode.rating, 3.7, 1.0), (KindCode.dwell, 30.0, 1.0)]
    >>> strengths_of(triples, s) == [strength(k, v, w, s) for k, v, w in triples]
    True
    """
    table = _bases(s)
    return [
        base * weight
        if (base := table.get((kind, value))) is not None
        else strength(kind, value, weight, s)
        for kind, value, weight in combos
    ]


_BASES: dict[int, tuple[FeedbackStrengths, dict[tuple[KindCode, float | None], float]]] = {}


def _bases(s: FeedbackStrengths) -> dict[tuple[KindCode, float | None], float]:
    """The base strength (weight 1) of each kind without a value, and of ratings on the
    half steps of the scale: derived from the configuration only, once per
    ``FeedbackStrengths`` object (kept by identity: a copy with other values is
    another object)."""
    found = _BASES.get(id(s))
    if found is not None and found[0] is s:
        return found[1]
    table: dict[tuple[KindCode, float | None], float] = {
        (kind, None): strength(kind, None, 1.0, s)
        for kind in KindCode
        if kind not in (KindCode.rating, KindCode.dwell)
    }
    scale = s.rating_scale
    halves = int((scale.high - scale.low) * 2)
    for k in range(halves + 1) if halves <= 1_000 else ():
        value = scale.low + k * 0.5
        table[KindCode.rating, value] = strength(KindCode.rating, value, 1.0, s)
    if len(_BASES) >= 16:  # (configurations are few: bounded all the same)
        _BASES.clear()
    _BASES[id(s)] = (s, table)
    return table


def as_event(raw: Event | dict[str, Any]) -> Event:
    return raw if isinstance(raw, Event) else Event.model_validate(raw)
