"""User feedback events and what each kind says about the user's taste.

An event is about one catalog item (``view``, ``click``, ``like``, ``dislike``,
``rating`` 1-5, ``dwell`` seconds, ``skip`` = shown and not taken) or, for
``search``, a free-text query. Each kind maps to a signed *strength* (positive =
wants more like this, negative = wants less), times the event's optional
weight. The mapping is part of the config so it is documented and replayable.
"""

from __future__ import annotations

import math
from enum import IntEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


class Event(BaseModel):
    """One piece of feedback. ``timestamp`` defaults to the engine's clock; it must lie in
    the range of ``times`` (what a user record can store)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: EventKind
    item_id: ItemId | None = None
    query: str | None = Field(None, max_length=MAX_QUERY_CHARS)
    value: float | None = Field(None, description="the rating (1-5) or dwell seconds")
    weight: float = Field(1.0, gt=0.0, le=10.0)
    timestamp: UtcTime | None = None

    @field_validator("value", "weight")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Event:
        if self.kind == "search":
            if self.item_id is not None or not (self.query and self.query.strip()):
                raise ValueError("a search event has a non-blank query and no item_id")
        else:
            if self.item_id is None or self.query is not None:
                raise ValueError(f"a {self.kind} event has an item_id and no query")
        if self.kind == "rating":
            if self.value is None or not 1.0 <= self.value <= 5.0:
                raise ValueError("a rating event needs a value between 1 and 5")
        elif self.kind == "dwell":
            if self.value is None or not 0.0 <= self.value <= MAX_DWELL_SECONDS:
                raise ValueError(f"a dwell event needs seconds between 0 and {MAX_DWELL_SECONDS:g}")
        elif self.value is not None:
            raise ValueError(f"a {self.kind} event takes no value")
        return self


class FeedbackStrengths(BaseModel):
    """Signed strength of each kind of feedback (before the event's weight)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    view: float = 0.3
    click: float = 0.5
    like: float = 1.0
    dislike: float = -1.0
    skip: float = -0.25
    search: float = 0.5
    # ratings 1..5 (linear in between); 3 of 5 is mildly negative, as on most sites
    rating: tuple[float, float, float, float, float] = (-1.0, -0.6, -0.15, 0.6, 1.0)
    # dwell: grows with time spent, saturating at dwell_full seconds
    dwell_min: float = 0.1
    dwell_full_seconds: float = 120.0


def strength(kind: KindCode, value: float | None, weight: float, s: FeedbackStrengths) -> float:
    """The signed strength of one stored event."""
    if kind == KindCode.rating:
        assert value is not None
        lo = math.floor(value) - 1
        hi = min(lo + 1, 4)
        frac = value - math.floor(value)
        base = s.rating[lo] * (1 - frac) + s.rating[hi] * frac
    elif kind == KindCode.dwell:
        assert value is not None
        base = s.dwell_min + (1.0 - s.dwell_min) * min(1.0, value / s.dwell_full_seconds)
    else:
        base = float(getattr(s, _KIND_NAMES[kind]))
    return base * weight


_KIND_NAMES = {kind: kind.name for kind in KindCode}


def as_event(raw: Event | dict[str, Any]) -> Event:
    return raw if isinstance(raw, Event) else Event.model_validate(raw)
