"""Request handlers, one request's bytes at a time, against a real log in a temp dir."""

import pytest

from logbroker.protocol import ErrorCode
from logbroker.records import BatchBuilder, build_batch, decode_batches

PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
CREATE_TOPICS, DESCRIBE_CONFIGS, INIT_PID, API_VERSIONS = 19, 32, 22, 18


def produce(h, topic, batch, partition=0, acks=-1, version=9):
    part = h.req(PRODUCE, version, "PartitionProduceData", index=partition, records=batch)
    data = h.req(PRODUCE, version, "TopicProduceData", name=topic, partition_data=(part,))
    resp = h.call(PRODUCE, version, "ProduceRequest", acks=acks, timeout=1000, topic_data=(data,))
    return None if resp is None else resp.responses[0].partition_responses[0]


def fetch(h, topic, offset, partition=0, max_bytes=1 << 20, version=12):
    fp = h.req(FETCH, version, "FetchPartition", partition=partition, fetch_offset=offset,
               partition_max_bytes=max_bytes)
    ft = h.req(FETCH, version, "FetchTopic", topic=topic, partitions=(fp,))
    resp = h.call(FETCH, version, "FetchRequest", max_wait=0, min_bytes=1, topics=(ft,),
                  forgotten_topics_data=())
    return resp.responses[0].partitions[0]


def create(h, name, partitions=1, rf=1, configs=(), validate_only=False, version=7):
    cfg = tuple(h.req(CREATE_TOPICS, version, "CreatableTopicConfig", name=k, value=v) for k, v in configs)
    topic = h.req(CREATE_TOPICS, version, "CreatableTopic", name=name, num_partitions=partitions,
                  replication_factor=rf, assignments=(), configs=cfg)
    return h.call(CREATE_TOPICS, version, "CreateTopicsRequest", topics=(topic,), timeout=1000,
                  validate_only=validate_only).topics[0]


def batch(n=3, key=b"k", ts=1000, **kw):
    return build_batch([(key, b"value-%d" % i, [("h", b"x")], ts + i) for i in range(n)], **kw)


def test_produce_then_fetch_returns_the_same_records(h):
    assert create(h, "t").error_code == ErrorCode.none
    first = produce(h, "t", batch(3))
    second = produce(h, "t", batch(2))
    assert (first.error_code, first.base_offset) == (ErrorCode.none, 0)
    assert second.base_offset == 3
    data = fetch(h, "t", 0)
    assert data.error_code == ErrorCode.none and data.high_watermark == 5
    records = [r for b in decode_batches(bytes(data.records)) for r in b.records]
    assert [r.offset for r in records] == [0, 1, 2, 3, 4]
    assert records[1].value == b"value-1" and records[1].headers == (("h", b"x"),)
    # A fetch in the middle of a batch returns the whole batch; clients skip.
    assert decode_batches(bytes(fetch(h, "t", 4).records)).__next__().header.base_offset == 3


def test_fetch_at_end_is_empty_and_past_end_is_out_of_range(h):
    create(h, "t")
    produce(h, "t", batch(2))
    assert len(fetch(h, "t", 2).records) == 0
    assert fetch(h, "t", 3).error_code == ErrorCode.offset_out_of_range
    assert fetch(h, "t", -5).error_code == ErrorCode.offset_out_of_range


def test_produce_errors_per_partition(make_broker):
    h = make_broker(auto_create_topics_enable=False)
    create(h, "t")
    create(h, "small", configs=[("max.message.bytes", "200")])
    create(h, "compacted", configs=[("cleanup.policy", "compact")])
    bad = bytearray(batch(2))
    bad[-1] ^= 0xFF
    assert produce(h, "t", bytes(bad)).error_code == ErrorCode.corrupt_message
    assert produce(h, "nope", batch()).error_code == ErrorCode.unknown_topic_or_partition
    assert produce(h, "t", batch(), partition=5).error_code == ErrorCode.unknown_topic_or_partition
    assert produce(h, "small", batch(20)).error_code == ErrorCode.message_too_large
    assert produce(h, "compacted", batch(2, key=None)).error_code == ErrorCode.invalid_record
    assert produce(h, "compacted", batch(2, key=b"k")).error_code == ErrorCode.none
    assert produce(h, "t", batch(), acks=2).error_code == ErrorCode.invalid_required_acks
    # Nothing invalid was written.
    assert fetch(h, "t", 0).high_watermark == 0


def test_acks_zero_gets_no_response(h):
    create(h, "t")
    assert produce(h, "t", batch(), acks=0) is None
    assert fetch(h, "t", 0).high_watermark == 3


def test_idempotent_retry_gets_original_offsets_and_gap_is_refused(h):
    create(h, "t")
    pid = h.call(INIT_PID, 4, "InitProducerIdRequest", transactional_id=None, transaction_timeout=1000,
                 producer_id=-1, producer_epoch=-1)
    assert pid.error_code == ErrorCode.none and pid.producer_id >= 0
    kw = dict(producer_id=pid.producer_id, producer_epoch=0)
    assert produce(h, "t", batch(3, base_sequence=0, **kw)).base_offset == 0
    assert produce(h, "t", batch(3, base_sequence=3, **kw)).base_offset == 3
    retry = produce(h, "t", batch(3, base_sequence=3, **kw))
    assert (retry.error_code, retry.base_offset) == (ErrorCode.none, 3)
    gap = produce(h, "t", batch(3, base_sequence=10, **kw))
    assert gap.error_code == ErrorCode.out_of_order_sequence_number
    assert fetch(h, "t", 0).high_watermark == 6
    other = h.call(INIT_PID, 0, "InitProducerIdRequest", transactional_id=None, transaction_timeout=1000)
    assert other.producer_id != pid.producer_id


def test_producer_state_survives_restart(make_broker, tmp_path):
    h = make_broker(data_dir=str(tmp_path / "d"))
    create(h, "t")
    kw = dict(producer_id=5, producer_epoch=0)
    produce(h, "t", batch(3, base_sequence=0, **kw))
    h.broker.close()
    h2 = make_broker(data_dir=str(tmp_path / "d"))
    retry = produce(h2, "t", batch(3, base_sequence=0, **kw))
    assert (retry.error_code, retry.base_offset) == (ErrorCode.none, 0)
    assert fetch(h2, "t", 0).high_watermark == 3


def test_list_offsets(h):
    create(h, "t")
    produce(h, "t", batch(3, ts=1000))  # offsets 0..2, ts 1000..1002
    produce(h, "t", batch(3, ts=5000))  # offsets 3..5, ts 5000..5002

    def lookup(ts):
        p = h.req(LIST_OFFSETS, 7, "ListOffsetsPartition", partition_index=0, current_leader_epoch=-1, timestamp=ts)
        t = h.req(LIST_OFFSETS, 7, "ListOffsetsTopic", name="t", partitions=(p,))
        r = h.call(LIST_OFFSETS, 7, "ListOffsetsRequest", replica_id=-1, isolation_level=0, topics=(t,))
        part = r.topics[0].partitions[0]
        return part.offset, part.timestamp

    assert lookup(-2)[0] == 0
    assert lookup(-1)[0] == 6  # high watermark: last offset + 1
    assert lookup(-3) == (5, 5002)
    assert lookup(1001)[0] == 1
    assert lookup(3000)[0] == 3
    assert lookup(99999)[0] == -1


def test_metadata_null_means_all_empty_means_none_and_auto_create(h):
    create(h, "a", partitions=3)
    everything = h.call(METADATA, 12, "MetadataRequest", topics=None, allow_auto_topic_creation=False)
    assert [t.name for t in everything.topics] == ["a"]
    assert len(everything.topics[0].partitions) == 3
    assert everything.brokers[0].port == h.broker.advertised_port
    none = h.call(METADATA, 12, "MetadataRequest", topics=(), allow_auto_topic_creation=True)
    assert none.topics == ()
    want = (h.req(METADATA, 12, "MetadataRequestTopic", name="fresh", topic_id=None),)
    no_create = h.call(METADATA, 12, "MetadataRequest", topics=want, allow_auto_topic_creation=False)
    assert no_create.topics[0].error_code == ErrorCode.unknown_topic_or_partition
    created = h.call(METADATA, 12, "MetadataRequest", topics=want, allow_auto_topic_creation=True)
    assert created.topics[0].error_code == ErrorCode.none and created.topics[0].topic_id is not None


@pytest.mark.parametrize(
    "name, partitions, rf, configs, code",
    [
        ("ok", 2, 1, (), ErrorCode.none),
        ("ok-default-rf", 2, -1, (), ErrorCode.none),
        ("bad name!", 1, 1, (), ErrorCode.invalid_topic_exception),
        ("..", 1, 1, (), ErrorCode.invalid_topic_exception),
        ("name-then-newline\n", 1, 1, (), ErrorCode.invalid_topic_exception),
        ("zero", 0, 1, (), ErrorCode.invalid_partitions),
        ("rf3", 1, 3, (), ErrorCode.invalid_replication_factor),
        ("cfg", 1, 1, (("retention.ms", "soon"),), ErrorCode.invalid_config),
        ("cfg2", 1, 1, (("no.such.config", "1"),), ErrorCode.invalid_config),
    ],
)
def test_create_topics_validation(h, name, partitions, rf, configs, code):
    assert create(h, name, partitions, rf, configs).error_code == code
    assert (name in h.broker.topics()) == (code == ErrorCode.none)


def test_create_existing_and_validate_only(h):
    assert create(h, "t", validate_only=True).error_code == ErrorCode.none
    assert "t" not in h.broker.topics()
    create(h, "t")
    assert create(h, "t").error_code == ErrorCode.topic_already_exists


def test_describe_configs_reports_sources(h):
    create(h, "t", configs=[("retention.ms", "1234")])
    res = h.req(DESCRIBE_CONFIGS, 4, "DescribeConfigsResource", resource_type=2, resource_name="t",
                configuration_keys=None)
    r = h.call(DESCRIBE_CONFIGS, 4, "DescribeConfigsRequest", resources=(res,), include_synonyms=False,
               include_documentation=False)
    configs = {c.name: c for c in r.results[0].configs}
    assert configs["retention.ms"].value == "1234" and configs["retention.ms"].config_source == 1
    assert configs["cleanup.policy"].value == "delete" and configs["cleanup.policy"].config_source == 5


def test_api_versions_lists_served_apis(h):
    r = h.call(API_VERSIONS, 3, "ApiVersionsRequest", client_software_name="t", client_software_version="1")
    ranges = {k.api_key: (k.min_version, k.max_version) for k in r.api_keys}
    assert ranges[0] == (0, 9) and ranges[1] == (0, 12) and ranges[18] == (0, 4)  # old versions: protocol/legacy.py
    assert ranges[3] == (0, 12)


def test_log_append_time_topic_stamps_broker_time(h):
    create(h, "t", configs=[("message.timestamp.type", "LogAppendTime")])
    resp = produce(h, "t", batch(2, ts=5))
    assert resp.error_code == ErrorCode.none and resp.log_append_time is not None
    records = [r for b in decode_batches(bytes(fetch(h, "t", 0).records)) for r in b.records]
    assert all(r.timestamp > 1_600_000_000_000 for r in records)


def test_flush_always_asks_the_server_to_fsync_the_whole_batch(make_broker):
    from logbroker.broker.handlers import Reply, dispatch
    from logbroker.protocol import decode_request, encode_request

    h = make_broker(flush="always")
    create(h, "t")
    produce(h, "t", batch(2))
    part = h.req(PRODUCE, 9, "PartitionProduceData", index=0, records=batch(3))
    data = h.req(PRODUCE, 9, "TopicProduceData", name="t", partition_data=(part,))
    body = h.req(PRODUCE, 9, "ProduceRequest", acks=-1, timeout=1000, topic_data=(data,))
    reply = dispatch(h.broker, decode_request(encode_request(PRODUCE, 9, 1, "t", body)[4:]))
    assert isinstance(reply, Reply)
    [(plog, offset)] = reply.flush
    assert offset == 5  # offsets below 5, i.e. the new batch 2..4, must be on disk before the ack
    plog.flush(offset)
    assert plog.recovery_point >= 5


def test_clients_may_not_produce_to_internal_topics(h):
    h.broker.log_manager.create_topic("__share_group_state", 1, {"cleanup.policy": "compact"})  # as its coordinator does
    assert produce(h, "__share_group_state", batch()).error_code == ErrorCode.invalid_topic_exception


def test_a_user_topic_may_start_with_two_underscores(h):
    # Only Kafka's internal names are the broker's; "__orders" is a user topic, as in Kafka.
    h.broker.create_topic("__orders", 1, {})
    assert produce(h, "__orders", batch()).error_code == ErrorCode.none
