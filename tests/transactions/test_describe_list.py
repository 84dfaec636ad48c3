"""DescribeTransactions and ListTransactions (state, producer id, duration and id-pattern filters)."""

from txn_support import begin, init

from logbroker.broker.transactions import TxnError as E


def test_describe(coord):
    pid, epoch = init(coord, timeout=5000)
    begin(coord, "t", pid, epoch, now=7, partitions=[("b", 2), ("a", 1), ("b", 0)])
    init(coord, "idle")
    found, idle, missing, empty = coord.describe_transactions(["t", "idle", "nope", ""])
    assert (found.error, found.state, found.producer_id, found.producer_epoch) == (E.NONE, "Ongoing", pid, epoch)
    assert (found.timeout_ms, found.start_ms, found.topics) == (5000, 7, (("a", (1,)), ("b", (0, 2))))
    assert (idle.state, idle.start_ms, idle.topics) == ("Empty", -1, ())
    assert missing.error is E.TRANSACTIONAL_ID_NOT_FOUND and empty.error is E.INVALID_REQUEST


def test_describe_and_list_while_loading(env):
    coord = env.open(0, load=False)
    assert coord.describe_transactions(["t", ""])[0].error is E.COORDINATOR_LOAD_IN_PROGRESS
    assert coord.describe_transactions([""])[0].error is E.INVALID_REQUEST
    assert coord.list_transactions(0).error is E.COORDINATOR_LOAD_IN_PROGRESS


def test_list_filters(coord):
    p1, e1 = init(coord, "app-1")
    begin(coord, "app-1", p1, e1, now=1000)
    p2, e2 = init(coord, "app-2")
    begin(coord, "app-2", p2, e2, now=5000)
    p3, _ = init(coord, "other")

    def ids(**kw):
        result = coord.list_transactions(10_000, **kw)
        assert result.error is E.NONE
        return sorted(t.transactional_id for t in result.transactions)

    assert ids() == ["app-1", "app-2", "other"]
    assert ids(states=["Ongoing"]) == ["app-1", "app-2"]
    assert ids(states=["Empty", "Ongoing"]) == ["app-1", "app-2", "other"]
    result = coord.list_transactions(10_000, states=["Empty", "Bogus"])
    assert result.unknown_state_filters == ("Bogus",) and [t.transactional_id for t in result.transactions] == ["other"]
    assert ids(states=["Bogus"]) == []  # only unknown states: nothing matches
    assert ids(producer_ids=[p1, p3]) == ["app-1", "other"]
    # Running longer than the duration (v1+): Empty ids have no start and always qualify.
    assert ids(duration_ms=6000) == ["app-1", "other"]
    assert ids(duration_ms=5000) == ["app-1", "other"]
    assert ids(duration_ms=4999) == ["app-1", "app-2", "other"]
    # The whole id must match the pattern (v2+); an empty pattern is no filter.
    assert ids(transactional_id_pattern="app-.*") == ["app-1", "app-2"]
    assert ids(transactional_id_pattern="app") == []
    assert ids(transactional_id_pattern="") == ["app-1", "app-2", "other"]
    assert coord.list_transactions(0, transactional_id_pattern="(").error is E.INVALID_REGULAR_EXPRESSION
    listed = coord.list_transactions(0, producer_ids=[p2]).transactions
    assert [(t.transactional_id, t.producer_id, t.state) for t in listed] == [("app-2", p2, "Ongoing")]


def test_statistics_and_repr(coord):
    pid, epoch = init(coord)
    begin(coord, "t", pid, epoch)
    stats = coord.statistics()
    assert (stats.transactional_ids, stats.ongoing, stats.awaiting_markers) == (1, 1, 0)
    assert stats.log_records == 2
    assert "ids=1" in repr(coord) and "Ongoing" in repr(coord.transaction("t"))
