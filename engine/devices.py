"""A user's devices: registered clients that hold tokens of their own.

A device is an entry in the user's one sealed record (``user_record.DeviceEntry``),
so it lives and dies with the user: erasing the user removes every device, and a
re-created user starts with none. Its id is 16 random bytes, written as a UUID;
the record keeps devices ordered by id, the order a later sync protocol merges by.

Refresh tokens rotate. Each one names the refresh count its device was at when it
was minted; a refresh presents that count, and only the current one moves the
device on (count + 1, one write). An older count is a refresh token used twice,
i.e. copied: the device is revoked, whoever holds it (except the count just
before, within ``REFRESH_GRACE_SECONDS`` of the refresh that moved it on: that is
a client retrying a refresh whose answer it lost, and it gets the current state
again). A device that has not
refreshed for ``EngineConfig.device_max_offline_days`` is revoked too (its refresh
token expired with the same bound), and counts as gone before anyone asks.

A label is at most ``MAX_LABEL_CHARS`` characters, none of them a control
character (C0, DEL, C1), a line or paragraph separator or a lone surrogate
(``LABEL_PATTERN``, stated as such in the service's schema).
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..errors import DeviceRevokedError, InvalidInputError, TooManyDevicesError, UserErasedError
from .config import EngineConfig
from .event_ids import format_event_id, parse_event_id
from .record_store import check_user_id
from .times import iso_seconds
from .user_record import DeviceEntry, UserRecord
from .write_path import WritePath

MAX_LABEL_CHARS = 64
LABEL_PATTERN = r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]*$"
_LABEL = re.compile(LABEL_PATTERN)
DAY_SECONDS = 86_400
REFRESH_GRACE_SECONDS = 60  # a retried refresh within this is not a replay


@dataclass(frozen=True)
class Device:
    """One registered device of a user, as callers see it."""

    device_id: str  # a UUID string
    label: str
    registered_at: str  # ISO-8601 UTC
    refreshed_at: str  # ISO-8601 UTC: registered, or last refreshed its tokens
    counter: int  # refreshes so far: the count its current refresh token names

    @classmethod
    def of(cls, entry: DeviceEntry) -> Device:
        return cls(
            format_event_id(entry.device_id),
            entry.label,
            iso_seconds(entry.registered),
            iso_seconds(entry.refreshed),
            entry.counter,
        )


def check_label(label: object) -> str:
    """The label to store ("" for None); ``InvalidInputError`` if it breaks the rule."""
    if label is None:
        return ""
    if not isinstance(label, str) or len(label) > MAX_LABEL_CHARS or not _LABEL.match(label):
        raise InvalidInputError(
            f"a device label is at most {MAX_LABEL_CHARS} characters, none of them a "
            "control character or line separator"
        )
    return label


def parse_device_id(device_id: object) -> bytes:
    """The 16 bytes of a device id written as a UUID."""
    try:
        return parse_event_id(device_id)
    except InvalidInputError:
        raise InvalidInputError("a device id is the UUID string register returned") from None


class Devices:
    """Register, refresh, revoke and list a user's devices; each write is one
    atomic write of the user's record that leaves events, model and ledger alone."""

    def __init__(self, writes: WritePath, clock: Callable[[], float], config: EngineConfig):
        self.writes = writes
        self.clock = clock
        self.config = config

    @property
    def max_offline_seconds(self) -> int:
        return int(self.config.device_max_offline_days * DAY_SECONDS)

    def _stale(self, entry: DeviceEntry, now: int) -> bool:
        """Offline past the maximum: its refresh token expired, it can never refresh."""
        return now - entry.refreshed > self.max_offline_seconds

    def register(self, user_id: str, label: str | None = None) -> Device:
        """A new device for the user (the user's record is created if there is none).
        Devices offline past the maximum leave first: they could not refresh anyway."""
        check_user_id(user_id)
        text = check_label(label)
        now = int(self.clock())
        made: list[DeviceEntry] = []

        def add(record: UserRecord | None) -> UserRecord:
            record = record or self.writes.new_record()
            kept = [d for d in record.devices if not self._stale(d, now)]
            if len(kept) >= self.config.max_devices:
                raise TooManyDevicesError(self.config.max_devices)
            device_id = secrets.token_bytes(16)
            while any(d.device_id == device_id for d in kept) or not any(device_id):
                device_id = secrets.token_bytes(16)  # pragma: no cover - 2**-128
            made[:] = [DeviceEntry(device_id, now, now, 0, text)]
            record.devices = sorted([*kept, made[0]], key=lambda d: d.device_id)
            return record

        self.writes.write(user_id, add, refit=False)
        return Device.of(made[0])

    def refresh(self, user_id: str, device_id: str, counter: int) -> Device:
        """Move the device on from the refresh count its refresh token names; any other
        count (a replayed token) or a device offline too long revokes the device
        (``DeviceRevokedError``), as does an unknown device or user."""
        check_user_id(user_id)
        raw_id = parse_device_id(device_id)
        if isinstance(counter, bool) or not isinstance(counter, int) or counter < 0:
            raise InvalidInputError("a refresh counter is a non-negative integer")
        now = int(self.clock())
        outcome: list[DeviceEntry | str] = []

        def step(record: UserRecord | None) -> UserRecord | None:
            outcome.clear()
            entry = None if record is None else record.device(raw_id)
            if record is None or entry is None:
                outcome.append("is not registered to this user")
                return None  # nothing to write
            if self._stale(entry, now):
                days = f"{self.config.device_max_offline_days:g} days"
                outcome.append(f"was offline longer than the maximum of {days}, so was revoked")
            elif counter == entry.counter - 1 and now - entry.refreshed <= REFRESH_GRACE_SECONDS:
                # the answer to the refresh just made was lost (a flaky network) and
                # the client tries again: the same state again, nothing written
                outcome.append(entry)
                return None
            elif counter != entry.counter:
                outcome.append("presented a refresh token already used (a copy?), so was revoked")
            else:
                moved = replace(entry, counter=entry.counter + 1, refreshed=now)
                outcome.append(moved)
                record.devices = [moved if d.device_id == raw_id else d for d in record.devices]
                return record
            record.devices = [d for d in record.devices if d.device_id != raw_id]
            return record

        try:
            self.writes.write(user_id, step, create=False, refit=False)
        except UserErasedError:
            raise DeviceRevokedError(device_id, "belongs to an erased user") from None
        if not outcome:  # no record: the user does not exist
            raise DeviceRevokedError(device_id)
        if isinstance(outcome[0], str):
            raise DeviceRevokedError(device_id, outcome[0])
        return Device.of(outcome[0])

    def revoke(self, user_id: str, device_id: str) -> bool:
        """Remove the device; False (nothing written) if the user has no such device."""
        check_user_id(user_id)
        raw_id = parse_device_id(device_id)
        found = False

        def drop(record: UserRecord | None) -> UserRecord | None:
            nonlocal found
            found = record is not None and record.device(raw_id) is not None
            if not found or record is None:
                return None
            record.devices = [d for d in record.devices if d.device_id != raw_id]
            return record

        try:
            self.writes.write(user_id, drop, create=False, refit=False)
        except UserErasedError:
            return False
        return found

    def list(self, user_id: str) -> builtins.list[Device]:
        """The user's devices that may still refresh, by id (one record read)."""
        check_user_id(user_id)
        record = self.writes.records.read(user_id)
        if record is None:
            return []
        now = int(self.clock())
        return [Device.of(d) for d in record.devices if not self._stale(d, now)]

    def active(self, user_id: str, device_id: str) -> bool:
        """Whether the device is registered to the user and not offline past the
        maximum (one record read): what a service checks on every device request."""
        check_user_id(user_id)
        try:
            raw_id = parse_device_id(device_id)
        except InvalidInputError:
            return False
        record = self.writes.records.read(user_id)
        entry = None if record is None else record.device(raw_id)
        return entry is not None and not self._stale(entry, int(self.clock()))
