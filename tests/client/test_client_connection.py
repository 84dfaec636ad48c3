"""The connection and cluster layers against a scripted broker in memory (no sockets)."""

from __future__ import annotations

import pytest
import trio

from logbroker.client import _wire
from logbroker.client.cluster import Cluster
from logbroker.client.config import ClientConfig
from logbroker.client.connection import Connection
from logbroker.client.versions import CLIENT_VERSIONS, negotiate
from logbroker.errors import ClientClosedError, KafkaConnectionError, KafkaError, KafkaTimeoutError
from logbroker.protocol import SUPPORTED_VERSIONS, ApiKey, ErrorCode, build, encode_request

from client_fakes import FakeBroker, metadata_answer


async def _open(fake: FakeBroker, nursery, **kw) -> Connection:
    options = dict(node_id=-1, client_id="test", request_timeout_ms=1000, connect_timeout_ms=1000,
                   max_response_bytes=1 << 20)
    options.update(kw)
    return await Connection.open(nursery, "fake", 9092, connector=fake.connector, **options)


def test_negotiate_picks_the_highest_common_version():
    rows = [(ApiKey.METADATA, 0, 5), (ApiKey.PRODUCE, 3, 11), (ApiKey.FETCH, 13, 17), (999, 0, 3)]
    chosen = negotiate(rows)
    assert chosen[ApiKey.METADATA] == 5
    assert chosen[ApiKey.PRODUCE] == CLIENT_VERSIONS[ApiKey.PRODUCE][1]
    assert ApiKey.FETCH not in chosen  # no overlap


def test_every_request_builder_encodes_at_every_version():
    builders = {
        ApiKey.METADATA: lambda v: _wire.metadata_request(v, ["a"], allow_auto_create=True),
        ApiKey.PRODUCE: lambda v: _wire.produce_request(v, -1, 1000, {"a": [(0, b"x" * 70)]}),
        ApiKey.FETCH: lambda v: _wire.fetch_request(v, max_wait_ms=1, min_bytes=1, max_bytes=10, isolation_level=0,
                                                    partitions={"a": [(0, 0, 100)]}),
        ApiKey.LIST_OFFSETS: lambda v: _wire.list_offsets_request(v, {"a": [(0, -1)]}),
        ApiKey.INIT_PRODUCER_ID: _wire.init_producer_id_request,
        ApiKey.FIND_COORDINATOR: lambda v: _wire.find_coordinator_request(v, "g"),
        ApiKey.JOIN_GROUP: lambda v: _wire.join_group_request(
            v, group_id="g", member_id="", group_instance_id=None, session_timeout_ms=1, rebalance_timeout_ms=1,
            protocol_type="consumer", protocols=[("range", b"x")]),
        ApiKey.SYNC_GROUP: lambda v: _wire.sync_group_request(
            v, group_id="g", generation_id=1, member_id="m", group_instance_id=None, protocol_type="consumer",
            protocol_name="range", assignments={"m": b"x"}),
        ApiKey.HEARTBEAT: lambda v: _wire.heartbeat_request(v, group_id="g", generation_id=1, member_id="m",
                                                            group_instance_id=None),
        ApiKey.LEAVE_GROUP: lambda v: _wire.leave_group_request(v, group_id="g", member_id="m", group_instance_id=None),
        ApiKey.OFFSET_COMMIT: lambda v: _wire.offset_commit_request(
            v, group_id="g", generation_id=-1, member_id="", group_instance_id=None, offsets={"a": [(0, 5, None)]}),
        ApiKey.OFFSET_FETCH: lambda v: _wire.offset_fetch_request(v, "g", {"a": [0]}),
        ApiKey.LIST_GROUPS: _wire.list_groups_request,
        ApiKey.DESCRIBE_GROUPS: lambda v: _wire.describe_groups_request(v, ["g"]),
        ApiKey.DELETE_GROUPS: lambda v: _wire.delete_groups_request(v, ["g"]),
        ApiKey.CREATE_TOPICS: lambda v: _wire.create_topics_request(v, [("a", 1, 1, {"x": "y"})], timeout_ms=1),
        ApiKey.DELETE_TOPICS: lambda v: _wire.delete_topics_request(v, ["a"], timeout_ms=1),
        ApiKey.CREATE_PARTITIONS: lambda v: _wire.create_partitions_request(v, {"a": 3}, timeout_ms=1),
        ApiKey.DESCRIBE_CONFIGS: lambda v: _wire.describe_configs_request(v, ["a"]),
        ApiKey.INCREMENTAL_ALTER_CONFIGS: lambda v: _wire.incremental_alter_configs_request(v, "a", {"k": "v"}),
        ApiKey.DELETE_RECORDS: lambda v: _wire.delete_records_request(v, {"a": [(0, 5)]}, timeout_ms=1),
    }
    assert set(builders) <= set(CLIENT_VERSIONS)  # (share-group keys are the queue client's)
    for key, build_body in builders.items():
        lo, hi = CLIENT_VERSIONS[key]
        for version in range(lo, hi + 1):
            assert encode_request(key, version, 1, "c", build_body(version))


async def test_handshake_uses_the_brokers_narrower_ranges(nursery):
    versions = dict(SUPPORTED_VERSIONS)
    versions[ApiKey.METADATA] = (0, 5)
    versions[ApiKey.PRODUCE] = (3, 7)
    fake = FakeBroker(nursery, versions)
    conn = await _open(fake, nursery)
    assert conn.version(ApiKey.METADATA) == 5
    assert conn.version(ApiKey.PRODUCE) == 7
    assert conn.version(ApiKey.FETCH) == 12


async def test_api_versions_falls_back_when_the_broker_lacks_v3(nursery):
    fake = FakeBroker(nursery, {**SUPPORTED_VERSIONS, ApiKey.API_VERSIONS: (0, 2)}, api_versions_max=2)
    conn = await _open(fake, nursery)
    asked = [r.api_version for r in fake.requests if r.api_key == ApiKey.API_VERSIONS]
    assert asked == [2]  # the v3 request was refused before decoding; v2 answered
    assert conn.version(ApiKey.METADATA) == 12


async def test_a_key_without_common_versions_raises_unsupported_version(nursery):
    versions = {k: v for k, v in SUPPORTED_VERSIONS.items() if k != ApiKey.DELETE_RECORDS}
    conn = await _open(FakeBroker(nursery, versions), nursery)
    with pytest.raises(KafkaError) as info:
        conn.version(ApiKey.DELETE_RECORDS)
    assert info.value.code == ErrorCode.unsupported_version and not info.value.retriable


async def test_pipelined_answers_are_matched_by_correlation_id(nursery):
    fake = FakeBroker(nursery)
    fake.reverse_pairs = True  # every second answer overtakes the first
    fake.handlers[ApiKey.METADATA] = lambda r: metadata_answer(r, {r.body.topics[0].name: 1})
    conn = await _open(fake, nursery)
    results = {}

    async def ask(name):
        v = conn.version(ApiKey.METADATA)
        answer = await conn.request(ApiKey.METADATA, v, _wire.metadata_request(v, [name], allow_auto_create=False))
        results[name] = answer.topics[0].name

    async with trio.open_nursery() as n:
        for i in range(10):
            n.start_soon(ask, f"topic{i}")
    assert results == {f"topic{i}": f"topic{i}" for i in range(10)}
    assert conn.requests_sent == 11  # ApiVersions + 10, all on one connection


async def test_a_request_without_answer_times_out_and_breaks_the_connection(nursery, autojump_clock):
    fake = FakeBroker(nursery)
    fake.silent.add(ApiKey.METADATA)
    conn = await _open(fake, nursery, request_timeout_ms=500)
    v = conn.version(ApiKey.METADATA)
    body = _wire.metadata_request(v, ["t"], allow_auto_create=False)
    start = trio.current_time()
    with pytest.raises(KafkaTimeoutError) as info:
        await conn.request(ApiKey.METADATA, v, body)
    assert info.value.retriable and 0.5 <= trio.current_time() - start < 0.6
    assert conn.broken
    with pytest.raises(KafkaTimeoutError):
        await conn.request(ApiKey.METADATA, v, body)


async def test_the_handshake_waits_the_shorter_timeout_later_requests_the_request_timeout(nursery, autojump_clock):
    fake = FakeBroker(nursery)
    fake.silent.add(ApiKey.API_VERSIONS)
    start = trio.current_time()
    with pytest.raises(KafkaTimeoutError):  # the handshake waits at most 3 x the connect timeout
        await _open(fake, nursery, request_timeout_ms=5000, connect_timeout_ms=100)
    assert trio.current_time() - start < 0.4
    fake = FakeBroker(nursery)
    fake.silent.add(ApiKey.METADATA)
    conn = await _open(fake, nursery, request_timeout_ms=2000, connect_timeout_ms=100)
    v = conn.version(ApiKey.METADATA)
    start = trio.current_time()
    with pytest.raises(KafkaTimeoutError):
        await conn.request(ApiKey.METADATA, v, _wire.metadata_request(v, ["t"], allow_auto_create=False))
    assert 1.99 <= trio.current_time() - start < 2.1  # the request timeout, not the handshake's 0.3 s


async def test_a_hang_up_fails_waiting_requests_with_a_connection_error(nursery):
    fake = FakeBroker(nursery)
    fake.hang_up_on.add(ApiKey.METADATA)
    conn = await _open(fake, nursery)
    v = conn.version(ApiKey.METADATA)
    with pytest.raises(KafkaConnectionError) as info:
        await conn.request(ApiKey.METADATA, v, _wire.metadata_request(v, ["t"], allow_auto_create=False))
    assert info.value.retriable and info.value.code == ErrorCode.network_exception


async def test_closing_fails_waiting_requests_as_closed_not_broken(nursery):
    fake = FakeBroker(nursery)
    fake.silent.add(ApiKey.METADATA)
    conn = await _open(fake, nursery)
    v = conn.version(ApiKey.METADATA)
    body = _wire.metadata_request(v, ["t"], allow_auto_create=False)
    async with trio.open_nursery() as n:
        async def ask():
            with pytest.raises(ClientClosedError):
                await conn.request(ApiKey.METADATA, v, body)

        n.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        await conn.aclose()


async def test_a_cancelled_request_leaves_the_connection_usable(nursery, autojump_clock):
    fake = FakeBroker(nursery)
    calls = []

    def slow_then_fast(r):
        calls.append(r)
        return metadata_answer(r, {"t": 1})

    fake.handlers[ApiKey.METADATA] = slow_then_fast
    conn = await _open(fake, nursery)
    v = conn.version(ApiKey.METADATA)
    body = _wire.metadata_request(v, ["t"], allow_auto_create=False)
    with trio.move_on_after(0):
        await conn.request(ApiKey.METADATA, v, body)
    answer = await conn.request(ApiKey.METADATA, v, body)
    assert answer.topics[0].name == "t" and not conn.broken


async def test_cluster_finds_leaders_on_several_nodes(nursery):
    """Two nodes, each leading one partition: requests go to the node's own connection."""
    fake = FakeBroker(nursery)

    def metadata(r):
        m = r.response_module
        brokers = [build(m.MetadataResponseBroker, node_id=n, host=f"node{n}", port=9000 + n, rack=None)
                   for n in (1, 2)]
        parts = [build(m.MetadataResponsePartition, error_code=0, partition_index=p, leader_id=p + 1, leader_epoch=0,
                       replica_nodes=[p + 1], isr_nodes=[p + 1], offline_replicas=[]) for p in (0, 1)]
        topic = build(m.MetadataResponseTopic, error_code=0, name="t", topic_id=None, is_internal=False,
                      partitions=parts, topic_authorized_operations=0)
        return build(m.MetadataResponse, throttle_time=0, brokers=brokers, cluster_id="c", controller_id=1,
                     topics=[topic])

    fake.handlers[ApiKey.METADATA] = metadata
    addresses = []

    async def connector(host, port):
        addresses.append((host, port))
        return await fake.connector(host, port)

    cluster = Cluster(ClientConfig(bootstrap="seed:1"), nursery, connector=connector)
    info = await cluster.topic("t")
    assert [p.leader for p in info.partitions] == [1, 2]
    c1 = await cluster.connection(cluster.leader("t", 0))
    c2 = await cluster.connection(cluster.leader("t", 1))
    assert (c1.host, c1.port, c2.host, c2.port) == ("node1", 9001, "node2", 9002)
    assert addresses == [("seed", 1), ("node1", 9001), ("node2", 9002)]
    assert await cluster.connection(1) is c1 and await cluster.connection(1, "fetch") is not c1
    await cluster.aclose()


async def test_unknown_topic_is_retried_then_reported(nursery, autojump_clock):
    fake = FakeBroker(nursery)
    fake.handlers[ApiKey.METADATA] = lambda r: metadata_answer(
        r, {"t": 0}, errors={"t": ErrorCode.unknown_topic_or_partition})
    cluster = Cluster(ClientConfig(bootstrap="seed:1", request_timeout_ms=2000), nursery, connector=fake.connector)
    from logbroker.errors import UnknownTopicOrPartitionError

    with pytest.raises(UnknownTopicOrPartitionError):
        await cluster.topic("t")
    assert sum(r.api_key == ApiKey.METADATA for r in fake.requests) > 3


def _two_node_metadata(r):
    m = r.response_module
    brokers = [build(m.MetadataResponseBroker, node_id=n, host=f"node{n}", port=9000 + n, rack=None) for n in (1, 2)]
    parts = [build(m.MetadataResponsePartition, error_code=0, partition_index=p, leader_id=p + 1, leader_epoch=0,
                   replica_nodes=[p + 1], isr_nodes=[p + 1], offline_replicas=[]) for p in (0, 1)]
    topic = build(m.MetadataResponseTopic, error_code=0, name="t", topic_id=None, is_internal=False,
                  partitions=parts, topic_authorized_operations=0)
    return build(m.MetadataResponse, throttle_time=0, brokers=brokers, cluster_id="c", controller_id=1,
                 topics=[topic])


async def test_producer_sends_each_partition_to_its_own_leader(nursery):
    from logbroker.client import Producer

    fake = FakeBroker(nursery)
    fake.handlers[ApiKey.METADATA] = _two_node_metadata
    next_offset = {}

    def init_pid(r):
        return build(r.response_module.InitProducerIdResponse, throttle_time=0, error_code=0, producer_id=7,
                     producer_epoch=0)

    def produce(r):
        m = r.response_module
        responses = []
        for t in r.body.topic_data:
            parts = []
            for p in t.partition_data:
                base = next_offset.get(p.index, 0)
                count = int.from_bytes(bytes(p.records)[57:61], "big")
                next_offset[p.index] = base + count
                parts.append(build(m.PartitionProduceResponse, index=p.index, error_code=0, base_offset=base,
                                   log_append_time=None, log_start_offset=0, record_errors=[], error_message=None))
            responses.append(build(m.TopicProduceResponse, name=t.name, partition_responses=parts))
        return build(m.ProduceResponse, responses=responses, throttle_time=0)

    fake.handlers[ApiKey.INIT_PRODUCER_ID] = init_pid
    fake.handlers[ApiKey.PRODUCE] = produce
    async with Producer("seed:1", connector=fake.connector) as producer:
        deliveries = [await producer.send("t", b"v", partition=i % 2) for i in range(10)]
        metas = [await d for d in deliveries]
    assert [m.offset for m in metas if m.partition == 0] == [0, 1, 2, 3, 4]
    produce_to = {(addr, p.index) for addr, r in zip(fake.addresses, fake.requests) if r.api_key == ApiKey.PRODUCE
                  for t in r.body.topic_data for p in t.partition_data}
    assert produce_to == {(("node1", 9001), 0), (("node2", 9002), 1)}
