"""The group state machine with explicit time: joins, rebalances, timeouts, static members, errors."""

import pytest

from group_support import done, join_req
from logbroker.broker.deferred import Deferred
from logbroker.broker.groups import NEW_MEMBER_JOIN_TIMEOUT_MS, GroupOutcome as E, GroupState

DELAY = 100  # the env fixture's initial rebalance delay


def settle(coord, until):
    """Fire each deadline up to ``until`` at its own time, as the server's timer does."""
    while (deadline := coord.next_deadline_ms()) is not None and deadline <= until:
        coord.fire_deadlines(deadline)
    coord.fire_deadlines(until)


def form(coord, n=1, group="g", now=0, **kw):
    """Members that join an empty group together; returns (member ids, leader id, generation) once Stable."""
    waiters = [coord.join_group(join_req(group, client=f"c{i}", **kw), now) for i in range(n)]
    settle(coord, now + 2 * DELAY)
    results = [done(w) for w in waiters]
    assert all(r.error is E.NONE for r in results)
    leader = results[0].leader_id
    gen = results[0].generation
    ids = [r.member_id for r in results]
    assignments = {m: f"assign-{m}".encode() for m in ids}
    syncs = [coord.sync_group(group, gen, m, assignments if m == leader else {}, now + 2 * DELAY) for m in ids]
    assert [done(s).error for s in syncs] == [E.NONE] * n
    assert coord.group(group).state is GroupState.STABLE
    return ids, leader, gen


def rejoin(coord, group, member_id, now, **kw):
    return coord.join_group(join_req(group, member_id, **kw), now)


def test_first_member_waits_the_initial_delay_then_leads(coord):
    waiter = coord.join_group(join_req(), 0)
    assert isinstance(waiter, Deferred) and not waiter.done
    assert coord.group("g").state is GroupState.PREPARING_REBALANCE
    assert coord.next_deadline_ms() == DELAY
    coord.fire_deadlines(DELAY - 1)
    assert not waiter.done
    coord.fire_deadlines(DELAY)
    result = done(waiter)
    assert result.error is E.NONE and result.generation == 1 and result.leader_id == result.member_id
    assert result.member_id.startswith("client-")
    assert [m.member_id for m in result.members] == [result.member_id]
    assert result.members[0].metadata == b"range-meta" and result.protocol_name == "range"
    assert coord.group("g").state is GroupState.COMPLETING_REBALANCE
    sync = done(coord.sync_group("g", 1, result.member_id, {result.member_id: b"a"}, DELAY))
    assert (sync.error, sync.assignment, sync.protocol_name) == (E.NONE, b"a", "range")
    assert coord.group("g").state is GroupState.STABLE


def test_initial_delay_extends_while_members_arrive_up_to_the_rebalance_timeout(coord):
    a = coord.join_group(join_req(rebalance=450), 0)
    b = coord.join_group(join_req(rebalance=450), 50)
    coord.fire_deadlines(DELAY)  # B arrived during the delay: wait another delay
    assert not a.done and not b.done
    settle(coord, 2 * DELAY)
    assert done(a).generation == done(b).generation == 1
    assert len(done(a).members) + len(done(b).members) == 2

    # Members that keep arriving are capped by the rebalance timeout (450 ms).
    waiters = []
    for now in range(0, 2000, 10):
        if now % 90 == 0:
            waiters.append(coord.join_group(join_req("h", rebalance=450), now))
        coord.fire_deadlines(now)
        if waiters[0].done:
            break
    assert 450 <= now <= 460
    assert done(waiters[0]).generation == 1


def test_member_id_required_round_trip_and_pending_member_expiry(coord):
    first = coord.join_group(join_req(v4=True, session=6000), 0)
    assert first.error is E.MEMBER_ID_REQUIRED and first.member_id.startswith("client-")
    assert coord.group("g").state is GroupState.EMPTY and not coord.group("g").members
    waiter = coord.join_group(join_req(member=first.member_id, v4=True), 10)
    coord.fire_deadlines(10 + DELAY)
    assert done(waiter).member_id == first.member_id and done(waiter).generation == 1
    # A pending member that never comes back expires after its session timeout.
    ghost = coord.join_group(join_req("h", v4=True, session=6000), 0)
    assert coord.group("h").pending_members
    coord.fire_deadlines(6000)
    assert not coord.group("h").pending_members
    assert done(coord.join_group(join_req("h", ghost.member_id, v4=True), 6001)).error is E.UNKNOWN_MEMBER_ID


def test_static_member_skips_the_member_id_round_trip(coord):
    waiter = coord.join_group(join_req(v4=True, instance="i-1"), 0)
    coord.fire_deadlines(DELAY)
    assert done(waiter).error is E.NONE


def test_new_member_rebalances_a_stable_group_and_others_learn_by_heartbeat(coord):
    (a,), leader, gen = form(coord)
    b_wait = coord.join_group(join_req(client="b"), 1000)
    assert coord.group("g").state is GroupState.PREPARING_REBALANCE and not b_wait.done
    assert coord.heartbeat("g", gen, a, 1001) is E.REBALANCE_IN_PROGRESS
    assert not b_wait.done  # a has not rejoined yet
    a_wait = rejoin(coord, "g", a, 1002)  # everyone is back: no need to wait for the timeout
    ra, rb = done(a_wait), done(b_wait)
    assert ra.generation == rb.generation == gen + 1
    assert ra.leader_id == a and len(ra.members) == 2 and rb.members == ()
    follower = coord.sync_group("g", gen + 1, rb.member_id, {}, 1003)
    assert not follower.done  # waits for the leader's assignment
    assert coord.heartbeat("g", gen + 1, rb.member_id, 1003) is E.NONE  # heartbeats while completing are fine
    done(coord.sync_group("g", gen + 1, a, {a: b"A", rb.member_id: b"B"}, 1004))
    assert done(follower).assignment == b"B"


def test_rebalance_timeout_removes_members_that_did_not_rejoin(coord):
    (a, b), leader, gen = form(coord, 2, rebalance=5000)
    c_wait = coord.join_group(join_req(client="c", rebalance=5000), 1000)
    a_wait = rejoin(coord, "g", a, 1100, rebalance=5000)
    coord.fire_deadlines(5999)
    assert not a_wait.done
    coord.fire_deadlines(6000)  # 1000 + the group's rebalance timeout
    assert done(a_wait).generation == gen + 1 and done(c_wait).error is E.NONE
    assert set(coord.group("g").members) == {a, done(c_wait).member_id}
    assert coord.heartbeat("g", gen, b, 6001) is E.UNKNOWN_MEMBER_ID


def test_session_expiry_removes_a_silent_member_and_rebalances(coord):
    (a, b), leader, gen = form(coord, 2, session=6000)
    now = 2 * DELAY
    for t in range(1000, 6000, 1000):
        assert coord.heartbeat("g", gen, a, now + t) is E.NONE
    coord.fire_deadlines(now + 6000)
    group = coord.group("g")
    assert b not in group.members and group.state is GroupState.PREPARING_REBALANCE
    assert coord.heartbeat("g", gen, a, now + 6001) is E.REBALANCE_IN_PROGRESS
    result = done(rejoin(coord, "g", a, now + 6002, session=6000))
    assert result.generation == gen + 1 and [m.member_id for m in result.members] == [a]


def test_heap_does_not_grow_with_heartbeats(coord):
    (a,), _, gen = form(coord, session=6000)
    size = coord.timers
    for t in range(1000, 100_000, 500):
        assert coord.heartbeat("g", gen, a, t) is E.NONE
        coord.fire_deadlines(t)
    assert coord.timers <= size + 2
    assert coord.next_deadline_ms() > 99_000


def test_members_waiting_in_join_or_sync_are_not_expired(coord):
    (a, b), leader, gen = form(coord, 2, session=6000, rebalance=60_000)
    follower = b if leader == a else a
    # The leader asks for a rebalance; the follower stays silent past its session timeout.
    leader_wait = rejoin(coord, "g", leader, 1000, session=6000, rebalance=60_000)
    coord.fire_deadlines(1000 + 6000 + 2 * DELAY)  # the leader waits in JoinGroup: kept alive
    assert leader in coord.group("g").members and follower not in coord.group("g").members
    assert done(leader_wait).generation == gen + 1
    # A new member waiting in JoinGroup is dropped only after Kafka's new-member timeout.
    coord.join_group(join_req("h", session=6000, rebalance=600_000), 0)
    coord.join_group(join_req("h", session=6000, rebalance=600_000), 0)
    settle(coord, 2 * DELAY)
    r = list(coord.group("h").members)
    late = coord.join_group(join_req("h", client="late", session=6000, rebalance=600_000), 3 * DELAY)
    assert not late.done
    for t in range(1000, NEW_MEMBER_JOIN_TIMEOUT_MS, 2000):
        for m in r:
            coord.heartbeat("h", 1, m, t)
        coord.fire_deadlines(t)
    assert not late.done
    coord.fire_deadlines(3 * DELAY + NEW_MEMBER_JOIN_TIMEOUT_MS)
    assert done(late).error is E.UNKNOWN_MEMBER_ID


def test_leader_that_dies_before_syncing_releases_the_waiting_followers(coord):
    waiters = [coord.join_group(join_req(client=f"c{i}", session=6000), 0) for i in range(2)]
    settle(coord, 2 * DELAY)
    leader = done(waiters[0]).leader_id
    follower = next(done(w).member_id for w in waiters if done(w).member_id != leader)
    pending = coord.sync_group("g", 1, follower, {}, 2 * DELAY + 10)
    assert not pending.done
    coord.fire_deadlines(2 * DELAY + 6000)  # the leader never syncs nor heartbeats
    assert done(pending).error is E.REBALANCE_IN_PROGRESS
    assert coord.group("g").state is GroupState.PREPARING_REBALANCE
    result = done(rejoin(coord, "g", follower, 2 * DELAY + 6001, session=6000))
    assert result.leader_id == follower and result.generation == 2


def test_members_that_never_sync_are_removed_after_the_rebalance_timeout(coord):
    waiters = [coord.join_group(join_req(client=f"c{i}", rebalance=4000, session=60_000), 0) for i in range(2)]
    settle(coord, 2 * DELAY)
    leader = done(waiters[0]).leader_id
    silent = next(done(w).member_id for w in waiters if done(w).member_id != leader)
    done(coord.sync_group("g", 1, leader, {leader: b"x", silent: b"y"}, 2 * DELAY))
    assert coord.group("g").state is GroupState.STABLE
    coord.fire_deadlines(2 * DELAY + 4000)
    assert silent not in coord.group("g").members
    assert coord.group("g").state is GroupState.PREPARING_REBALANCE


def test_leave_group_rebalances_and_answers_per_member(coord):
    (a, b, c), leader, gen = form(coord, 3, instance=None)
    result = coord.leave_group("g", ((b, None), ("nobody", None)), 1000)
    assert result.error is E.NONE and [m[2] for m in result.members] == [E.NONE, E.UNKNOWN_MEMBER_ID]
    assert coord.group("g").state is GroupState.PREPARING_REBALANCE
    assert coord.leave_group("missing", ((a, None),), 1000).members[0][2] is E.UNKNOWN_MEMBER_ID
    # The last members leaving end the rebalance with an Empty group.
    coord.leave_group("g", ((a, None), (c, None)), 1001)
    assert coord.group("g").state is GroupState.EMPTY and coord.group("g").generation == gen + 1


def test_static_member_rejoin_replaces_the_old_id_without_rebalance(coord):
    w1 = coord.join_group(join_req(instance="i-1", client="s1"), 0)
    w2 = coord.join_group(join_req(instance="i-2", client="s2"), 0)
    settle(coord, 2 * DELAY)
    r1, r2 = done(w1), done(w2)
    leader = r1.leader_id
    done(coord.sync_group("g", 1, leader, {r1.member_id: b"one", r2.member_id: b"two"}, 2 * DELAY))
    done(coord.sync_group("g", 1, r2.member_id if leader == r1.member_id else r1.member_id, {}, 2 * DELAY))
    # i-1 restarts: a join without member id but with its instance id.
    again = done(coord.join_group(join_req(instance="i-1", client="s1"), 1000))
    assert again.error is E.NONE and again.member_id != r1.member_id and again.generation == 1
    assert again.leader_id == leader and coord.group("g").state is GroupState.STABLE
    assert done(coord.sync_group("g", 1, again.member_id, {}, 1001, group_instance_id="i-1")).assignment == b"one"
    # The old member id is fenced; without the instance id it is simply unknown.
    assert coord.heartbeat("g", 1, r1.member_id, 1002, group_instance_id="i-1") is E.FENCED_INSTANCE_ID
    assert coord.heartbeat("g", 1, r1.member_id, 1002) is E.UNKNOWN_MEMBER_ID
    assert done(coord.sync_group("g", 1, r1.member_id, {}, 1002, group_instance_id="i-1")).error is E.FENCED_INSTANCE_ID


def test_static_member_with_new_protocols_triggers_a_rebalance(coord):
    w = coord.join_group(join_req(instance="i-1"), 0)
    coord.fire_deadlines(DELAY)
    r = done(w)
    done(coord.sync_group("g", 1, r.member_id, {r.member_id: b"a"}, DELAY))
    again = coord.join_group(join_req(instance="i-1", protocols=(("roundrobin", b"x"),)), 500)
    assert coord.group("g").state is not GroupState.STABLE
    result = done(again)  # the only member rejoined: the rebalance completes at once
    assert result.generation == 2 and result.protocol_name == "roundrobin"


def test_static_member_waiting_in_join_is_fenced_by_its_successor(coord):
    wa = coord.join_group(join_req(instance="i-1", client="a"), 0)
    wb = coord.join_group(join_req(client="b"), 0)
    settle(coord, 2 * DELAY)
    a, b = done(wa).member_id, done(wb).member_id
    leader = done(wa).leader_id
    done(coord.sync_group("g", 1, leader, {a: b"A", b: b"B"}, 2 * DELAY))
    waiting = rejoin(coord, "g", a, 1000, instance="i-1")  # a rebalance that waits for b
    assert not waiting.done
    successor = coord.join_group(join_req(instance="i-1", client="a2"), 1001)
    assert done(waiting).error is E.FENCED_INSTANCE_ID
    assert not successor.done
    result_b = done(rejoin(coord, "g", b, 1002))
    new_id = done(successor).member_id
    assert new_id not in (a, "") and result_b.generation == 2
    assert set(coord.group("g").members) == {new_id, b}


@pytest.mark.parametrize(
    "request_kw, error",
    [
        ({"group": ""}, E.INVALID_GROUP_ID),
        ({"session": 5999}, E.INVALID_SESSION_TIMEOUT),
        ({"session": 1_800_001}, E.INVALID_SESSION_TIMEOUT),
        ({"member": "stranger"}, E.UNKNOWN_MEMBER_ID),
        ({"protocols": ()}, E.INCONSISTENT_GROUP_PROTOCOL),
        ({"protocol_type": ""}, E.INCONSISTENT_GROUP_PROTOCOL),
    ],
)
def test_join_errors(coord, request_kw, error):
    kwargs = {"group": "g", **request_kw}
    group = kwargs.pop("group")
    member = kwargs.pop("member", "")
    assert done(coord.join_group(join_req(group, member, **kwargs), 0)).error is error


def test_generation_member_and_protocol_errors(coord):
    (a, b), leader, gen = form(coord, 2)
    assert coord.heartbeat("g", gen + 5, a, 1000) is E.ILLEGAL_GENERATION
    assert coord.heartbeat("g", gen, "stranger", 1000) is E.UNKNOWN_MEMBER_ID
    assert coord.heartbeat("nope", gen, a, 1000) is E.UNKNOWN_MEMBER_ID
    assert coord.heartbeat("", gen, a, 1000) is E.INVALID_GROUP_ID
    assert done(coord.sync_group("g", gen - 1, a, {}, 1000)).error is E.ILLEGAL_GENERATION
    assert done(coord.sync_group("g", gen, a, {}, 1000, protocol_name="other")).error is E.INCONSISTENT_GROUP_PROTOCOL
    # A member of another protocol type, or with no protocol in common, cannot join.
    other = join_req(protocol_type="connect")
    assert done(coord.join_group(other, 1000)).error is E.INCONSISTENT_GROUP_PROTOCOL
    sticky = join_req(protocols=(("sticky", b""),))
    assert done(coord.join_group(sticky, 1000)).error is E.INCONSISTENT_GROUP_PROTOCOL
    # During a rebalance SyncGroup says so.
    rejoin(coord, "g", a, 1000)
    assert done(coord.sync_group("g", gen, b, {}, 1000)).error is E.REBALANCE_IN_PROGRESS


def test_the_protocol_all_members_support_wins_the_vote(coord):
    prefs = [
        (("range", b""), ("roundrobin", b""), ("sticky", b"")),
        (("roundrobin", b""), ("range", b"")),
        (("roundrobin", b""), ("range", b""), ("sticky", b"")),
    ]
    waiters = [coord.join_group(join_req(protocols=p), 0) for p in prefs]
    settle(coord, 2 * DELAY)
    assert {done(w).protocol_name for w in waiters} == {"roundrobin"}


def test_commands_before_load_say_loading(env):
    coord = env.open(0, load=False)
    assert done(coord.join_group(join_req(), 0)).error is E.COORDINATOR_LOAD_IN_PROGRESS
    assert coord.heartbeat("g", 1, "m", 0) is E.NONE  # Kafka: do not make members rejoin
    assert done(coord.sync_group("g", 1, "m", {}, 0)).error is E.REBALANCE_IN_PROGRESS
    assert coord.fetch_offsets("g", None).error is E.COORDINATOR_LOAD_IN_PROGRESS
    coord.load(0)
    assert not coord.loading


def test_shutdown_answers_waiting_joins_and_syncs(coord):
    waiters = [coord.join_group(join_req(client=f"c{i}"), 0) for i in range(2)]
    settle(coord, 2 * DELAY)
    leader = done(waiters[0]).leader_id
    follower = next(done(w).member_id for w in waiters if done(w).member_id != leader)
    sync = coord.sync_group("g", 1, follower, {}, 300)
    late_join = coord.join_group(join_req("h"), 300)
    coord.shutdown_pending()
    assert done(sync).error is E.NOT_COORDINATOR
    assert done(late_join).error is E.NOT_COORDINATOR
    assert done(coord.join_group(join_req("h"), 301)).error is E.NOT_COORDINATOR
