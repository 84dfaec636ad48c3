"""The log cleaner task: compacts topics with ``cleanup.policy=compact``.

Planning and swapping touch the partition log and run on the trio thread;
rewriting segments (decoding, hashing, writing) runs in a worker thread so the
event loop keeps serving requests meanwhile.
"""

from __future__ import annotations

import logging

import trio

from logbroker.errors import LogbrokerError
from logbroker.broker import Broker
from logbroker.storage.cleaner import build_cleaned, plan_cleaning, swap_cleaned

log = logging.getLogger("logbroker.server")


async def clean_once(broker: Broker) -> int:
    """One pass over every compacted partition; returns how many were cleaned."""
    cleaned = 0
    manager = broker.log_manager
    # Compacted topics only, so the pass does not open every partition.
    compacted = [(name, n) for name, info in manager.topics().items() if manager.log_config(name).compacts
                 for n in range(info.partitions)]
    for topic, index in compacted:
        try:
            plog = manager.get_partition(topic, index)
        except LogbrokerError:
            continue  # deleted meanwhile
        if not plog.config.compacts:
            continue
        try:
            plan = plan_cleaning(plog, broker.clock())
            if plan is None:
                continue
            result = await trio.to_thread.run_sync(build_cleaned, plan)
            if swap_cleaned(plog, result):
                cleaned += 1
        except (LogbrokerError, OSError) as exc:
            log.warning("log cleaner skipped %s-%d: %s", topic, index, exc)
    return cleaned


async def run_cleaner(broker: Broker, backoff_ms: int) -> None:
    """Clean forever, ``backoff_ms`` between passes."""
    while True:
        await trio.sleep(backoff_ms / 1000)
        await clean_once(broker)
