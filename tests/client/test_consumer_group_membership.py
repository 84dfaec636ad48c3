"""The KIP-848 member's rules without a broker: what each heartbeat carries, what an
answer means, and how a new target assignment is reconciled (revoke first)."""

from __future__ import annotations

import base64
import uuid

from logbroker.client import TopicPartition
from logbroker.client._wire import ConsumerHeartbeatAnswer
from logbroker.client.consumer_group_member import Membership, Outcome, Plan, new_member_id
from logbroker.errors import CommitFailedError, GroupError
from logbroker.protocol import ErrorCode

A = str(uuid.uuid4())
B = str(uuid.uuid4())


def member(**kw) -> Membership:
    options = {"member_id": "m1", "instance_id": None, "rebalance_timeout_ms": 30_000, "server_assignor": "uniform"}
    options.update(kw)
    m = Membership(**options)
    m.subscribe(["b-topic", "a-topic"])
    m.learn_topic_ids({"a-topic": A, "b-topic": B})
    return m


def answer(epoch: int, assignment=None, *, code=ErrorCode.none, interval=500, member_id=None):
    return ConsumerHeartbeatAnswer(error_code=code, error_message=None, member_id=member_id, member_epoch=epoch,
                                   heartbeat_interval_ms=interval, assignment=assignment)


def tps(topic: str, *parts: int) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in parts}


def test_member_id_is_a_url_safe_base64_uuid():
    ids = {new_member_id() for _ in range(200)}
    assert len(ids) == 200
    for text in ids:
        assert len(text) == 22 and not text.startswith("-")
        assert len(base64.urlsafe_b64decode(text + "==")) == 16


def test_join_sends_everything_then_only_what_changed():
    m = member(instance_id="static-1")
    join = m.next_heartbeat()
    assert join.member_epoch == 0 and join.member_id == "m1" and join.instance_id == "static-1"
    assert join.subscribed_topic_names == ("a-topic", "b-topic") and join.subscribed_topic_regex is None
    assert join.server_assignor == "uniform" and join.rebalance_timeout_ms == 30_000
    assert join.owned == {}  # an empty list, not "unchanged"
    assert m.on_answer(answer(1, {}), "g").outcome is Outcome.NEW_TARGET
    assert m.epoch == 1 and m.heartbeat_interval_ms == 500
    again = m.next_heartbeat()
    assert again.member_epoch == 1 and again.instance_id == "static-1"  # the instance id always goes
    assert again.rebalance_timeout_ms == -1 and again.subscribed_topic_names is None
    assert again.server_assignor is None and again.owned is None
    assert m.subscribe(["c-topic"]) is True
    assert m.next_heartbeat().subscribed_topic_names == ("c-topic",)
    assert m.subscribe(["c-topic"]) is False


def test_a_failed_request_makes_the_next_heartbeat_full():
    m = member()
    m.next_heartbeat()
    m.on_answer(answer(3, {}), "g")
    m.request_failed()
    full = m.next_heartbeat()
    assert full.member_epoch == 3 and full.subscribed_topic_names == ("a-topic", "b-topic")
    assert full.owned == {} and full.rebalance_timeout_ms == 30_000


def test_assignment_by_topic_id_is_taken_then_acknowledged():
    m = Membership(member_id="m1", instance_id=None, rebalance_timeout_ms=1000, server_assignor=None)
    m.subscribe(["a-topic"])
    m.next_heartbeat()
    assert m.on_answer(answer(2, {A: (0, 1, 2)}), "g").outcome is Outcome.NEW_TARGET
    plan = m.plan()
    assert plan.empty and plan.unresolved == {A}  # the id needs Metadata first
    m.learn_topic_ids({"a-topic": A})
    plan = m.plan()
    assert plan == Plan(assign=frozenset(tps("a-topic", 0, 1, 2)))
    m.assigned(plan.assign)
    ack = m.next_heartbeat()
    assert ack.owned == {A: (0, 1, 2)} and ack.member_epoch == 2
    assert m.next_heartbeat().owned is None
    # the same assignment again changes nothing
    assert m.on_answer(answer(2, {A: (2, 1, 0)}), "g").outcome is Outcome.OK
    assert m.plan().empty


def test_revocation_comes_before_the_new_partitions_are_acknowledged():
    m = member()
    m.next_heartbeat()
    m.on_answer(answer(1, {A: (0, 1, 2), B: (0,)}), "g")
    m.assigned(m.plan().assign)
    m.next_heartbeat()
    # another member joined: give up a-topic 2 and b-topic 0, take a-topic 3
    assert m.on_answer(answer(2, {A: (0, 1, 3)}), "g").outcome is Outcome.NEW_TARGET
    plan = m.plan()
    assert plan.revoke == tps("a-topic", 2) | tps("b-topic", 0)
    assert plan.assign == tps("a-topic", 3)
    # until reconciled, heartbeats still say what the member owns: nothing new
    assert m.next_heartbeat().owned is None
    m.revoked(plan.revoke)
    m.assigned(plan.assign)
    assert m.next_heartbeat().owned == {A: (0, 1, 3)}
    assert m.plan().empty


def test_an_empty_topic_in_the_assignment_is_no_partition():
    m = member()
    m.next_heartbeat()
    m.on_answer(answer(1, {A: (), B: (4,)}), "g")
    assert m.plan().assign == tps("b-topic", 4)


def test_fenced_or_unknown_member_drops_everything_and_rejoins_at_epoch_zero():
    for code in (ErrorCode.fenced_member_epoch, ErrorCode.unknown_member_id):
        m = member()
        m.next_heartbeat()
        m.on_answer(answer(5, {A: (0,)}), "g")
        m.assigned(m.plan().assign)
        m.next_heartbeat()
        result = m.on_answer(answer(-1, code=code), "g")
        assert result.outcome is Outcome.FENCED and isinstance(result.error, CommitFailedError)
        assert m.fenced and m.epoch == 0 and m.target is None
        assert m.owned == tps("a-topic", 0)  # the driver drops them (no commit), then:
        m.lost()
        rejoin = m.next_heartbeat()
        assert rejoin.member_epoch == 0 and rejoin.member_id == "m1"  # the same member id
        assert rejoin.owned == {} and rejoin.subscribed_topic_names == ("a-topic", "b-topic")


def test_error_answers():
    m = member()
    assert m.on_answer(answer(0, code=ErrorCode.not_coordinator), "g").outcome is Outcome.FIND_COORDINATOR
    assert m.on_answer(answer(0, code=ErrorCode.coordinator_not_available), "g").outcome is Outcome.FIND_COORDINATOR
    assert m.on_answer(answer(0, code=ErrorCode.coordinator_load_in_progress), "g").outcome is Outcome.RETRY
    for code in (ErrorCode.unsupported_assignor, ErrorCode.unreleased_instance_id,
                 ErrorCode.invalid_regular_expression, ErrorCode.group_max_size_reached):
        result = m.on_answer(answer(0, code=code), "g")
        assert result.outcome is Outcome.FATAL and isinstance(result.error, GroupError)
        assert result.error.code == code
    unsupported = m.on_answer(answer(0, code=ErrorCode.unsupported_version), "g")
    assert unsupported.outcome is Outcome.FATAL
    assert "use group_protocol='classic'" in str(unsupported.error)


def test_version_0_takes_the_member_id_the_coordinator_gives():
    m = member()
    m.on_answer(answer(1, {}, member_id="from-coordinator"), "g")
    assert m.member_id == "from-coordinator"


def test_pattern_subscription_sends_the_regex_and_no_names():
    m = Membership(member_id="m1", instance_id=None, rebalance_timeout_ms=1000, server_assignor=None)
    m.subscribe(pattern="^orders-.*")
    join = m.next_heartbeat()
    assert join.subscribed_topic_regex == "^orders-.*" and join.subscribed_topic_names is None
    m.on_answer(answer(1, {A: (0,)}), "g")
    m.learn_topic_ids({"orders-eu": A})
    assert m.plan().assign == tps("orders-eu", 0)
    m.assigned(m.plan().assign)
    assert m.next_heartbeat().subscribed_topic_regex is None  # unchanged


def test_unsubscribing_revokes_everything_and_leave_epochs():
    m = member()
    m.next_heartbeat()
    m.on_answer(answer(1, {A: (0, 1)}), "g")
    m.assigned(m.plan().assign)
    m.subscribe(())
    assert not m.subscribed and m.plan().revoke == tps("a-topic", 0, 1)
    assert m.leave_heartbeat().member_epoch == -1
    assert member(instance_id="i").leave_heartbeat().member_epoch == -2  # static: it will be back
    m.left()
    assert m.epoch == 0 and m.target is None
