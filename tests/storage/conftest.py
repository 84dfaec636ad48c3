"""Helpers for storage tests: batches built with logbroker.records."""

from __future__ import annotations

import pytest

from logbroker.records import build_batch, iter_batches
from logbroker.storage import LogConfig, PartitionLog


def make_batch(records: int = 1, value_size: int = 10, timestamp: int = 1_000, **kw) -> bytes:
    """An uncompressed v2 batch of ``records`` records, all stamped ``timestamp``."""
    value = b"v" * value_size
    return build_batch([(None, value, (), timestamp + i) for i in range(records)], **kw)


def batch_spans(view) -> list[tuple[int, int]]:
    """``(base offset, last offset)`` of each complete batch in a read result."""
    return [(h.base_offset, h.last_offset) for _, h in iter_batches(view)]


@pytest.fixture
def small_config() -> LogConfig:
    return LogConfig(segment_bytes=4096, index_interval_bytes=256, segment_index_bytes=4096)


@pytest.fixture
def open_log(tmp_path, small_config):
    """``open_log(**kwargs)`` opens a PartitionLog in tmp_path/p (closed at teardown)."""
    logs = []

    def _open(config: LogConfig | None = None, **kwargs) -> PartitionLog:
        log = PartitionLog(tmp_path / "p", config or small_config, **kwargs)
        logs.append(log)
        return log

    yield _open
    for log in logs:
        log.close(flush=False)
