"""The schema registry's storage: the ``_schemas`` topic (compacted, one
partition, Confluent's record format) and the state it replays into.

The HTTP layer asks :attr:`SchemaRegistry.state` for answers and hands the
records a change returned to :meth:`SchemaRegistry.persist`, then waits for
the returned flush point before answering, so an acknowledged registration
survives a crash. Not thread-safe; the broker's thread calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from logbroker.broker.internal_topic import FlushPoint, InternalTopic
from logbroker.errors import LogbrokerError
from logbroker.registry.store import RegistryState
from logbroker.storage import LogManager

__all__ = ["SCHEMAS_TOPIC", "SchemaRegistry", "SchemasTopic"]

log = logging.getLogger("logbroker.registry")

SCHEMAS_TOPIC = "_schemas"
_COMPACT_AFTER_RECORDS = 10_000


class SchemasTopic(InternalTopic):
    """``_schemas``: written only by the registry; clients may read it."""

    NAME = SCHEMAS_TOPIC
    CONFIGS = {"cleanup.policy": "compact", "segment.bytes": str(64 * 1024 * 1024),
               "max.message.bytes": str(16 * 1024 * 1024)}
    REWRITE_BATCH_RECORDS = 500


class SchemaRegistry:
    """The registry's state and its topic; :meth:`load` once at start-up."""

    def __init__(self, log_manager: LogManager, clock: Callable[[], int]) -> None:
        self._topic = SchemasTopic(log_manager)
        self._clock = clock
        self.state = RegistryState()

    def __repr__(self) -> str:
        return f"SchemaRegistry({self.state!r})"

    def load(self) -> None:
        """Replay ``_schemas``; records that do not parse are logged and skipped."""
        skipped = 0
        for record in self._topic.keyed_records():
            assert record.key is not None  # keyed_records gives only keyed ones
            try:
                self.state.apply(bytes(record.key), None if record.value is None else bytes(record.value))
            except (ValueError, KeyError, TypeError, LogbrokerError) as exc:
                skipped += 1
                if skipped <= 3:
                    log.warning("skipping a record of %s at offset %d: %s", SCHEMAS_TOPIC, record.offset, exc)
        if self._topic.record_count:
            log.info("schema registry: %d subjects, %d records in %s%s", len(self.state.subjects(deleted=True)),
                     self._topic.record_count, SCHEMAS_TOPIC, f" ({skipped} skipped)" if skipped else "")

    def persist(self, records: Sequence[tuple[bytes, bytes | None]]) -> FlushPoint | None:
        """Append the records a change returned; where to fsync (None: nothing to write).

        :raises LogbrokerError: the append failed (nothing written).
        """
        if not records:
            return None
        point = self._topic.append(records, self._clock())
        self._topic.compact_if_superseded(self.state.live_records, self._clock(), _COMPACT_AFTER_RECORDS)
        return point

