"""Replay a range of a topic's history: :class:`Replay` (made by :meth:`Consumer.replay`) and
:func:`replay`, which opens a consumer of its own for it.

See :mod:`logbroker.client._replay` for the rules (start and stop offsets or
times, clamped to the log when the replay begins).
"""

from __future__ import annotations

import contextlib
import datetime
from collections.abc import AsyncIterator, Iterable
from typing import Any

from ._replay import Replay, ReplaySource
from .consumer import Consumer

__all__ = ["Replay", "ReplaySource", "replay"]


@contextlib.asynccontextmanager
async def replay(
    bootstrap: str,
    topic: str,
    *,
    start: int | datetime.datetime = 0,
    stop: int | datetime.datetime | None = None,
    partitions: Iterable[int] | None = None,
    **options: Any,
) -> AsyncIterator[Replay]:
    """``async with replay(bootstrap, topic, start=..., stop=...) as records: async for r in records``.

    Opens a consumer of its own (no group; ``options`` go to it) for the
    duration of the block.
    """
    options.setdefault("enable_auto_commit", False)
    async with Consumer(bootstrap, **options) as consumer:
        yield consumer.replay(topic, start=start, stop=stop, partitions=partitions)
