"""KIP-848 consumer groups: the coordinator's state machine with a fake clock
(no sockets): epochs, reconciliation that revokes before it assigns,
assignors, static members, fencing, regex subscriptions, metadata changes,
offsets with member epochs, conversion to and from classic groups, restarts."""

from __future__ import annotations

import random
import uuid

import pytest
from consumer_support import SIX, Client, as_dict, heartbeat
from group_support import done, join_req

from logbroker.broker.groups import CommitRequest, GroupOutcome, OffsetValue, TopicMeta

E = GroupOutcome


def owners_unique(*clients: Client) -> None:
    """No partition is owned by two clients at once."""
    seen: dict[tuple[str, int], str] = {}
    for c in clients:
        for tp in c.partitions():
            assert tp not in seen, f"{tp} owned by {seen[tp]} and {c.member_id}"
            seen[tp] = c.member_id


def settle(now: int, *clients: Client, rounds: int = 10, topics=None) -> int:
    for _ in range(rounds):
        for c in clients:
            c.beat(now, topics)
            owners_unique(*clients)
        now += 100
    return now


def test_first_member_gets_every_partition(coord):
    r = heartbeat(coord, "m1", 0, 0)
    assert r.error is E.NONE and r.member_epoch == 1 and r.member_id == "m1"
    assert as_dict(r.assignment) == {"t": frozenset(range(6))}
    assert r.heartbeat_interval_ms == 5000
    # A heartbeat that changes nothing carries no assignment.
    r = heartbeat(coord, "m1", 1, 10, owned={"t": frozenset(range(6))})
    assert r.error is E.NONE and r.member_epoch == 1 and r.assignment is None
    assert coord.describe_consumer_groups(["g"])[0].state == "Stable"


def test_a_second_member_gets_partitions_only_after_the_first_revoked_them(coord):
    a, b = Client(coord, "a"), Client(coord, "b")
    a.beat(0)
    assert len(a.partitions()) == 6
    b.beat(10)  # epoch 2, target 3+3; a still owns all six
    assert b.epoch == 2 and b.partitions() == set()
    assert coord.describe_consumer_groups(["g"])[0].state == "Reconciling"
    r = heartbeat(coord, "a", 1, 20, owned=dict(a.owned))  # told to revoke, keeps epoch 1
    assert r.member_epoch == 1 and len(as_dict(r.assignment)["t"]) == 3
    # b asks again before a acknowledged: still nothing.
    b.beat(30)
    assert b.partitions() == set()
    a.owned = as_dict(r.assignment)
    a.beat(40)  # acknowledges the revocation: now at the target epoch
    assert a.epoch == 2
    b.beat(50)
    assert len(b.partitions()) == 3 and not a.partitions() & b.partitions()
    assert coord.describe_consumer_groups(["g"])[0].state == "Stable"


def test_a_member_that_does_not_report_its_partitions_has_not_revoked(coord):
    a, b = Client(coord, "a"), Client(coord, "b")
    a.beat(0)
    b.beat(10)
    r = heartbeat(coord, "a", 1, 20, owned=None)  # TopicPartitions null: nothing acknowledged
    assert r.member_epoch == 1
    r = heartbeat(coord, "a", 1, 30, owned=None)
    assert r.member_epoch == 1
    assert b.beat(40).assignment is None or b.partitions() == set()


def test_random_schedules_never_give_a_partition_two_owners(coord):
    rng = random.Random(7)
    clients: list[Client] = []
    now = 0
    for step in range(400):
        now += rng.randint(1, 50)
        action = rng.random()
        if action < 0.08 and len(clients) < 5:
            clients.append(Client(coord, f"m{step}", assignor=rng.choice([None, "uniform", "range"])))
            clients[-1].beat(now)
        elif action < 0.12 and clients:
            clients.pop(rng.randrange(len(clients))).leave(now)
        elif clients:
            c = rng.choice(clients)
            if rng.random() < 0.2:
                # The answer is lost: the client sends a full heartbeat next.
                heartbeat(coord, c.member_id, c.epoch, now, owned=dict(c.owned))
                c.lost = True
            else:
                c.beat(now)
        owners_unique(*clients)
        group = coord.group("g")
        if group is not None and group.consumer is not None:
            for (topic, p), owner in group.consumer.owners.items():
                m = group.consumer.members[owner]
                assert p in m.assigned.get(topic, ()) or p in m.revoking.get(topic, ())
    now = settle(now, *clients)
    if clients:
        assert set().union(*(c.partitions() for c in clients)) == {("t", p) for p in range(6)}
        sizes = sorted(len(c.partitions()) for c in clients)
        assert sizes[-1] - sizes[0] <= 1


def test_leave_frees_partitions_for_the_others(coord):
    a, b = Client(coord, "a"), Client(coord, "b")
    now = settle(0, a, b)
    epoch = coord.group("g").consumer.group_epoch
    r = a.leave(now)
    assert r.error is E.NONE and r.member_epoch == -1
    assert coord.group("g").consumer.group_epoch == epoch + 1
    b.beat(now + 10)
    assert b.partitions() == {("t", p) for p in range(6)}
    assert heartbeat(coord, "a", 3, now + 20, owned={}).error is E.UNKNOWN_MEMBER_ID


def test_session_expiry_removes_the_member(coord):
    a, b = Client(coord, "a"), Client(coord, "b")
    now = settle(0, a, b)
    for t in range(now, now + 50_000, 1000):  # b heartbeats, a is silent
        b.beat(t)
        coord.fire_deadlines(t)
    assert "a" not in coord.group("g").consumer.members
    assert b.partitions() == {("t", p) for p in range(6)}


def test_a_member_that_never_revokes_is_fenced_after_its_rebalance_timeout(coord):
    a, b = Client(coord, "a"), Client(coord, "b")
    a.beat(0)
    b.beat(10)
    for t in range(20, 40_000, 1000):  # a heartbeats but keeps claiming all six partitions
        heartbeat(coord, "a", 1, t, owned={"t": frozenset(range(6))})
        coord.fire_deadlines(t)
        if "a" not in coord.group("g").consumer.members:
            break
    assert "a" not in coord.group("g").consumer.members
    assert t >= 30_000
    b.beat(t + 10)
    assert len(b.partitions()) == 6


def test_epoch_fencing(coord):
    a, b = Client(coord, "a"), Client(coord, "b")
    settle(0, a, b)
    epoch = a.epoch
    r = heartbeat(coord, "a", epoch + 1, 5000, owned=dict(a.owned))
    assert r.error is E.FENCED_MEMBER_EPOCH and "greater" in r.message
    # The previous epoch with partitions it does not have: fenced.
    r = heartbeat(coord, "a", epoch - 1, 5000, owned={"t": frozenset(range(6))})
    assert r.error is E.FENCED_MEMBER_EPOCH and "smaller" in r.message
    assert heartbeat(coord, "x", epoch, 5000, owned={}).error is E.UNKNOWN_MEMBER_ID
    assert heartbeat(coord, "x", 1, 5000, group="nope", owned={}).error is E.GROUP_ID_NOT_FOUND


def test_the_previous_epoch_is_accepted_when_the_answer_was_lost(coord):
    a = Client(coord, "a")
    a.beat(0)
    b = Client(coord, "b")
    b.beat(10)
    r = heartbeat(coord, "a", 1, 20, owned=dict(a.owned))
    kept = as_dict(r.assignment)
    r = heartbeat(coord, "a", 1, 30, owned=kept)  # acknowledged: epoch 2
    assert r.member_epoch == 2
    # The answer with epoch 2 was lost: epoch 1 with a subset of the assignment is still fine.
    assert heartbeat(coord, "a", 1, 40, owned=kept).error is E.NONE
    assert heartbeat(coord, "a", 1, 50, owned={"t": frozenset(range(6))}).error is E.FENCED_MEMBER_EPOCH


def test_request_validation(coord):
    def join(**kw):
        return heartbeat(coord, kw.pop("member", "m"), kw.pop("epoch", 0), 0, **kw)

    assert join(member="").error is E.INVALID_REQUEST
    assert join(rebalance=-1).error is E.INVALID_REQUEST
    assert join(owned={"t": frozenset({1})}).error is E.INVALID_REQUEST
    assert join(owned=None).error is E.INVALID_REQUEST
    r = join(names=None)
    assert r.error is E.INVALID_REQUEST and "SubscribedTopicNames" in r.message
    assert join(epoch=-3, owned=None).error is E.INVALID_REQUEST
    assert join(epoch=-2, owned=None).error is E.INVALID_REQUEST  # a static leave needs the instance id
    r = join(assignor="sticky")
    assert r.error is E.UNSUPPORTED_ASSIGNOR and "uniform, range" in r.message
    assert join(names=None, regex="t(").error is E.INVALID_REGULAR_EXPRESSION
    assert coord.group("g") is None  # nothing was created by refused requests


def test_range_assignor_when_most_members_ask_for_it(coord):
    a = Client(coord, "a", assignor="range")
    b = Client(coord, "b", assignor="range")
    c = Client(coord, "c")
    settle(0, a, b, c)
    desc = coord.describe_consumer_groups(["g"])[0]
    assert desc.assignor == "range"
    # Range: contiguous blocks in member order.
    assert a.partitions() == {("t", 0), ("t", 1)}
    assert b.partitions() == {("t", 2), ("t", 3)}
    assert c.partitions() == {("t", 4), ("t", 5)}


def test_uniform_is_sticky_when_a_member_joins(coord):
    a, b = Client(coord, "a"), Client(coord, "b")
    now = settle(0, a, b)
    before = {c.member_id: c.partitions() for c in (a, b)}
    c = Client(coord, "c")
    settle(now, a, b, c)
    assert all(len(x.partitions()) == 2 for x in (a, b, c))
    assert a.partitions() <= before["a"] and b.partitions() <= before["b"]


def test_static_member_rejoins_without_a_rebalance(coord):
    a = Client(coord, "a", instance="i-a")
    b = Client(coord, "b", instance="i-b")
    now = settle(0, a, b)
    owned_a, owned_b = a.partitions(), b.partitions()
    group_epoch = coord.group("g").consumer.group_epoch
    r = a.leave(now, static=True)
    assert r.error is E.NONE and r.member_epoch == -2
    # The others keep their partitions; a's stay reserved for it.
    b.beat(now + 10)
    assert b.partitions() == owned_b
    a2 = Client(coord, "a-2", instance="i-a")
    r = a2.beat(now + 20)
    assert r.error is E.NONE and a2.partitions() == owned_a
    assert coord.group("g").consumer.group_epoch == group_epoch
    assert "a" not in coord.group("g").consumer.members
    # The old member id is fenced; a second live instance is refused.
    r = heartbeat(coord, "a", a2.epoch, now + 30, instance="i-a", owned={})
    assert r.error is E.FENCED_INSTANCE_ID
    r = heartbeat(coord, "a-3", 0, now + 40, instance="i-a")
    assert r.error is E.UNRELEASED_INSTANCE_ID
    assert heartbeat(coord, "z", 3, now + 50, instance="i-z", owned={}).error is E.UNKNOWN_MEMBER_ID


def test_a_static_member_that_does_not_come_back_is_removed_after_the_session(coord):
    a = Client(coord, "a", instance="i-a")
    b = Client(coord, "b")
    now = settle(0, a, b)
    a.leave(now, static=True)
    for t in range(now, now + 50_000, 1000):
        b.beat(t)
        coord.fire_deadlines(t)
    assert len(b.partitions()) == 6


def test_regex_subscription_picks_up_new_topics(coord):
    topics = {"tpc-a": TopicMeta(uuid.uuid4(), 2), "other": TopicMeta(uuid.uuid4(), 2)}
    c = Client(coord, "r", names=None, regex="tpc-.*")
    c.beat(0, topics)
    assert c.partitions() == {("tpc-a", 0), ("tpc-a", 1)}
    topics["tpc-b"] = TopicMeta(uuid.uuid4(), 1)
    epoch = coord.group("g").consumer.group_epoch
    c.beat(100, topics)
    c.beat(200, topics)
    assert c.partitions() == {("tpc-a", 0), ("tpc-a", 1), ("tpc-b", 0)}
    assert coord.group("g").consumer.group_epoch == epoch + 1
    # Internal topics never match a regex.
    topics["__consumer_offsets"] = TopicMeta(uuid.uuid4(), 1)
    c2 = Client(coord, "r2", group="g2", names=None, regex=".*")
    c2.beat(300, topics)
    assert not any(t.startswith("__") for t, _ in c2.partitions())


def test_added_partitions_and_deleted_topics_change_the_target(coord):
    topics = {"t": TopicMeta(uuid.UUID(int=1), 2), "u": TopicMeta(uuid.UUID(int=2), 2)}
    c = Client(coord, "a", names=("t", "u"))
    c.beat(0, topics)
    assert len(c.partitions()) == 4
    topics["t"] = TopicMeta(uuid.UUID(int=1), 4)  # CreatePartitions
    c.beat(10, topics)
    assert len(c.partitions()) == 6
    del topics["u"]  # DeleteTopics
    c.beat(20, topics)
    c.beat(30, topics)
    assert c.partitions() == {("t", p) for p in range(4)}


def test_offset_commit_checks_the_member_epoch(coord):
    a = Client(coord, "a")
    a.beat(0)
    offsets = {("t", 0): OffsetValue(42)}

    def commit(member, epoch, version=9):
        result = coord.commit_offsets(CommitRequest("g", epoch, member, offsets, api_version=version), 100)
        return result.errors[("t", 0)]

    assert commit("a", a.epoch) is E.NONE
    assert commit("a", a.epoch + 1) is E.STALE_MEMBER_EPOCH
    assert commit("a", a.epoch, version=8) is E.UNSUPPORTED_VERSION
    assert commit("zz", a.epoch) is E.UNKNOWN_MEMBER_ID
    assert commit("", -1) is E.UNKNOWN_MEMBER_ID  # not while the group has members
    assert coord.fetch_offsets("g", [("t", 0)], member_id="a", member_epoch=a.epoch).offsets[("t", 0)].offset == 42
    assert coord.fetch_offsets("g", [("t", 0)], member_id="a", member_epoch=a.epoch + 5).error is E.STALE_MEMBER_EPOCH
    assert coord.fetch_offsets("g", [("t", 0)], member_id="zz", member_epoch=1).error is E.UNKNOWN_MEMBER_ID
    assert coord.fetch_offsets("g", [("t", 0)]).error is E.NONE  # an admin client
    a.leave(200)
    assert commit("", -1) is E.NONE  # an empty group takes commits from tools


def test_an_empty_classic_group_converts_both_ways_keeping_offsets(coord):
    coord.commit_offsets(CommitRequest("g", -1, "", {("t", 1): OffsetValue(7)}), 0)
    # A classic consumer joins and leaves: an empty classic group remains.
    waiter = coord.join_group(join_req(), 0)
    coord.fire_deadlines(1000)
    r = done(waiter)
    assert coord.group("g").members
    assert heartbeat(coord, "m", 0, 1000).error is E.GROUP_ID_NOT_FOUND  # it has a member
    coord.leave_group("g", ((r.member_id, None),), 1000)
    coord.fire_deadlines(1500)
    assert coord.group("g").group_type == "classic" and coord.group("g").is_empty()
    assert heartbeat(coord, "m", 0, 2000).error is E.NONE
    group = coord.group("g")
    assert group.group_type == "consumer" and group.offsets[("t", 1)].offset == 7
    # A classic JoinGroup to the non-empty consumer group is refused...
    assert done(coord.join_group(join_req(), 2100)).error is E.INCONSISTENT_GROUP_PROTOCOL
    heartbeat(coord, "m", -1, 2200, owned=None)
    # ...and converts it back once it is empty.
    coord.join_group(join_req(), 2300)
    assert coord.group("g").group_type == "classic" and coord.group("g").offsets[("t", 1)].offset == 7


def test_list_describe_and_delete(coord):
    a = Client(coord, "a")
    a.beat(0)
    error, listed = coord.list_groups()
    assert [(g.group_id, g.group_type, g.protocol_type) for g in listed] == [("g", "consumer", "consumer")]
    assert coord.list_groups({"stable"})[1][0].state == "Stable"
    assert coord.list_groups({"empty"})[1] == []
    (described,) = coord.describe_groups(["g"])  # DescribeGroups below v6: another type is Dead
    assert described.state == "Dead" and described.error is E.NONE
    (d,) = coord.describe_consumer_groups(["g"])
    assert (d.group_epoch, d.assignment_epoch, d.assignor) == (1, 1, "uniform")
    (m,) = d.members
    assert m.member_id == "a" and m.member_epoch == 1 and m.subscribed_names == ("t",)
    assert m.assignment == m.target_assignment == (("t", tuple(range(6))),)
    missing, = coord.describe_consumer_groups(["nope"])
    assert missing.error is E.GROUP_ID_NOT_FOUND and missing.message == "Group nope not found."
    coord.join_group(join_req(group="classic"), 0)
    classic, = coord.describe_consumer_groups(["classic"])
    assert classic.error is E.GROUP_ID_NOT_FOUND and "is not a consumer group" in classic.message
    assert coord.delete_groups(["g"], 10)[0]["g"] is E.NON_EMPTY_GROUP
    a.leave(20)
    assert coord.delete_groups(["g"], 30)[0]["g"] is E.NONE
    assert coord.group("g") is None


def test_group_and_offsets_survive_a_restart(env):
    coord = env.open(0)
    a = Client(coord, "a")
    a.beat(0)
    b = Client(coord, "b")
    settle(10, a, b)
    epoch = coord.group("g").consumer.group_epoch
    coord.commit_offsets(CommitRequest("g", a.epoch, "a", {("t", 0): OffsetValue(5)}, api_version=9), 2000)
    coord = env.restart(5000)
    group = coord.group("g")
    assert group.group_type == "consumer" and group.consumer.group_epoch == epoch
    assert group.offsets[("t", 0)].offset == 5
    # Members are not persisted: they are told to rejoin, and do with a higher epoch.
    assert heartbeat(coord, "a", a.epoch, 6000, owned=dict(a.owned)).error is E.UNKNOWN_MEMBER_ID
    r = heartbeat(coord, "a", 0, 6100)
    assert r.error is E.NONE and r.member_epoch > epoch


def test_heartbeats_while_loading_and_share_groups(env):
    coord = env.open(0, load=False)
    assert heartbeat(coord, "a", 0, 0).error is E.COORDINATOR_LOAD_IN_PROGRESS


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_assignors_spread_heterogeneous_subscriptions(coord, assignor):
    topics = {"t": TopicMeta(uuid.uuid4(), 4), "u": TopicMeta(uuid.uuid4(), 2)}
    a = Client(coord, "a", names=("t", "u"), assignor=assignor)
    b = Client(coord, "b", names=("t",), assignor=assignor)
    settle(0, a, b, topics=topics)
    assert ("u", 0) in a.partitions() and ("u", 1) in a.partitions()
    assert a.partitions() | b.partitions() == {("t", p) for p in range(4)} | {("u", 0), ("u", 1)}
    if assignor == "uniform":
        assert len(a.partitions()) == len(b.partitions()) == 3
