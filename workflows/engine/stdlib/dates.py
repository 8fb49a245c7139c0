"""The time module (https://cloud.google.com/workflows/docs/reference/stdlib/time/format)."""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from typing import Any

from ..errors import VALUE_ERROR, raised
from .numeric import number
from .registry import expect, function

# RFC 3339 section 5.6's date-time (T or t, Z or z or a numeric offset).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})"
)


@function("time.format", "seconds", "timezone", timezone=None)
def _time_format(seconds: Any, timezone: Any) -> str:
    number("time.format", "seconds", seconds)
    expect("time.format", "timezone", timezone, "string", "null")
    try:
        tz: dt.tzinfo = zoneinfo.ZoneInfo(timezone) if timezone else dt.UTC
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise raised(VALUE_ERROR, f"time.format: unknown timezone {timezone!r}") from None
    moment = dt.datetime.fromtimestamp(seconds, tz)
    text = moment.isoformat(timespec="microseconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


@function("time.parse", "value")
def _time_parse(value: Any) -> float:
    expect("time.parse", "value", value, "string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise raised(VALUE_ERROR, f"time.parse: not an RFC 3339 timestamp: {value!r}")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    micros = int((fraction or "0")[:6].ljust(6, "0"))  # up to a microsecond precision
    if offset in "Zz":
        tz = dt.UTC
    else:
        sign = -1 if offset[0] == "-" else 1
        tz = dt.timezone(sign * dt.timedelta(hours=int(offset[1:3]), minutes=int(offset[4:])))
    try:
        moment = dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micros, tz
        )
    except ValueError:
        raise raised(VALUE_ERROR, f"time.parse: not a valid date or time: {value!r}") from None
    return moment.timestamp()
