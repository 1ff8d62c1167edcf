"""Restoring a user from an export (``user_export.py``): a write that replaces state.

The import is conditional when the caller says which version it read
(``expected_version``; 0 = the user must not exist): the check runs in the
committing transaction, so a stale copy never overwrites newer state
(``VersionConflictError``). Versions only grow: the record takes the exported
version if that is above the current one, else the current one + 1. The user's
registered devices stay as they are (an import never revives a revoked device),
and within a generation sequence numbers are never reused (event ids stay
unique). A copy of an erased generation is refused (``StaleGenerationError``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import (
    BatchTooLargeError,
    InvalidInputError,
    StaleGenerationError,
    UserErasedError,
    VersionConflictError,
)
from .events import KindCode
from .user_export import parse_export
from .user_record import UserRecord

if TYPE_CHECKING:
    from .write_path import WritePath


def import_user(
    writes: WritePath, data: Mapping[str, Any], expected_version: int | None = None
) -> int:
    """Write the user an export describes; return the new record version (0 when the
    export says the user does not exist: that erases the user)."""
    if expected_version is not None and (
        isinstance(expected_version, bool)
        or not isinstance(expected_version, int)
        or expected_version < 0
    ):
        raise InvalidInputError("expected_version is a non-negative integer")
    parsed = parse_export(data)
    user_id = parsed.user_id
    config = writes.config
    if not parsed.exists:
        if expected_version is not None:
            current = writes.records.read(user_id)
            version = current.version if current else 0
            if version != expected_version:
                raise VersionConflictError(user_id, expected_version, version)
        writes.erase_user(user_id)
        return 0
    if len(parsed.events) > config.max_events:
        raise BatchTooLargeError(f"more than {config.max_events} events")
    if len(parsed.earlier) > config.max_earlier_items:
        raise BatchTooLargeError(f"more than {config.max_earlier_items} earlier items")
    off_scale = [
        problem
        for pos, e in enumerate(parsed.events)
        if (problem := writes.off_scale(pos, e.kind == KindCode.rating, e.value))
    ]
    if off_scale:  # an export from a store with another scale is not reinterpreted
        raise InvalidInputError(
            f"{len(off_scale)} rating(s) off this store's scale, nothing stored: "
            + " | ".join(off_scale[:5]),
            problems=off_scale,
        )
    state = writes.records.fence.state(writes.records.key(user_id))
    if state is not None and state.erased:
        raise UserErasedError(user_id)
    if state is not None and parsed.generation < state.generation:
        # an export of a generation that was erased before the user was re-created
        raise StaleGenerationError(user_id, parsed.generation, state.generation)

    def replace(current: UserRecord | None) -> UserRecord:
        record = parsed.record()
        if current is not None:
            record.devices = current.devices  # an import never revives a device
            if current.generation == record.generation:  # ids are never reused
                record.next_seq = max(record.next_seq, current.next_seq)
        return record

    _old, new, _units = writes.write(
        user_id, replace, expected_version=expected_version, min_version=parsed.version
    )
    assert new is not None
    return new.version
