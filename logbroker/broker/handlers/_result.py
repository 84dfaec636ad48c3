"""What a handler hands back to the server: one small typed family (convention 14).

A handler returns a response body (a kio response object, an
:class:`~logbroker.protocol.Encoded` from a fast path, or None for no response
at all) or one of:

* :class:`Reply`: a body plus the work the server must finish before sending it;
* a :class:`~logbroker.broker.handlers.fetch.FetchOperation` (a
  :class:`~logbroker.broker.handlers.share.ShareFetchOperation` is one): a
  long poll the server attempts again whenever a watched partition grows;
* a :class:`~logbroker.broker.deferred.Deferred`: a result a later event
  completes (a JoinGroup waits for the other members).

:func:`~logbroker.broker.handlers.dispatch` turns a bare body into a
:class:`Reply`, so what reaches the server is always a :data:`HandlerResult`;
the server tells the kinds apart in one place
(``logbroker.server.dispatch.Dispatcher.resolve``). The union
:data:`~logbroker.broker.handlers.HandlerResult` names the family.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from logbroker.storage import PartitionLog

Body: TypeAlias = Any
"""A response body: a kio response object, an ``Encoded`` fast-path response, or
None (no response: Produce with acks=0). kio's classes are generated per
version, hence Any."""

FlushPoint: TypeAlias = "tuple[PartitionLog, int]"
"""(partition log, offset): everything below ``offset`` must be on disk first."""

TopicPartition: TypeAlias = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Reply:
    """A response body plus the work the server must finish before sending it.

    ``body`` None means no response at all (Produce with acks=0).
    ``flush`` lists (partition log, offset) pairs to fsync before answering.
    ``appended`` names the (topic, partition) pairs that grew, to wake fetches.
    ``if_flush_fails`` makes the body to send instead when an fsync fails (the
    write is not durable, so it must not be acknowledged); without it the
    server closes the connection unanswered.
    """

    body: Body
    flush: Sequence[FlushPoint] = field(default_factory=list)
    appended: Sequence[TopicPartition] = field(default_factory=list)
    if_flush_fails: Callable[[], Body] | None = None

