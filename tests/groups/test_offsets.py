"""Committed offsets with explicit time: commit rules, replay after restart, expiry, deletion, compaction."""

from group_support import done, join_req
from logbroker.broker.groups import CommitRequest, GroupOutcome as E, GroupState, OffsetValue
from logbroker.broker.groups.store import OFFSETS_TOPIC

DAY = 24 * 3600 * 1000


def commit(coord, group, offsets, now, generation=-1, member="", retention=-1, instance=None):
    values = {tp: OffsetValue(o, 3, f"meta-{o}") for tp, o in offsets.items()}
    return coord.commit_offsets(CommitRequest(group, generation, member, values, instance, retention), now)


def fetched(coord, group, partitions=None):
    result = coord.fetch_offsets(group, partitions)
    assert result.error is E.NONE
    return {tp: (v.offset if v is not None else None) for tp, v in result.offsets.items()}


def stable_group(coord, group="g", n=1, now=0, topics=("t",)):
    meta = b"\x00\x00" + len(topics).to_bytes(4, "big") + b"".join(
        len(t).to_bytes(2, "big") + t.encode() for t in topics
    ) + b"\xff\xff\xff\xff"
    waiters = [coord.join_group(join_req(group, client=f"c{i}", protocols=(("range", meta),)), now) for i in range(n)]
    for t in (now + 100, now + 200):
        coord.fire_deadlines(t)
    results = [done(w) for w in waiters]
    leader = results[0].leader_id
    for r in results:
        done(coord.sync_group(group, r.generation, r.member_id, {m.member_id: b"x" for m in r.members}, now + 200))
    assert coord.group(group).state is GroupState.STABLE
    return [r.member_id for r in results], leader, results[0].generation


def test_simple_consumer_commits_create_the_group(coord):
    result = commit(coord, "simple", {("t", 0): 5, ("t", 1): 7}, 1000)
    assert set(result.errors.values()) == {E.NONE} and result.flush is not None
    assert fetched(coord, "simple") == {("t", 0): 5, ("t", 1): 7}
    assert fetched(coord, "simple", [("t", 0), ("t", 9)]) == {("t", 0): 5, ("t", 9): None}
    value = coord.fetch_offsets("simple", [("t", 0)]).offsets[("t", 0)]
    assert (value.leader_epoch, value.metadata, value.commit_timestamp) == (3, "meta-5", 1000)
    # Unknown groups: nothing committed, no error; a commit with a generation is refused.
    assert fetched(coord, "nobody", [("t", 0)]) == {("t", 0): None}
    assert set(commit(coord, "nobody", {("t", 0): 1}, 1000, generation=3, member="m").errors.values()) == {
        E.ILLEGAL_GENERATION
    }
    assert coord.group("nobody") is None


def test_commit_rules_of_an_active_group(coord):
    (a,), leader, gen = stable_group(coord)
    assert commit(coord, "g", {("t", 0): 1}, 300, gen, a).errors[("t", 0)] is E.NONE
    assert commit(coord, "g", {("t", 0): 1}, 300, gen - 1, a).errors[("t", 0)] is E.ILLEGAL_GENERATION
    assert commit(coord, "g", {("t", 0): 1}, 300, gen, "stranger").errors[("t", 0)] is E.UNKNOWN_MEMBER_ID
    assert commit(coord, "g", {("t", 0): 1}, 300).errors[("t", 0)] is E.UNKNOWN_MEMBER_ID  # simple commit, active group
    # While preparing a rebalance commits still count; while completing they do not.
    b_wait = coord.join_group(join_req("g", client="b", protocols=coord.group("g").members[a].protocols), 400)
    assert commit(coord, "g", {("t", 0): 2}, 400, gen, a).errors[("t", 0)] is E.NONE
    done(coord.join_group(join_req("g", a, protocols=coord.group("g").members[a].protocols), 401))
    assert coord.group("g").state is GroupState.COMPLETING_REBALANCE
    assert commit(coord, "g", {("t", 0): 3}, 402, gen + 1, a).errors[("t", 0)] is E.REBALANCE_IN_PROGRESS
    assert done(b_wait).generation == gen + 1
    big = {("t", 1): OffsetValue(9, -1, "x" * 5000)}
    result = coord.commit_offsets(CommitRequest("solo", -1, "", big), 500)
    assert result.errors[("t", 1)] is E.OFFSET_METADATA_TOO_LARGE and result.flush is None
    assert fetched(coord, "g", [("t", 0)]) == {("t", 0): 2}


def test_groups_and_offsets_survive_a_restart_members_do_not(env):
    coord = env.open(0)
    (a, b), leader, gen = stable_group(coord, n=2)
    commit(coord, "g", {("t", 0): 10, ("t", 1): 11}, 300, gen, a)
    commit(coord, "g", {("t", 0): 12}, 301, gen, b)
    commit(coord, "simple", {("u", 0): 99}, 302)
    commit(coord, "simple", {("u", 0): 100}, 303)
    coord = env.restart(10_000)
    group = coord.group("g")
    assert group.state is GroupState.EMPTY and not group.members
    assert group.generation == gen and group.protocol_type == "consumer"
    assert group.state_timestamp == 10_000  # Empty since the restart
    assert fetched(coord, "g") == {("t", 0): 12, ("t", 1): 11}
    assert fetched(coord, "simple") == {("u", 0): 100}
    # The old members must rejoin; the next generation continues the count.
    assert coord.heartbeat("g", gen, a, 10_001) is E.UNKNOWN_MEMBER_ID
    assert commit(coord, "g", {("t", 0): 13}, 10_001, gen, a).errors[("t", 0)] is E.UNKNOWN_MEMBER_ID
    w = coord.join_group(join_req("g"), 10_002)
    coord.fire_deadlines(10_102)
    assert done(w).generation == gen + 1
    # A second restart keeps the Empty-since time it recorded.
    coord.leave_group("g", ((done(w).member_id, None),), 10_200)
    coord = env.restart(20_000)
    assert coord.group("g").state_timestamp == 10_200 and coord.group("g").generation == gen + 2


def test_offsets_of_an_empty_group_expire_after_retention(env):
    coord = env.open(0)
    env.config = type(env.config)(initial_rebalance_delay_ms=100, offsets_retention_ms=DAY)
    coord = env.restart(0)
    (a,), _, gen = stable_group(coord)
    commit(coord, "g", {("t", 0): 1}, 300, gen, a)
    commit(coord, "simple", {("t", 0): 1}, 300)
    # Active groups keep offsets; simple groups count from the commit.
    assert coord.expire_offsets(300 + DAY) == 1
    assert coord.group("simple") is None and fetched(coord, "g") == {("t", 0): 1}
    coord.leave_group("g", ((a, None),), 1000)
    assert coord.group("g").state is GroupState.EMPTY
    assert coord.expire_offsets(1000 + DAY - 1) == 0
    assert coord.expire_offsets(1000 + DAY) == 1
    assert coord.group("g") is None  # Empty and without offsets: removed
    coord = env.restart(2 * DAY)
    assert coord.group("g") is None and coord.group("simple") is None


def test_explicit_retention_and_the_periodic_check(env):
    env.config = type(env.config)(initial_rebalance_delay_ms=100, retention_check_interval_ms=60_000)
    coord = env.restart(0)
    commit(coord, "v2", {("t", 0): 1}, 1000, retention=5000)
    coord.fire_deadlines(59_999)
    assert coord.group("v2") is not None
    coord.fire_deadlines(60_000)
    assert coord.group("v2") is None
    assert coord.next_deadline_ms() == 120_000


def test_unsubscribed_topics_of_a_stable_group_expire(env):
    env.config = type(env.config)(initial_rebalance_delay_ms=100, offsets_retention_ms=DAY)
    coord = env.restart(0)
    (a,), _, gen = stable_group(coord, topics=("t",))
    commit(coord, "g", {("t", 0): 1, ("old", 0): 2}, 300, gen, a)
    for t in range(6000, DAY + 6000, 6000):
        coord.heartbeat("g", gen, a, t)
    assert coord.expire_offsets(300 + DAY) == 1
    assert fetched(coord, "g") == {("t", 0): 1}


def test_delete_groups(env):
    coord = env.open(0)
    (a,), _, gen = stable_group(coord)
    commit(coord, "g", {("t", 0): 1}, 300, gen, a)
    commit(coord, "empty", {("t", 0): 5}, 300)
    results, flush = coord.delete_groups(["g", "empty", "missing", ""], 400)
    assert results == {
        "g": E.NON_EMPTY_GROUP, "empty": E.NONE, "missing": E.GROUP_ID_NOT_FOUND, "": E.INVALID_GROUP_ID,
    }
    assert flush is not None and coord.group("empty") is None
    assert coord.delete_groups(["empty"], 401)[0] == {"empty": E.GROUP_ID_NOT_FOUND}
    coord = env.restart(1000)
    assert coord.group("empty") is None and fetched(coord, "g") == {("t", 0): 1}


def test_offset_delete(coord):
    (a,), _, gen = stable_group(coord, topics=("t",))
    commit(coord, "g", {("t", 0): 1, ("u", 0): 2}, 300, gen, a)
    result = coord.delete_offsets("g", [("t", 0), ("u", 0), ("u", 1)], 400)
    assert result.error is E.NONE
    assert result.partitions == {("t", 0): E.GROUP_SUBSCRIBED_TO_TOPIC, ("u", 0): E.NONE, ("u", 1): E.NONE}
    assert fetched(coord, "g") == {("t", 0): 1}
    assert coord.delete_offsets("missing", [("t", 0)], 400).error is E.GROUP_ID_NOT_FOUND
    commit(coord, "simple", {("t", 0): 1}, 300)
    assert coord.delete_offsets("simple", [("t", 0)], 400).partitions == {("t", 0): E.NONE}
    assert fetched(coord, "simple") == {}


def test_list_and_describe(coord):
    (a, b), leader, gen = stable_group(coord, n=2)
    commit(coord, "simple", {("t", 0): 1}, 300)
    error, groups = coord.list_groups()
    assert error is E.NONE
    assert {(g.group_id, g.protocol_type, g.state) for g in groups} == {
        ("g", "consumer", "Stable"), ("simple", "", "Empty"),
    }
    assert [g.group_id for g in coord.list_groups({"empty"})[1]] == ["simple"]
    g, missing = coord.describe_groups(["g", "missing"])
    assert (g.state, g.protocol_type, g.protocol_name) == ("Stable", "consumer", "range")
    assert {m.member_id for m in g.members} == {a, b} and all(m.assignment == b"x" for m in g.members)
    assert (missing.error, missing.state, missing.members) == (E.NONE, "Dead", ())
    # Outside Stable, members are listed without metadata or assignment.
    coord.join_group(join_req("g", a, protocols=coord.group("g").members[a].protocols), 400)
    described = coord.describe_groups(["g"])[0]
    assert described.state == "PreparingRebalance" and described.protocol_name == ""
    assert all(m.assignment == b"" and m.metadata == b"" for m in described.members)


def test_compaction_keeps_the_log_small_and_the_state_intact(env):
    env.config = type(env.config)(initial_rebalance_delay_ms=100, compact_min_records=200)
    coord = env.restart(0)
    for i in range(1000):
        commit(coord, f"g{i % 3}", {("t", i % 4): i}, i)
    stats = coord.statistics()
    assert stats.offsets == 12 and stats.log_records < 400
    plog = env.manager.get_partition(OFFSETS_TOPIC, 0)
    assert plog.log_start_offset > 0
    expected = {g: fetched(coord, g) for g in ("g0", "g1", "g2")}
    coord = env.restart(2000)
    assert {g: fetched(coord, g) for g in ("g0", "g1", "g2")} == expected
    assert coord.statistics().log_records < 400


def test_unreadable_records_are_skipped_at_load(env):
    coord = env.open(0)
    commit(coord, "g", {("t", 0): 1}, 10)
    from logbroker.broker.groups.store import OffsetsTopic

    store = OffsetsTopic(env.manager)
    store.append([(b"\x00\x63junk", b"x"), (b"\x00\x01\x00", b"truncated")], 20)
    coord = env.restart(30)
    assert fetched(coord, "g") == {("t", 0): 1}


def test_offsets_of_a_deleted_topic_are_dropped(make_harness):
    from logbroker.broker.groups import CommitRequest as Commit

    h = make_harness()
    broker = h.broker
    broker.create_topic("t", 2)
    broker.create_topic("u", 1)
    values = {("t", 0): OffsetValue(1), ("t", 1): OffsetValue(2), ("u", 0): OffsetValue(3)}
    broker.groups.commit_offsets(Commit("g", -1, "", values), broker.clock())
    broker.delete_topic("t")
    assert fetched(broker.groups, "g") == {("u", 0): 3}
