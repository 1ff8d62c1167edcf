"""Typed exceptions of the SDK.

Every error a caller can provoke with bad input is an ``OwnrankError`` with a
stable ``code`` (the service maps codes to HTTP statuses), so callers never have
to parse messages. None of them is raised after stored data was changed.
"""

from __future__ import annotations

from typing import Any


class OwnrankError(Exception):
    """Base class of every error ownrank raises on purpose."""

    code = "ownrank_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInputError(OwnrankError, ValueError):
    """Input that fails validation (ids, texts, sizes, filters...)."""

    code = "invalid_input"


class InvalidItemError(InvalidInputError):
    """One or more items of a batch are invalid; nothing of the batch was stored.

    ``problems`` lists ``(position in batch, item id or None, reason)``.
    """

    code = "invalid_item"

    def __init__(self, problems: list[tuple[int, str | None, str]]) -> None:
        shown = "; ".join(f"#{pos} ({iid or '?'}): {why}" for pos, iid, why in problems[:5])
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        super().__init__(f"{len(problems)} invalid item(s), nothing stored: {shown}{more}")
        self.problems = problems


class InvalidFilterError(InvalidInputError):
    """A property filter that does not follow the filter grammar."""

    code = "invalid_filter"


class BatchTooLargeError(InvalidInputError):
    code = "batch_too_large"


class UserErasedError(OwnrankError):
    """The user was erased and a tombstone stands: writes would recreate them.

    Re-creating the user is explicit (``Engine.recreate_user``, with new consent)."""

    code = "user_erased"

    def __init__(self, user_id: str) -> None:
        super().__init__(
            f"user {user_id!r} was erased; re-create the user explicitly to store data again"
        )


class StaleGenerationError(UserErasedError):
    """A copy of an erased generation of the user (an export, a device copy): the user
    was erased and re-created since, and the copy stays erased with that generation."""

    code = "stale_generation"

    def __init__(self, user_id: str, generation: int, current: int) -> None:
        OwnrankError.__init__(
            self,
            f"this copy of user {user_id!r} is of generation {generation}, which was "
            f"erased; the user's current generation is {current}",
            generation=generation,
            current_generation=current,
        )


class EventIdConflictError(OwnrankError):
    """An event reuses the id of a stored event but says something else (another
    kind, item, value, weight or time): ids name one event, so nothing was stored."""

    code = "event_id_conflict"

    def __init__(self, event_id: str, position: int | None = None) -> None:
        where = "" if position is None else f"#{position}: "
        super().__init__(
            f"{where}event id {event_id} names a stored event with other content; "
            "send a new id for a new event",
            event_id=event_id,
        )
        self.event_id = event_id


class ResetRequiredError(OwnrankError):
    """An event names an id the record does not know, dated at or before the horizon
    of what it still remembers (``engine/event_ids.py``): it may be a retry of an event
    that left the record long ago, so it is refused rather than stored twice. A
    client holding such state resets from the server's copy."""

    code = "reset_required"

    def __init__(self, event_id: str, horizon: str) -> None:
        super().__init__(
            f"event {event_id} is dated at or before {horizon}, older than the event ids "
            "this user's record still remembers; reset the client's copy from the server",
            event_id=event_id,
            horizon=horizon,
        )


class ClockAheadError(InvalidInputError):
    """A pushed event is dated further ahead of the server's clock than a device's
    clock may drift (``user_sync.MAX_FUTURE_SECONDS``): nothing was stored."""

    code = "clock_ahead"

    def __init__(self, latest: str, server_time: str) -> None:
        super().__init__(
            f"a pushed event is dated {latest}, too far ahead of the server's clock "
            f"({server_time}); fix the device's clock",
            latest=latest,
            server_time=server_time,
        )


class VersionConflictError(OwnrankError):
    """A write that replaces state named the version it expected to replace, and the
    stored record is at another one (someone wrote since): nothing was written."""

    code = "version_conflict"

    def __init__(self, user_id: str, expected: int, current: int) -> None:
        super().__init__(
            f"user {user_id!r} is at version {current}, not the expected {expected}; "
            "read it again and retry",
            expected_version=expected,
            current_version=current,
        )
        self.expected = expected
        self.current = current


class StoreBusyError(OwnrankError):
    """The operation needs the data directory to itself, and an engine has it open."""

    code = "store_busy"


class ItemNotFoundError(OwnrankError, KeyError):
    code = "item_not_found"

    def __init__(self, item_id: str) -> None:
        super().__init__(f"no item with id {item_id!r}", item_id=item_id)
        self.item_id = item_id

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.message


class ModelMismatchError(OwnrankError):
    """The store was created with another base model: embeddings must never mix."""

    code = "model_mismatch"

    def __init__(self, store_fingerprint: str, model_fingerprint: str) -> None:
        super().__init__(
            "this store was created with base model "
            f"{store_fingerprint} but the configured model is {model_fingerprint}; "
            "embeddings of two models must never mix. Open it with the original model, "
            "or create a new store and re-ingest the catalog.",
            store_fingerprint=store_fingerprint,
            model_fingerprint=model_fingerprint,
        )
        self.store_fingerprint = store_fingerprint
        self.model_fingerprint = model_fingerprint


class RatingScaleMismatchError(OwnrankError):
    """The store was created with another rating scale: its stored ratings are read on
    that scale, so opening it with a different one is refused (nothing is changed)."""

    code = "rating_scale_mismatch"

    def __init__(self, store_scale: str, configured_scale: str) -> None:
        super().__init__(
            f"this store keeps ratings on the scale {store_scale} but the configured "
            f"rating scale is {configured_scale}; a store keeps the scale it was created "
            "with. Open it with that scale (or none), or create a new store.",
            store_scale=store_scale,
            configured_scale=configured_scale,
        )
        self.store_scale = store_scale
        self.configured_scale = configured_scale


class DimensionMismatchError(OwnrankError):
    """Vectors whose dimension differs from the store's."""

    code = "dimension_mismatch"

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected vectors of dimension {expected}, got {got}")
        self.expected = expected
        self.got = got


class StoreFormatError(OwnrankError):
    """The data directory holds something this version cannot read."""

    code = "store_format"


class ModelLoadError(OwnrankError):
    """The base model directory is missing or unreadable."""

    code = "model_load"


class DeviceRevokedError(OwnrankError):
    """The device is not (or no longer) registered to the user: revoked, never
    registered, offline past ``EngineConfig.device_max_offline_days``, its refresh token
    replayed, or the user erased. Its tokens are dead; it registers again. (The one
    error raised after a write: a refresh refused for a replay or a long absence
    removes the device first.)"""

    code = "device_revoked"

    def __init__(self, device_id: str, reason: str = "is not registered to this user") -> None:
        super().__init__(f"device {device_id} {reason}; register it again", device_id=device_id)
        self.device_id = device_id


class TooManyDevicesError(OwnrankError):
    """The user has ``EngineConfig.max_devices`` devices: revoke one to register another."""

    code = "too_many_devices"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the user has {limit} registered devices, the limit; revoke one first", limit=limit
        )
        self.limit = limit
