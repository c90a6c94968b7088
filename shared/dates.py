"""Dates of every common form -> aware UTC datetimes. A date that cannot be read is None, never an error."""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta, timezone

from dateutil import parser as dateutil_parser

# Zone abbreviations dateutil does not know by itself (it knows UTC/GMT/Z only), in seconds east.
ZONE_ABBREVIATIONS = {
    "EST": -5 * 3600,
    "EDT": -4 * 3600,
    "CST": -6 * 3600,
    "CDT": -5 * 3600,
    "MST": -7 * 3600,
    "MDT": -6 * 3600,
    "PST": -8 * 3600,
    "PDT": -7 * 3600,
    "AKST": -9 * 3600,
    "AKDT": -8 * 3600,
    "HST": -10 * 3600,
    "BST": 3600,
    "IST": 19800,
    "CET": 3600,
    "CEST": 7200,
    "EET": 7200,
    "EEST": 10800,
    "WET": 0,
    "WEST": 3600,
    "MSK": 10800,
    "JST": 9 * 3600,
    "KST": 9 * 3600,
    "AEST": 10 * 3600,
    "AEDT": 11 * 3600,
    "NZST": 12 * 3600,
    "NZDT": 13 * 3600,
}
TZINFOS = {name: timezone(timedelta(seconds=offset)) for name, offset in ZONE_ABBREVIATIONS.items()}
EPOCH_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)")
TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}")
# Epoch numbers in this range are seconds; larger ones are milliseconds.
EPOCH_SECONDS_MAX = 10**11


def _from_epoch(value: float) -> datetime | None:
    seconds = value / 1000 if abs(value) >= EPOCH_SECONDS_MAX else value
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _from_text(text: str) -> datetime | None:
    text = text.strip()
    if not text:
        return None
    if EPOCH_NUMBER.fullmatch(text):  # ASCII digits only: "²" and "--5" are digits to str.isdigit
        return _from_epoch(float(text))
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        return dateutil_parser.parse(text, tzinfos=TZINFOS)
    except (ValueError, OverflowError, TypeError):
        return None


def to_utc(value: object) -> datetime | None:
    """A datetime, struct_time (UTC, as feedparser gives), epoch number or string -> aware UTC, or None.

    A time without a zone is taken as UTC.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, time.struct_time):
        try:
            parsed = datetime(*value[:6], tzinfo=UTC)
        except ValueError:
            return None  # feedparser's year -99 or 10000: no date a calendar has
    elif isinstance(value, (int, float)):
        parsed = _from_epoch(float(value))
    elif isinstance(value, str):
        parsed = _from_text(value)
    else:
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        return None  # 9999-12-31T23:00-05:00 is past the calendar's last day in UTC


def carries_time(text: str) -> bool:
    """Whether a written date gives a time of day too (an epoch number always does)."""
    return bool(TIME_OF_DAY.search(text) or EPOCH_NUMBER.fullmatch(text.strip()))


def written_date(text: str) -> date | None:
    """The calendar date as written, in the writer's own zone: `2021-11-23T06:05+11:00` is the 23rd."""
    parsed = _from_text(text)
    return parsed.date() if parsed is not None else None
