"""What a handler hands back to the server besides a response body."""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any


@dataclass(slots=True)
class Reply:
    """A response body plus the work the server must finish before sending it.

    ``body`` None means no response at all (Produce with acks=0).
    ``flush`` lists (partition log, offset) pairs to fsync before answering.
    ``appended`` names the (topic, partition) pairs that grew, to wake fetches.
    ``if_flush_fails`` makes the body to send instead when an fsync fails (the
    write is not durable, so it must not be acknowledged); without it the
    server closes the connection unanswered.
    """

    body: Any
    flush: list = field(default_factory=list)
    appended: list = field(default_factory=list)
    if_flush_fails: Callable[[], Any] | None = None
