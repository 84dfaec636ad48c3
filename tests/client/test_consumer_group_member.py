"""ConsumerGroupMember against a scripted coordinator (FakeBroker): the order of what
it does (revoke, take, then the acknowledging heartbeat), fencing, commits with the
member epoch, leaving, and a broker without the protocol. The clock jumps
(autojump_clock), so heartbeat intervals cost no time."""

from __future__ import annotations

import uuid

import pytest
import trio

from client_fakes import FakeBroker, metadata_answer
from logbroker.client import ConsumerConfig, TopicPartition
from logbroker.client.cluster import Cluster
from logbroker.client.consumer_group_member import ConsumerGroupMember
from logbroker.errors import CommitFailedError, GroupError
from logbroker.protocol import SUPPORTED_VERSIONS, ApiKey, ErrorCode, build

A = str(uuid.uuid4())
TOPIC = "orders"


class Owner:
    """The consumer's side: records what the member asks of it in the shared ``log``."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.errors: list[BaseException] = []

    async def revoke_partitions(self, partitions, *, lost=False):
        self.log.append(("lost" if lost else "revoke", sorted(p.partition for p in partitions)))

    async def take_partitions(self, added, assigned):
        self.log.append(("take", sorted(p.partition for p in added)))

    def report_error(self, error):
        self.errors.append(error)


class Coordinator:
    """Answers ConsumerGroupHeartbeat from ``script``: a list of (epoch, partitions of A or
    None, error code); after the script, the last epoch with no assignment."""

    def __init__(self, fake: FakeBroker, log: list, script: list) -> None:
        self.log = log
        self.script = list(script)
        self.epoch = 0
        self.heartbeats: list = []
        self.commits: list = []
        fake.handlers[ApiKey.METADATA] = lambda r: metadata_answer(r, {TOPIC: 6}, topic_ids={TOPIC: A})
        fake.handlers[ApiKey.FIND_COORDINATOR] = self.find_coordinator
        fake.handlers[ApiKey.CONSUMER_GROUP_HEARTBEAT] = self.heartbeat
        fake.handlers[ApiKey.OFFSET_COMMIT] = self.offset_commit

    def find_coordinator(self, request):
        m = request.response_module
        return build(m.FindCoordinatorResponse, throttle_time=0, error_code=ErrorCode.none, error_message=None,
                     node_id=0, host="fake", port=9092, coordinators=[])

    def heartbeat(self, request):
        body = request.body
        owned = None
        if body.topic_partitions is not None:
            owned = sorted(p for t in body.topic_partitions for p in t.partitions)
        self.heartbeats.append(body)
        self.log.append(("heartbeat", int(body.member_epoch), owned))
        epoch, parts, code = self.script.pop(0) if self.script else (self.epoch, None, ErrorCode.none)
        if body.member_epoch < 0:
            epoch, parts, code = body.member_epoch, None, ErrorCode.none
        self.epoch = epoch
        m = request.response_module
        assignment = None
        if parts is not None:
            assignment = build(m.Assignment, topic_partitions=[build(m.TopicPartitions, topic_id=uuid.UUID(A),
                                                                     partitions=parts)])
        return build(m.ConsumerGroupHeartbeatResponse, throttle_time=0, error_code=code, error_message=None,
                     member_id=body.member_id, member_epoch=epoch, heartbeat_interval=1000, assignment=assignment)

    def offset_commit(self, request):
        self.commits.append(request)
        m = request.response_module
        code = ErrorCode.none if request.body.generation_id_or_member_epoch == self.epoch else \
            ErrorCode.stale_member_epoch
        return build(m.OffsetCommitResponse, throttle_time=0, topics=[
            build(m.OffsetCommitResponseTopic, name=t.name, partitions=[
                build(m.OffsetCommitResponsePartition, partition_index=p.partition_index, error_code=code)
                for p in t.partitions])
            for t in request.body.topics])


async def start(nursery, script, *, versions=SUPPORTED_VERSIONS, **options):
    log: list = []
    fake = FakeBroker(nursery, {**versions, ApiKey.OFFSET_COMMIT: (2, 9)})
    coordinator = Coordinator(fake, log, script)
    config = ConsumerConfig(bootstrap="fake:9092", group_id="g", group_protocol="consumer",
                            group_remote_assignor="uniform", **options)
    cluster = Cluster(config, nursery, connector=fake.connector)
    owner = Owner(log)
    member = ConsumerGroupMember(owner, cluster, config, "g")
    member.subscribe([TOPIC])
    nursery.start_soon(member.run)
    return member, coordinator, owner, log


async def test_join_take_then_acknowledge_then_revoke_before_the_next_acknowledgement(nursery, autojump_clock):
    member, coordinator, _, log = await start(nursery, [(1, [0, 1, 2], ErrorCode.none)])
    with trio.fail_after(10):
        await member.wait_stable()
    assert member.owned == {TopicPartition(TOPIC, p) for p in (0, 1, 2)} and member.generation == 1
    join = coordinator.heartbeats[0]
    assert join.member_epoch == 0 and join.subscribed_topic_names == (TOPIC,)
    assert join.server_assignor == "uniform" and join.topic_partitions == ()
    assert len(join.member_id) == 22  # generated by the client (v1)
    await trio.sleep(0.5)
    assert log[:3] == [("heartbeat", 0, []), ("take", [0, 1, 2]), ("heartbeat", 1, [0, 1, 2])]
    # a second member arrived: 1 and 2 go away, 3 comes
    coordinator.script.append((2, [0, 3], ErrorCode.none))
    with trio.fail_after(10):
        while ("heartbeat", 2, [0, 3]) not in log:
            await trio.sleep(0.1)
    i = log.index(("revoke", [1, 2]))
    assert log[i + 1] == ("take", [3]) and log[i + 2] == ("heartbeat", 2, [0, 3])
    assert all(h.member_id == join.member_id for h in coordinator.heartbeats)
    assert not [h for h in coordinator.heartbeats[2:] if h.subscribed_topic_names is not None]  # sent once


async def test_heartbeats_follow_the_interval_the_broker_gives(nursery, autojump_clock):
    member, coordinator, _, _ = await start(nursery, [(1, [], ErrorCode.none)])
    with trio.fail_after(10):
        await member.wait_stable()
    count = len(coordinator.heartbeats)
    await trio.sleep(10.05)
    assert len(coordinator.heartbeats) - count == 10  # heartbeat_interval 1000 ms


async def test_fenced_member_drops_its_partitions_without_commit_and_rejoins_at_epoch_zero(nursery, autojump_clock):
    member, coordinator, _, log = await start(nursery, [
        (4, [0, 1], ErrorCode.none), (4, None, ErrorCode.none), (0, None, ErrorCode.fenced_member_epoch),
        (6, [5], ErrorCode.none),
    ])
    with trio.fail_after(10):
        while ("heartbeat", 6, [5]) not in log:
            await trio.sleep(0.1)
    i = log.index(("lost", [0, 1]))
    assert log[i + 1] == ("heartbeat", 0, [])  # rejoins only after dropping everything
    assert log[i + 2] == ("take", [5])
    assert not coordinator.commits
    epochs = [h.member_epoch for h in coordinator.heartbeats]
    assert epochs[:5] == [0, 4, 4, 0, 6]
    assert len({h.member_id for h in coordinator.heartbeats}) == 1


async def test_commits_carry_the_member_id_and_epoch(nursery, autojump_clock):
    member, coordinator, _, _ = await start(nursery, [(7, [0], ErrorCode.none)])
    with trio.fail_after(10):
        await member.wait_stable()
    await member.commit({TopicPartition(TOPIC, 0): 42})
    [commit] = coordinator.commits
    assert commit.api_version >= 9
    assert commit.body.member_id == member.member_id and commit.body.generation_id_or_member_epoch == 7
    coordinator.epoch = 8  # the coordinator moved on and this member has not heard yet
    with pytest.raises(CommitFailedError) as info:
        await member.commit({TopicPartition(TOPIC, 0): 43})
    assert info.value.code == ErrorCode.stale_member_epoch


@pytest.mark.parametrize("instance_id, epoch", [(None, -1), ("static-1", -2)])
async def test_leave_sends_epoch_minus_one_or_minus_two_for_a_static_member(nursery, autojump_clock,
                                                                             instance_id, epoch):
    member, coordinator, _, _ = await start(nursery, [(1, [0], ErrorCode.none)], group_instance_id=instance_id)
    with trio.fail_after(10):
        await member.wait_stable()
    await member.leave()
    last = coordinator.heartbeats[-1]
    assert last.member_epoch == epoch and last.instance_id == instance_id
    assert coordinator.heartbeats[0].instance_id == instance_id


async def test_fatal_heartbeat_error_is_reported_and_stops_the_member(nursery, autojump_clock):
    member, coordinator, owner, _ = await start(nursery, [(0, None, ErrorCode.unsupported_assignor)])
    with trio.fail_after(10), pytest.raises(GroupError) as info:
        await member.wait_stable()
    assert info.value.code == ErrorCode.unsupported_assignor
    assert owner.errors == [info.value]
    await trio.sleep(5)
    assert len(coordinator.heartbeats) == 1


async def test_a_broker_without_the_protocol_fails_clearly(nursery, autojump_clock):
    versions = {k: v for k, v in SUPPORTED_VERSIONS.items() if k != ApiKey.CONSUMER_GROUP_HEARTBEAT}
    member, coordinator, owner, _ = await start(nursery, [], versions=versions)
    with trio.fail_after(10), pytest.raises(GroupError) as info:
        await member.wait_stable()
    assert str(info.value) == ("broker does not support the consumer group protocol (ConsumerGroupHeartbeat); "
                               "use group_protocol='classic'")
    assert not coordinator.heartbeats and owner.errors
