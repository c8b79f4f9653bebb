"""Turning the admin API's numbers and times into what a person reads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string or epoch seconds as an aware UTC datetime; None when neither."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def clock_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%H:%M UTC")


def timestamp(value: Any) -> str:
    when = parse_time(value)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if when else "-"


def span(seconds: float) -> str:
    """A duration the way people say it: '45 s', '12 min', '3 h 5 min', '2 d 4 h'."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def until(value: Any, now: datetime) -> str:
    """'resets in 2 h 13 min', 'reset due', or '' when the time is unknown."""
    when = parse_time(value)
    if when is None:
        return ""
    remaining = (when - now).total_seconds()
    return f"resets in {span(remaining)}" if remaining > 0 else "reset due"


def percent(fraction: Any) -> str:
    """A 0-1 fraction as a percentage with one decimal; '-' when there is none yet."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        return "-"
    return f"{fraction * 100:.1f} %"


def number(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"
    if value is None:
        return "-"
    return str(value)
