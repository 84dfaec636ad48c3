"""Authorization helpers the handlers share: the denial codes, topic
filtering and the ``authorized_operations`` bit fields of describe responses."""

from __future__ import annotations

from typing import Any

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.broker.session import RequestContext
from logbroker.protocol import ErrorCode

from logbroker.broker.security.acls import authorized_operations

NO_AUTHORIZED_OPERATIONS = -2147483648
"""``authorized_operations`` when the client did not ask for them (INT32_MIN, as Kafka)."""
GROUP_DENIED = ErrorCode.group_authorization_failed
TOPIC_DENIED = ErrorCode.topic_authorization_failed


def denied_topics(broker: Broker, ctx: RequestContext, operation: str, names: Any) -> set[str]:
    """The names among ``names`` on which the principal may not do ``operation``."""
    return {name for name in set(names) if not broker.allowed(ctx, operation, "topic", name)}


def group_operations(broker: Broker, ctx: RequestContext, group_id: str) -> int:
    """Describe responses' ``authorized_operations`` bit field for ``group_id`` (KIP-430)."""
    return authorized_operations(lambda op: broker.allowed(ctx, op, "group", group_id), "group")
