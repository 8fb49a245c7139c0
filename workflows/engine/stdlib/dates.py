"""The time module."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from ..errors import VALUE_ERROR, raised
from .numeric import number
from .registry import expect, function


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
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise raised(VALUE_ERROR, f"time.parse: not an RFC 3339 timestamp: {value!r}") from None
    if moment.tzinfo is None:
        raise raised(VALUE_ERROR, f"time.parse: timestamp has no time zone: {value!r}")
    return moment.timestamp()
