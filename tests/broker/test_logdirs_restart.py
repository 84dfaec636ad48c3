"""DescribeLogDirs after a restart answers from the manager's figures: the
same sizes as before, and no partition opened to find them."""

from figures_support import write_mixed_partitions
from logbroker.records import build_batch


def _sizes(answer) -> dict[tuple[str, int], int]:
    assert answer.error_code == 0
    [result] = answer.results
    assert result.error_code == 0
    return {(t.name, p.partition_index): p.partition_size for t in result.topics for p in t.partitions}


def _describe(h, topics=None):
    if topics is not None:
        topics = [h.req(35, 4, "DescribableLogDirTopic", topic=name, partitions=parts)
                  for name, parts in topics.items()]
    return _sizes(h.call(35, 4, "DescribeLogDirsRequest", topics=topics))


ASKED = {"many": [0, 6, 39, 40], "few": [2], "none": [0]}  # 40 and "none" do not exist


def test_describe_log_dirs_after_a_restart_opens_no_partition_and_reports_the_same_sizes(make_broker, tmp_path):
    data_dir = str(tmp_path / "data")
    h = make_broker(data_dir=data_dir)
    write_mixed_partitions(h.broker)
    manager = h.broker.log_manager
    manager.get_partition("few", 2).append(build_batch([(None, b"x", (), 1_000)]), 1_000)
    before, asked_before = _describe(h), _describe(h, ASKED)
    h.broker.close()
    assert len(before) == 43 and before["many", 1] == 0 and before["many", 39] > 300
    assert before["few", 2] > 0
    assert asked_before == {("many", 0): before["many", 0], ("many", 6): before["many", 6],
                            ("many", 39): before["many", 39], ("few", 2): before["few", 2]}

    h = make_broker(data_dir=data_dir)
    manager = h.broker.log_manager
    opened = manager.open_partitions
    assert _describe(h) == before
    assert _describe(h, ASKED) == asked_before
    assert manager.open_partitions == opened  # the answers opened none
    for _ in manager.iter_partitions():  # opens every one: their logs say the same
        pass
    assert manager.open_partitions == opened + 43
    assert _describe(h) == before
