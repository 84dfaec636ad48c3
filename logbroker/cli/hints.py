"""Small parsers and messages the client commands share: times a user types,
and what to say when a topic or partition does not exist."""

from __future__ import annotations

import datetime
import difflib
import re
from collections.abc import Iterable

import click

__all__ = ["missing_partition_message", "missing_topic_message", "parse_when"]

_RELATIVE = re.compile(r"^-(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, param_hint: str, *, now: datetime.datetime | None = None) -> datetime.datetime:
    """A time as users type it: ISO 8601 (naive = local time), epoch milliseconds
    (``1733390000000``), or relative to now (``-1h``, ``-30m``, ``-2d``, ``-15s``, ``-500ms``).

    :raises click.BadParameter: none of these.
    """
    text = text.strip()
    now = now or datetime.datetime.now(datetime.UTC)
    relative = _RELATIVE.match(text)
    if relative:
        return now - datetime.timedelta(seconds=float(relative.group(1)) * _UNIT_SECONDS[relative.group(2)])
    if text.isdigit():
        return datetime.datetime.fromtimestamp(int(text) / 1000, datetime.UTC)
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a time: give ISO 8601 (2026-12-05T10:00), epoch milliseconds, or a time ago "
            "such as -1h, -30m, -2d", param_hint=param_hint) from None
    return when if when.tzinfo is not None else when.astimezone()  # naive = local time


def missing_topic_message(topic: str, existing: Iterable[str]) -> str:
    """``topic 'ordrs' does not exist; similar: orders`` (names from ``existing``)."""
    similar = difflib.get_close_matches(topic, [t for t in existing if not t.startswith("__")], n=3, cutoff=0.6)
    hint = f"; similar: {', '.join(similar)}" if similar else "; `logbroker topics list` shows the topics"
    return f"topic {topic!r} does not exist{hint}"


def missing_partition_message(topic: str, partition: int, count: int) -> str:
    """``partition 9 of orders does not exist (it has 6: 0-5)``."""
    have = f"it has {count}: 0-{count - 1}" if count > 1 else ("it has 1: 0" if count == 1 else "it has none")
    return f"partition {partition} of {topic} does not exist ({have})"
