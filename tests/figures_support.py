"""A broker's partitions in every shape partition figures must cover, for the
tests that compare figures before and after a restart."""

from __future__ import annotations

from logbroker.records import build_batch


def write_mixed_partitions(broker) -> None:
    """Topic "many" (40 partitions of 300-byte segments): every third partition
    holds 1-7 records over several segments, the others none, and partition 6
    had its first 5 records deleted; topic "few" (3 partitions) is empty."""
    broker.create_topic("many", 40, {"segment.bytes": "300"})  # several segments each
    broker.create_topic("few", 3)
    manager = broker.log_manager
    for p in range(0, 40, 3):
        plog = manager.get_partition("many", p)
        for i in range(p % 7 + 1):
            plog.append(build_batch([(None, b"v" * (p + i), (), 1_000 + i)]), 1_000)
    manager.get_partition("many", 6).delete_records_before(5)  # its first segments go
