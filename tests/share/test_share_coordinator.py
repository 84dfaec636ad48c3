"""The share coordinator over a real broker and log, with explicit time:
membership, sessions, acquisition in whole batches, acknowledgements, lock
expiry, the delivery limit, dead-letter copies, persistence and replay."""

from __future__ import annotations

from logbroker.broker.groups import Group
from logbroker.broker.share import (
    ACK_ACCEPT, ACK_REJECT, ACK_RELEASE, ACKNOWLEDGED, ARCHIVED, AVAILABLE, DLQ_HEADERS, SHARE_STATE_TOPIC,
    AcquiredRange, HeartbeatRequest, ShareError,
)
from logbroker.records import decode_batches

E = ShareError
T0 = 1_000_000


def values_of(data) -> list[str]:
    return [r.value.decode() for b in decode_batches(bytes(data.records)) for r in b.records]


def acquired_values(data) -> list[str]:
    """The values a client keeps: records inside the acquired ranges."""
    keep = [(r.first, r.last) for r in data.acquired]
    return [
        r.value.decode() for b in decode_batches(bytes(data.records)) for r in b.records
        if any(f <= r.offset <= l for f, l in keep)
    ]


def fetch(env, group, member, topic, partitions=(0,), *, epoch=None, now=T0, max_records=500):
    """Open (epoch 0) or continue a session and acquire; returns {partition: PartitionData}."""
    share = env.share
    session = share.sessions.get(group, member)
    if epoch is None:
        epoch = session.epoch if session is not None else 0
    result, session = share.open_session(group, member, epoch, [(topic, p) for p in partitions], [], now)
    assert result.error is E.NONE, result
    out = share.acquire(group, member, session.ordered(), max_records, 1 << 20, now)
    share.commit(now)
    return {d.partition: d for d in out}


def earliest(env, group):
    env.share.alter_configs(group, {"share.auto.offset.reset": "earliest"}, T0)


def join(env, group, member, topics, now=T0):
    return env.share.heartbeat(HeartbeatRequest(group, member, 0, tuple(topics)), now)


# -- membership -----------------------------------------------------------------------


def test_a_member_joins_and_the_simple_assignor_assigns_it(env):
    env.topic("t", 3)
    env.topic("u", 2)
    r = join(env, "g", "m1", ["t", "u", "missing"])
    assert r.error is E.NONE and r.member_epoch == 1 and r.heartbeat_interval_ms == 5000
    assert [(name, parts) for _, name, parts in r.assignment] == [("t", (0, 1, 2)), ("u", (0, 1))]
    r2 = join(env, "g", "m2", ["t"])
    # Kafka's SimpleAssignor: a late member gets the partition its id hashes to
    # ("m2".hashCode() = 3429, 3429 % 3 = 0); m1 keeps what it has (sticky).
    assert r2.member_epoch == 2 and [p for _, _, p in r2.assignment] == [(0,)]
    # steady heartbeats carry no assignment; a stale epoch is fenced
    again = env.share.heartbeat(HeartbeatRequest("g", "m1", 1), T0 + 10)
    assert again.error is E.NONE and again.assignment is None and again.member_epoch == 1
    assert env.share.heartbeat(HeartbeatRequest("g", "m1", 7), T0).error is E.FENCED_MEMBER_EPOCH
    assert env.share.heartbeat(HeartbeatRequest("g", "nobody", 3), T0).error is E.UNKNOWN_MEMBER_ID
    (desc,) = env.share.describe(["g"])
    assert desc.state == "Stable" and {m.member_id for m in desc.members} == {"m1", "m2"}


def test_new_partitions_and_subscriptions_reach_members_on_their_next_heartbeat(env):
    env.topic("t", 1)
    join(env, "g", "m1", ["t"])
    env.broker.add_partitions("t", 3)
    r = env.share.heartbeat(HeartbeatRequest("g", "m1", 1), T0 + 1)
    assert r.member_epoch == 2 and [p for _, _, p in r.assignment] == [(0, 1, 2)]
    env.topic("u", 1)
    r = env.share.heartbeat(HeartbeatRequest("g", "m1", 2, ("t", "u")), T0 + 2)
    assert [name for _, name, _ in r.assignment] == ["t", "u"]
    # a lost answer: the member heartbeats with its previous epoch and hears the assignment again
    r = env.share.heartbeat(HeartbeatRequest("g", "m1", 2), T0 + 3)
    assert r.error is E.NONE and r.assignment is not None


def test_bad_heartbeats_are_refused(env):
    env.broker.groups.registry.add(Group("classic"))  # a classic group id
    assert env.share.heartbeat(HeartbeatRequest("", "m", 0, ("t",)), T0).error is E.INVALID_REQUEST
    assert env.share.heartbeat(HeartbeatRequest("g", "", 0, ("t",)), T0).error is E.INVALID_REQUEST
    assert env.share.heartbeat(HeartbeatRequest("g", "m", 0, None), T0).error is E.INVALID_REQUEST
    assert env.share.heartbeat(HeartbeatRequest("classic", "m", 0, ("t",)), T0).error is E.GROUP_ID_NOT_FOUND
    env.broker.groups.registry.remove("classic")


def test_the_group_size_is_bounded(make_env):
    env = make_env(group_share_max_size=2)
    join(env, "g", "a", ["t"])
    join(env, "g", "b", ["t"])
    assert join(env, "g", "c", ["t"]).error is E.GROUP_MAX_SIZE_REACHED


def test_a_leaving_member_is_gone_and_the_group_empty(env):
    join(env, "g", "m1", ["t"])
    r = env.share.heartbeat(HeartbeatRequest("g", "m1", -1), T0)
    assert r.error is E.NONE and r.member_epoch == -1
    assert env.share.describe(["g"])[0].state == "Empty"
    assert [(g.group_id, g.state) for g in env.share.list_groups()] == [("g", "Empty")]


def test_a_member_that_stops_heartbeating_loses_its_records(make_env):
    env = make_env(group_share_session_timeout_ms=10_000, group_share_record_lock_duration_ms=60_000)
    env.topic("t")
    earliest(env, "g")
    env.produce("t", [f"v{i}" for i in range(10)])
    join(env, "g", "dead", ["t"])
    assert fetch(env, "g", "dead", "t")[0].acquired == (AcquiredRange(0, 9, 1),)
    assert env.share.next_deadline_ms() == T0 + 10_000  # the session, before the 60 s lock
    env.broker.fire_deadlines(T0 + 10_000)
    assert env.share.describe(["g"])[0].members == ()
    assert env.share.sessions.get("g", "dead") is None
    assert fetch(env, "g", "alive", "t", now=T0 + 10_001)[0].acquired == (AcquiredRange(0, 9, 2),)


# -- sessions ---------------------------------------------------------------------------


def test_session_epochs(env):
    env.topic("t", 2)
    share = env.share
    r, s = share.open_session("g", "m", 0, [("t", 0)], [], T0)
    assert r.error is E.NONE and r.partitions == (("t", 0),) and s.epoch == 1
    r, s = share.open_session("g", "m", 1, [("t", 1)], [("t", 0)], T0)
    assert r.partitions == (("t", 1),) and s.epoch == 2
    assert share.open_session("g", "other", 1, [], [], T0)[0].error is E.SHARE_SESSION_NOT_FOUND
    assert share.open_session("g", "m", 0, [], [], T0, fetch=False)[0].error is E.INVALID_SHARE_SESSION_EPOCH
    assert share.open_session("g", "m", 5, [], [], T0)[0].error is E.INVALID_SHARE_SESSION_EPOCH
    assert share.sessions.get("g", "m") is None  # a wrong epoch ends the session
    assert share.open_session("", "m", 0, [], [], T0)[0].error is E.INVALID_REQUEST


def test_closing_or_reopening_a_session_releases_the_members_records(env):
    env.topic("t")
    earliest(env, "g")
    env.produce("t", ["a", "b", "c"])
    fetch(env, "g", "m", "t")
    session = env.share.sessions.get("g", "m")
    result, same = env.share.open_session("g", "m", -1, [], [], T0)
    assert result.error is E.NONE and same is session
    env.share.close_session(session, T0)
    assert env.share.share_partition("g", "t", 0).record(0) == (AVAILABLE, 1, None)
    fetch(env, "g", "m", "t", epoch=0)
    fetch(env, "g", "m", "t", epoch=0)  # reopened: the first session's records came back
    assert env.share.share_partition("g", "t", 0).record(0)[1] == 3


def test_an_idle_session_expires(make_env):
    env = make_env(group_share_session_timeout_ms=5000, group_share_heartbeat_interval_ms=1000,
                   group_share_record_lock_duration_ms=60_000)
    env.topic("t")
    earliest(env, "g")
    env.produce("t", ["a"])
    fetch(env, "g", "m", "t")
    fetch(env, "g", "m", "t", now=T0 + 3000)  # keeps it alive
    env.broker.fire_deadlines(T0 + 5000)
    assert env.share.sessions.get("g", "m") is not None
    env.broker.fire_deadlines(T0 + 8000)
    assert env.share.sessions.get("g", "m") is None
    assert env.share.share_partition("g", "t", 0).record(0) == (AVAILABLE, 1, None)


# -- acquisition and acknowledgement ---------------------------------------------------------


def test_records_are_served_as_whole_batches_with_acquired_ranges(env):
    env.topic("t")
    earliest(env, "g")
    env.produce("t", [f"v{i}" for i in range(30)], per_batch=10)
    got = fetch(env, "g", "a", "t", max_records=15)[0]
    assert got.acquired == (AcquiredRange(0, 19, 1),)  # two whole batches: 15 rounds up
    assert values_of(got) == [f"v{i}" for i in range(20)]
    other = fetch(env, "g", "b", "t")[0]
    assert other.acquired == (AcquiredRange(20, 29, 1),)
    # a's record 5 released: b gets the first batch again, but only offset 5 is b's
    env.share.acknowledge("g", "a", "t", 0, [(0, 19, (ACK_ACCEPT,) * 5 + (ACK_RELEASE,) + (ACK_ACCEPT,) * 14)], T0)
    env.share.commit(T0)
    again = fetch(env, "g", "b", "t")[0]
    assert again.acquired == (AcquiredRange(5, 5, 2),)
    assert acquired_values(again) == ["v5"] and len(values_of(again)) == 10
    assert not fetch(env, "g", "c", "t")


def test_two_members_never_hold_the_same_record(env):
    env.topic("t", 2)
    earliest(env, "g")
    for p in (0, 1):
        env.produce("t", [f"p{p}-{i}" for i in range(100)], partition=p, per_batch=7)
    seen: list[str] = []
    for turn in range(40):
        member = "ab"[turn % 2]
        for d in fetch(env, "g", member, "t", (0, 1), max_records=20).values():
            seen += acquired_values(d)
            batches = [(r.first, r.last, (ACK_ACCEPT,)) for r in d.acquired]
            assert env.share.acknowledge("g", member, "t", d.partition, batches, T0)[0] is E.NONE
        env.share.commit(T0)
    assert sorted(seen) == sorted(f"p{p}-{i}" for p in (0, 1) for i in range(100))
    assert [env.share.share_partition("g", "t", p).start for p in (0, 1)] == [100, 100]


def test_acknowledging_records_not_held_is_an_invalid_record_state(env):
    env.topic("t")
    earliest(env, "g")
    env.produce("t", ["a", "b"])
    fetch(env, "g", "m", "t")
    assert env.share.acknowledge("g", "x", "t", 0, [(0, 1, (ACK_ACCEPT,))], T0)[0] is E.INVALID_RECORD_STATE
    assert env.share.acknowledge("g", "m", "u", 0, [(0, 1, (ACK_ACCEPT,))], T0)[0] is E.INVALID_RECORD_STATE


def test_lock_expiry_hands_records_to_another_member_with_delivery_count_2(env):
    env.topic("t")
    earliest(env, "g")
    env.produce("t", ["a", "b", "c"])
    assert fetch(env, "g", "dies", "t")[0].acquired == (AcquiredRange(0, 2, 1),)
    assert not fetch(env, "g", "other", "t", now=T0 + 999)
    assert env.share.next_deadline_ms() == T0 + 1000
    env.broker.fire_deadlines(T0 + 1000)
    assert fetch(env, "g", "other", "t", now=T0 + 1001)[0].acquired == (AcquiredRange(0, 2, 2),)


def test_auto_offset_reset_latest_is_the_default(env):
    env.topic("t")
    env.produce("t", ["old"])
    assert not fetch(env, "g", "m", "t")
    env.produce("t", ["new"])
    assert acquired_values(fetch(env, "g", "m", "t")[0]) == ["new"]


def test_the_start_follows_the_log_start(env):
    env.topic("t")
    earliest(env, "g")
    env.produce("t", [f"v{i}" for i in range(10)], per_batch=5)
    fetch(env, "g", "m", "t", max_records=1)
    env.broker.partition("t", 0).delete_records_before(5)
    got = fetch(env, "g", "n", "t")[0]
    assert got.acquired == (AcquiredRange(5, 9, 1),)
    assert env.share.share_partition("g", "t", 0).start == 5


def test_unknown_partitions_answer_an_error(env):
    env.topic("t")
    share = env.share
    _, session = share.open_session("g", "m", 0, [("t", 3)], [], T0)
    (d,) = share.acquire("g", "m", session.ordered(), 10, 1 << 20, T0)
    assert d.error is E.UNKNOWN_TOPIC_OR_PARTITION


# -- delivery limit and dead letters ------------------------------------------------------------


def dlq_records(env, topic="dlq"):
    plog = env.broker.partition(topic, 0)
    data = plog.read(plog.log_start_offset, 1 << 20).records
    return [r for b in decode_batches(bytes(data)) for r in b.records]


def test_rejected_and_exhausted_records_are_copied_to_the_dead_letter_topic(make_env):
    env = make_env(group_share_delivery_count_limit=2)
    env.topic("t")
    env.share.alter_configs("g", {"share.auto.offset.reset": "earliest", "errors.deadletterqueue.topic.name": "dlq"}, T0)
    env.produce("t", ["ok", "bad", "slow"])
    fetch(env, "g", "m", "t")
    env.share.acknowledge("g", "m", "t", 0, [(0, 2, (ACK_ACCEPT, ACK_REJECT, ACK_RELEASE))], T0)
    written = env.share.commit(T0)
    assert ("dlq", 0) in written.appended and ("t", 0) in written.available
    assert fetch(env, "g", "m", "t", now=T0 + 1)[0].acquired == (AcquiredRange(2, 2, 2),)
    env.broker.fire_deadlines(T0 + 1001)  # second delivery's lock expires: limit reached
    records = dlq_records(env)
    assert [r.value for r in records] == [b"bad", b"slow"]
    headers = [dict(r.headers) for r in records]
    assert set(DLQ_HEADERS) <= set(headers[0])
    assert headers[0]["__dlq.errors.reason"] == b"REJECTED" and headers[0]["__dlq.errors.delivery.count"] == b"1"
    assert headers[1]["__dlq.errors.reason"] == b"DELIVERY_COUNT_EXCEEDED"
    assert (headers[1]["__dlq.errors.topic"], headers[1]["__dlq.errors.partition"],
            headers[1]["__dlq.errors.offset"], headers[1]["__dlq.errors.delivery.count"]) == (b"t", b"0", b"2", b"2")
    assert env.share.share_partition("g", "t", 0).start == 3


def test_without_a_dead_letter_topic_archived_records_are_dropped(env):
    env.topic("t")
    earliest(env, "g")
    env.produce("t", ["bad"])
    fetch(env, "g", "m", "t")
    env.share.acknowledge("g", "m", "t", 0, [(0, 0, (ACK_REJECT,))], T0)
    assert env.share.commit(T0).appended == []
    assert env.share.share_partition("g", "t", 0).record(0)[0] in (ACKNOWLEDGED, ARCHIVED)


def test_group_configs_validate_and_describe(env):
    import pytest

    from logbroker.errors import InvalidConfigError

    with pytest.raises(InvalidConfigError):
        env.share.alter_configs("g", {"share.auto.offset.reset": "sometimes"}, T0)
    with pytest.raises(InvalidConfigError):
        env.share.alter_configs("g", {"no.such.config": "1"}, T0)
    with pytest.raises(InvalidConfigError):
        env.share.alter_configs("g", {"errors.deadletterqueue.topic.name": "__consumer_offsets"}, T0)
    env.share.alter_configs("g", {"share.record.lock.duration.ms": "1234"}, T0)
    described = {c.name: c for c in env.share.describe_configs("g")}
    assert described["share.record.lock.duration.ms"].value == "1234"
    assert not described["share.record.lock.duration.ms"].is_default
    assert described["share.auto.offset.reset"].value == "latest" and described["share.auto.offset.reset"].is_default
    assert env.share.group("g").settings.record_lock_duration_ms == 1234


# -- persistence --------------------------------------------------------------------------------


def test_restart_keeps_acknowledged_records_acknowledged_and_loses_none(env):
    env.topic("t")
    env.share.alter_configs("g", {"share.auto.offset.reset": "earliest", "share.delivery.count.limit": "4"}, T0)
    env.produce("t", [f"v{i}" for i in range(20)], per_batch=5)
    fetch(env, "g", "m", "t", max_records=10)  # 0..9
    acks = (ACK_ACCEPT,) * 3 + (ACK_RELEASE,) + (ACK_REJECT,) + (ACK_ACCEPT,) * 3 + (ACK_RELEASE, ACK_ACCEPT)
    env.share.acknowledge("g", "m", "t", 0, [(0, 9, acks)], T0)
    env.share.commit(T0)
    fetch(env, "g", "m", "t", max_records=1)  # 3 again (count 2) and 8 (count 2): held at the restart
    env.reopen()
    sp = env.share.share_partition("g", "t", 0)
    assert sp.start == 3
    assert sp.record(3) == (AVAILABLE, 2, None) and sp.record(4) == (ARCHIVED, 1, None)
    assert env.share.group("g").settings.delivery_count_limit == 4
    got = fetch(env, "g", "n", "t")[0]
    assert acquired_values(got) == ["v3", "v8"] + [f"v{i}" for i in range(10, 20)]
    assert got.acquired[0] == AcquiredRange(3, 3, 3)


def test_replay_of_many_deltas_equals_the_live_state(make_env):
    env = make_env()
    env.share.config.__class__  # snapshots every 200 deltas by default
    env.topic("t")
    earliest(env, "g")
    env.produce("t", [f"v{i}" for i in range(1000)], per_batch=3)
    for i in range(300):
        got = fetch(env, "g", "m", "t", max_records=3).get(0)
        if got is None:
            break
        types = tuple(ACK_ACCEPT if (r % 7) else ACK_RELEASE for r in range(got.acquired[0].first, got.acquired[-1].last + 1))
        env.share.acknowledge("g", "m", "t", 0, [(got.acquired[0].first, got.acquired[-1].last, types)], T0)
        env.share.commit(T0)
    live = env.share.share_partition("g", "t", 0)
    live_runs, live_window = live.runs().tolist(), (live.start, live.end)
    env.reopen()
    replayed = env.share.share_partition("g", "t", 0)
    assert replayed.runs().tolist() == live_runs
    assert replayed.start == live_window[0]


def test_the_state_topic_is_compacted(make_env):
    env = make_env()
    share = env.share
    object.__setattr__(share.config, "compact_min_records", 50)
    env.topic("t")
    earliest(env, "g")
    env.produce("t", [f"v{i}" for i in range(200)], per_batch=1)
    for _ in range(200):
        got = fetch(env, "g", "m", "t", max_records=1).get(0)
        if got is None:
            break
        r = got.acquired[0]
        share.acknowledge("g", "m", "t", 0, [(r.first, r.last, (ACK_ACCEPT,))], T0)
        share.commit(T0)
    plog = env.broker.partition(SHARE_STATE_TOPIC, 0)
    assert plog.log_start_offset > 0
    assert share.statistics().log_records < 120
    env.reopen()
    assert env.share.share_partition("g", "t", 0).start == 200


def test_a_deleted_topic_takes_its_share_state_along(env):
    env.topic("t")
    earliest(env, "g")
    env.produce("t", ["a"])
    fetch(env, "g", "m", "t")
    env.broker.delete_topic("t")
    assert env.share.share_partition("g", "t", 0) is None
    env.topic("t")
    env.reopen()
    assert env.share.share_partition("g", "t", 0) is None
    env.produce("t", ["new"])
    assert acquired_values(fetch(env, "g", "m", "t")[0]) == ["new"]


def test_groups_and_configs_survive_a_restart(env):
    join(env, "g", "m", ["t"])
    env.share.alter_configs("g", {"errors.deadletterqueue.topic.name": "dlq"}, T0)
    env.reopen()
    assert [(g.group_id, g.state) for g in env.share.list_groups()] == [("g", "Empty")]
    assert env.share.group("g").settings.dlq_topic == "dlq"
    assert env.share.heartbeat(HeartbeatRequest("g", "m", 1), T0).error is E.UNKNOWN_MEMBER_ID
    assert join(env, "g", "m", ["t"]).member_epoch > 1
