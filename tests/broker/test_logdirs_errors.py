"""DescribeLogDirs answers for every partition it can size."""

from logbroker.errors import StorageError
from logbroker.storage import PartitionLog


def test_describe_log_dirs_leaves_out_only_the_partition_it_cannot_size(make_broker, monkeypatch):
    h = make_broker()
    h.broker.create_topic("good", 1)
    h.broker.create_topic("bad", 1)
    real = PartitionLog.size_bytes

    def size_bytes(self):
        if self.directory.name == "bad-0":
            raise StorageError("stat bad-0: Input/output error")
        return real.fget(self)

    monkeypatch.setattr(PartitionLog, "size_bytes", property(size_bytes))
    answer = h.call(35, 4, "DescribeLogDirsRequest", topics=None)
    assert answer.error_code == 0
    [result] = answer.results
    assert result.error_code == 0
    assert {t.name for t in result.topics} == {"good"}
