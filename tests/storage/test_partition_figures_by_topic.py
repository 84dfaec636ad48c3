"""LogManager.partition_figures(topics): the rows of those topics only, as the
whole listing has them, opening nothing; and an open partition whose figures
cannot be read is left out, not the listing."""

from __future__ import annotations

import logging

from logbroker.errors import StorageError
from logbroker.storage import LogManager, PartitionLog

from .test_partition_figures import CONFIG, _fill


def test_figures_of_some_topics_are_those_rows_of_the_whole_listing(tmp_path):
    data = tmp_path / "data"
    with LogManager(data, CONFIG) as manager:
        _fill(manager)
        everything = manager.partition_figures()
    with LogManager(data, CONFIG) as manager:
        assert manager.partition_figures(["b"]) == [r for r in everything if r.topic == "b"]
        assert manager.open_partitions == 0
        manager.get_partition("a", 2)  # one open, the others read from their directories
        assert manager.partition_figures(["b", "a", "b", "no-such-topic"]) == everything
        assert manager.partition_figures([]) == [] and manager.partition_figures(["no-such-topic"]) == []
        assert manager.partition_figures() == everything
        assert manager.open_partitions == 1
        manager.delete_topic("a")
        assert manager.partition_figures(["a"]) == []


def test_an_open_partition_whose_figures_cannot_be_read_is_left_out(tmp_path, monkeypatch, caplog):
    with LogManager(tmp_path / "data", CONFIG) as manager:
        _fill(manager)
        real = PartitionLog.size_bytes

        def size_bytes(self):
            if self.directory.name in ("a-1", "b-0"):
                raise StorageError("stat: Input/output error")
            return real.fget(self)

        monkeypatch.setattr(PartitionLog, "size_bytes", property(size_bytes))
        with caplog.at_level(logging.WARNING, logger="logbroker.storage"):
            figures = manager.partition_figures()
        assert [(r.topic, r.partition) for r in figures] == [("a", 0), *[("a", p) for p in range(2, 6)],
                                                             ("b", 1), ("b", 2)]
        warnings = [r.getMessage() for r in caplog.records if "cannot read the figures" in r.getMessage()]
        assert len(warnings) == 1 and "of 2 open partitions: a-1 (stat: Input/output error), b-0 (" in warnings[0]
