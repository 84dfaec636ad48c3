"""DescribeLogDirs: the one log directory, its partitions' sizes and its volume."""

from __future__ import annotations

from typing import Any

import os

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.protocol import ErrorCode

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._build import build, module_of


def handle_describe_log_dirs(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    """Sizes of the partitions asked for (null topics: all of them) in the data dir.

    A single node has one log directory and no future (moving) logs, so
    ``offset_lag`` is always 0. Needs DESCRIBE on the cluster (Kafka's rule);
    without it the answer is CLUSTER_AUTHORIZATION_FAILED and no directories.
    A partition whose size cannot be read is left out (the response has no
    per-partition error; clients show its size as unknown), never the answer.
    Sizes come from ``LogManager.partition_figures``, which opens no partition
    left unopened since the start.
    """
    mod = module_of(request.response_class)
    if not broker.allowed(ctx, "describe", "cluster", "kafka-cluster"):
        return build(request.response_class, error_code=ErrorCode.cluster_authorization_failed, results=())
    manager = broker.log_manager
    requested = request.body.topics
    wanted: dict[str, set[int]] | None = None
    if requested is not None:
        wanted = {}
        for t in requested:
            wanted.setdefault(t.topic, set()).update(int(p) for p in t.partitions)
    by_topic: dict[str, list] = {}
    # The manager's figures of the topics asked for, not their logs: a
    # partition unused since the start stays unopened.
    for row in manager.partition_figures(wanted):
        if wanted is not None and row.partition not in wanted[row.topic]:
            continue
        by_topic.setdefault(row.topic, []).append(
            build(mod.DescribeLogDirsPartition, partition_index=row.partition, partition_size=row.size_bytes,
                  offset_lag=0, is_future_key=False)
        )
    path = os.path.abspath(manager.data_dir)
    try:
        volume = os.statvfs(path)
        total, usable = volume.f_blocks * volume.f_frsize, volume.f_bavail * volume.f_frsize
    except OSError:
        total = usable = -1
    result = build(
        mod.DescribeLogDirsResult,
        error_code=ErrorCode.none,
        log_dir=path,
        topics=tuple(build(mod.DescribeLogDirsTopic, name=name, partitions=tuple(parts))
                     for name, parts in by_topic.items()),
        total_bytes=total,
        usable_bytes=usable,
    )
    return build(request.response_class, error_code=ErrorCode.none, results=(result,))
