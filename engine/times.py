"""The one range of times ownrank accepts, and the conversions that rely on it.

Every time that comes in (event timestamps, item publication dates, the bounds
of ``forget``, the times of a user export being imported) must fit the user
record format, which keeps Unix seconds as unsigned 32-bit integers: from
1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z inclusive. Checking at the edge
also means no time near year 1 or 9999 ever reaches a conversion that would
overflow (``astimezone``, ``fromtimestamp``). A time without a UTC offset is UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from pydantic import AfterValidator

MIN_TIME = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME = MIN_TIME + timedelta(seconds=2**32 - 1)  # 2106-02-07T06:28:15Z
TIME_RANGE_RULE = (
    "from 1970-01-01T00:00:00Z to 2106-02-07T06:28:15Z inclusive; "
    "a time without a UTC offset is UTC"
)


# The range as a JSON Schema ``pattern`` on RFC 3339 date-times, for schema-driven
# clients and tests: every string it matches is in the range. Strings within a day of
# either end whose UTC offset decides it (1970-01-01T05:00:00+01:00 is in the range,
# 2106-02-07T05:00:00-03:00 is not) are beyond a short regular expression: the pattern
# refuses them all; the service decides on them exactly.
_TIME = r"[Tt ]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?"
_OFFSET = r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
_UTC_OR_WEST = r"([Zz]|[+-]00:00|-([01]\d|2[0-3]):[0-5]\d)"  # the instant is not earlier
_UTC_OR_EAST = r"([Zz]|[+-]00:00|\+([01]\d|2[0-3]):[0-5]\d)"  # the instant is not later
_MONTH_DAY = r"(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"
TIME_RANGE_PATTERN = (
    "^("
    rf"(197[1-9]|19[89]\d|20\d\d|210[0-5])-{_MONTH_DAY}{_TIME}{_OFFSET}"
    rf"|1970-(0[2-9]|1[0-2])-(0[1-9]|[12]\d|3[01]){_TIME}{_OFFSET}"
    rf"|1970-01-(0[2-9]|[12]\d|3[01]){_TIME}{_OFFSET}"
    rf"|1970-01-01{_TIME}{_UTC_OR_WEST}"
    rf"|2106-01-(0[1-9]|[12]\d|3[01]){_TIME}{_OFFSET}"
    rf"|2106-02-0[1-5]{_TIME}{_OFFSET}"
    rf"|2106-02-06{_TIME}{_UTC_OR_EAST}"
    r"|2106-02-07[Tt ](0[0-5]:[0-5]\d:[0-5]\d(\.\d+)?|06:([01]\d|2[0-7]):[0-5]\d(\.\d+)?"
    r"|06:28:(0\d|1[0-4])(\.\d+)?|06:28:15(\.0+)?)"
    rf"{_UTC_OR_EAST}"
    ")$"
)


def to_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive means UTC); ``ValueError`` when it is
    outside the accepted range.

    The range check compares before converting: an aware comparison never
    overflows, while ``astimezone`` does for year 1 or 9999 with an offset.
    """
    if not isinstance(value, datetime):
        raise ValueError(f"expected a datetime, got {type(value).__name__}")
    if value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    if not MIN_TIME <= value <= MAX_TIME:
        raise ValueError(f"time out of range: accepted {TIME_RANGE_RULE}")
    return value.astimezone(UTC)


def unix_seconds(value: datetime) -> int:
    """Whole Unix seconds (rounded down) of an accepted time, as a user record stores
    them; computed in integers, so it is exact whatever the microseconds."""
    return (to_utc(value) - MIN_TIME) // timedelta(seconds=1)


def parse_time(text: object) -> datetime:
    """An ISO-8601 string (as exports write them) as an accepted UTC datetime;
    ``ValueError`` when it is not one."""
    if not isinstance(text, str):
        raise ValueError(f"expected an ISO-8601 string, got {type(text).__name__}")
    return to_utc(datetime.fromisoformat(text))


# A datetime field that accepts only the range above, normalized to UTC.
UtcTime = Annotated[datetime, AfterValidator(to_utc)]


def iso_seconds(ts: int) -> str:
    """Unix seconds as ISO-8601 UTC with a ``Z`` (as exports and receipts write them)."""
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
