"""Durations as users write them: `30s`, `15m`, `2h`, `1d` (a bare number is seconds)."""

from __future__ import annotations

import re

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION = re.compile(r"^\s*(?P<number>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]?)\s*$", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds, or ValueError with a message fit for a user."""
    match = DURATION.match(str(text))
    if not match or float(match.group("number")) <= 0:
        raise ValueError(f"not a duration: {text!r} (use a number with a unit: 30s, 15m, 2h, 1d)")
    return float(match.group("number")) * UNITS[(match.group("unit") or "s").lower()]


def format_duration(seconds: float) -> str:
    """The largest whole unit: 900 -> '15m', 90 -> '90s'."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"
