"""The store's rating scale in the HTTP API.

The scale is the engine's (``EngineConfig.rating_scale``, stored with the data), so no
static schema can state it: a rating off the scale is answered 422
``validation_error`` here, before the engine sees it (the engine would refuse it as
invalid input, a 400), and ``/openapi.json`` states the scale of the store served.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI

from ..engine.events import RatingScale
from .errors import ApiError
from .schemas import EventIn

DETAILS_SHOWN = 20


def check_ratings(events: Sequence[EventIn], scale: RatingScale, loc: Sequence[str | int]) -> None:
    """Raise a 422 naming each rating of ``events`` (at ``loc`` in the body) off ``scale``."""
    rule = f"a rating event needs a value {scale.describe()}"
    details = [
        {"loc": [*(str(p) for p in loc), str(pos), "value"], "msg": rule, "type": "value_error"}
        for pos, event in enumerate(events)
        if event.kind == "rating" and event.value is not None and not scale.admits(event.value)
    ]
    if details:
        raise ApiError(
            422,
            "validation_error",
            f"{len(details)} rating(s) off this store's rating scale: {rule}",
            details=details[:DETAILS_SHOWN],
        )


def _value_schema(scale: RatingScale) -> dict[str, Any]:
    value: dict[str, Any] = {"type": "number", "minimum": scale.low, "maximum": scale.high}
    if scale.step is not None:
        # JSON Schema's grid starts at 0: stated when the scale's grid is that one and
        # binary floating point divides it exactly (0.5, 0.25, 1, ...)
        exact = scale.step.as_integer_ratio()[1] <= 1024 and (scale.low / scale.step).is_integer()
        if exact:
            value["multipleOf"] = scale.step
        value["description"] = f"{scale.describe()} (from {scale.low:g})"
    return value


def state_scale(schema: dict[str, Any], scale: RatingScale) -> None:
    """Write ``scale`` into the rating branch and the descriptions of ``EventIn``."""
    event = schema.get("components", {}).get("schemas", {}).get("EventIn")
    if event is None:
        return
    for branch in event.get("anyOf", []):
        if branch.get("properties", {}).get("kind", {}).get("enum") == ["rating"]:
            branch["properties"]["value"] = _value_schema(scale)
    value = event.get("properties", {}).get("value")
    if value is not None:
        value["description"] = f"rating {scale.describe()} (kind rating) or seconds (kind dwell)"


def describe_rating_scale(app: FastAPI, scale_of: Callable[[], RatingScale | None]) -> None:
    """Make ``app.openapi()`` state the scale ``scale_of`` returns (None: not known yet,
    stated as the default and asked again on the next call)."""
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = plain()
        scale = scale_of()
        state_scale(schema, scale or RatingScale())
        if scale is None:
            app.openapi_schema = None
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
