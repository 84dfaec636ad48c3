"""Internal topics belong to the broker, and auto-creation is bounded, one
request's bytes at a time (the interop tests send the same through real clients)."""

import pytest

from logbroker.broker.internal_topic import INTERNAL_TOPICS, InternalTopic
from logbroker.broker.limits import AutoCreateLimiter
from logbroker.errors import ThrottledError
from logbroker.protocol import ErrorCode

from test_handlers import batch, create, fetch, produce

METADATA, CREATE_PARTITIONS, DELETE_TOPICS, DELETE_RECORDS = 3, 37, 20, 21
ALTER_CONFIGS, INCREMENTAL_ALTER_CONFIGS = 33, 44
TOPIC_RESOURCE = 2


def _make_offsets_topic(h):
    """__consumer_offsets as the group coordinator creates it (compacted, one partition)."""
    h.broker.log_manager.create_topic("__consumer_offsets", 1, {"cleanup.policy": "compact"})


def delete_topics(h, name, version=5):
    return h.call(DELETE_TOPICS, version, "DeleteTopicsRequest", topic_names=(name,), timeout_ms=1000).responses[0]


def create_partitions(h, name, count, validate_only=False):
    topic = h.req(CREATE_PARTITIONS, 2, "CreatePartitionsTopic", name=name, count=count, assignments=None)
    return h.call(CREATE_PARTITIONS, 2, "CreatePartitionsRequest", topics=(topic,), timeout_ms=1000,
                  validate_only=validate_only).results[0]


def delete_records(h, name, offset):
    part = h.req(DELETE_RECORDS, 2, "DeleteRecordsPartition", partition_index=0, offset=offset)
    topic = h.req(DELETE_RECORDS, 2, "DeleteRecordsTopic", name=name, partitions=(part,))
    resp = h.call(DELETE_RECORDS, 2, "DeleteRecordsRequest", topics=(topic,), timeout_ms=1000)
    return resp.topics[0].partitions[0]


def incremental_alter(h, name, key, value, validate_only=False):
    cfg = h.req(INCREMENTAL_ALTER_CONFIGS, 1, "AlterableConfig", name=key, config_operation=0, value=value)
    res = h.req(INCREMENTAL_ALTER_CONFIGS, 1, "AlterConfigsResource", resource_type=TOPIC_RESOURCE,
                resource_name=name, configs=(cfg,))
    return h.call(INCREMENTAL_ALTER_CONFIGS, 1, "IncrementalAlterConfigsRequest", resources=(res,),
                  validate_only=validate_only).responses[0]


def alter(h, name, configs):
    cfg = tuple(h.req(ALTER_CONFIGS, 2, "AlterableConfig", name=k, value=v) for k, v in configs.items())
    res = h.req(ALTER_CONFIGS, 2, "AlterConfigsResource", resource_type=TOPIC_RESOURCE, resource_name=name,
                configs=cfg)
    return h.call(ALTER_CONFIGS, 2, "AlterConfigsRequest", resources=(res,), validate_only=False).responses[0]


def metadata(h, names, allow=True):
    want = tuple(h.req(METADATA, 12, "MetadataRequestTopic", name=n, topic_id=None) for n in names)
    return h.call(METADATA, 12, "MetadataRequest", topics=want, allow_auto_topic_creation=allow).topics


@pytest.mark.parametrize("name", sorted(INTERNAL_TOPICS))
def test_create_topics_refuses_every_internal_name_whether_or_not_it_exists(h, name):
    if name == "__consumer_offsets":
        _make_offsets_topic(h)
    for validate_only in (True, False):
        result = create(h, name, validate_only=validate_only)
        assert result.error_code == ErrorCode.invalid_request
        assert "internal topic" in result.error_message
    assert (name in h.broker.topics()) == (name == "__consumer_offsets")


def test_metadata_never_auto_creates_an_internal_topic(h):
    topic = metadata(h, ["__share_group_state"])[0]
    assert topic.error_code == ErrorCode.unknown_topic_or_partition
    assert "__share_group_state" not in h.broker.topics()


def test_delete_topics_refuses_an_internal_topic_and_keeps_its_records(h):
    _make_offsets_topic(h)
    h.broker.log_manager.get_partition("__consumer_offsets", 0).append(batch(2), 0)
    result = delete_topics(h, "__consumer_offsets")
    assert result.error_code == ErrorCode.invalid_topic_exception
    assert "internal topic __consumer_offsets" in result.error_message
    assert fetch(h, "__consumer_offsets", 0).high_watermark == 2


def test_create_partitions_refuses_an_internal_topic_also_when_only_validating(h):
    _make_offsets_topic(h)
    for validate_only in (True, False):
        result = create_partitions(h, "__consumer_offsets", 3, validate_only)
        assert result.error_code == ErrorCode.invalid_topic_exception
    assert h.broker.topics()["__consumer_offsets"].partitions == 1


def test_delete_records_refuses_an_internal_topic(h):
    _make_offsets_topic(h)
    h.broker.log_manager.get_partition("__consumer_offsets", 0).append(batch(3), 0)
    result = delete_records(h, "__consumer_offsets", 2)
    assert (result.error_code, result.low_watermark) == (ErrorCode.invalid_topic_exception, -1)
    assert h.broker.partition("__consumer_offsets", 0).log_start_offset == 0


@pytest.mark.parametrize("key, value", [("cleanup.policy", "delete"), ("cleanup.policy", "compact,delete"),
                                        ("max.message.bytes", "1000")])
def test_config_changes_that_would_break_an_internal_topic_are_refused(h, key, value):
    _make_offsets_topic(h)
    for validate_only in (True, False):
        result = incremental_alter(h, "__consumer_offsets", key, value, validate_only)
        assert result.error_code == ErrorCode.invalid_config
        assert key in result.error_message
    assert h.broker.log_manager.log_config("__consumer_offsets").cleanup_policy == "compact"


def test_tuning_configs_of_an_internal_topic_may_change(h):
    _make_offsets_topic(h)
    assert incremental_alter(h, "__consumer_offsets", "segment.ms", "3600000").error_code == ErrorCode.none
    assert h.broker.log_manager.log_config("__consumer_offsets").segment_ms == 3600000


def test_a_whole_config_replacement_that_drops_compaction_is_refused(h):
    # AlterConfigs (not incremental) replaces every override: leaving cleanup.policy out means "delete".
    _make_offsets_topic(h)
    assert alter(h, "__consumer_offsets", {"segment.ms": "3600000"}).error_code == ErrorCode.invalid_config
    assert alter(h, "__consumer_offsets", {"segment.ms": "3600000", "cleanup.policy": "compact"}).error_code == 0


def test_the_same_operations_on_a_user_topic_still_work(h):
    assert create(h, "__mine").error_code == ErrorCode.none
    produce(h, "__mine", batch(3))
    assert delete_records(h, "__mine", 2).low_watermark == 2
    assert create_partitions(h, "__mine", 2).error_code == ErrorCode.none
    assert incremental_alter(h, "__mine", "cleanup.policy", "delete").error_code == ErrorCode.none
    assert delete_topics(h, "__mine").error_code == ErrorCode.none


def test_an_internal_topic_class_must_use_a_listed_name():
    with pytest.raises(TypeError, match="INTERNAL_TOPICS"):
        type("Rogue", (InternalTopic,), {"NAME": "__rogue", "CONFIGS": {}})


# -- bounded auto-creation ------------------------------------------------------------


def test_one_metadata_request_auto_creates_at_most_the_per_request_limit(make_broker):
    h = make_broker(auto_create_topics_max_per_request=5, auto_create_topics_max_per_second=1000)
    names = [f"typo-{i}" for i in range(500)]
    topics = metadata(h, names)
    codes = [t.error_code for t in topics]
    assert codes[:5] == [ErrorCode.none] * 5
    assert set(codes[5:]) == {ErrorCode.throttling_quota_exceeded}
    assert sorted(h.broker.topics()) == sorted(names[:5])
    # Topics that exist are still described in the same request.
    assert [t.error_code for t in metadata(h, names[:5] + ["other"])][:5] == [ErrorCode.none] * 5


def test_auto_creation_per_second_is_a_token_bucket():
    now = [0]
    limiter = AutoCreateLimiter(per_request=100, per_second=10)
    for _ in range(10):
        limiter.take(now[0])
    with pytest.raises(ThrottledError, match="auto.create.topics.max.per.second"):
        limiter.take(now[0])
    now[0] += 100  # 0.1 s refills one token
    limiter.take(now[0])
    with pytest.raises(ThrottledError):
        limiter.take(now[0])
    now[0] += 60_000  # a long pause refills no more than one second's worth
    for _ in range(10):
        limiter.take(now[0])
    with pytest.raises(ThrottledError):
        limiter.take(now[0])


def test_many_requests_together_auto_create_at_most_the_per_second_limit(make_broker):
    h = make_broker(auto_create_topics_max_per_request=50, auto_create_topics_max_per_second=20)
    h.broker.clock = lambda: 1_000_000  # time stands still: no refill
    for i in range(5):
        metadata(h, [f"burst-{i}-{j}" for j in range(10)])
    assert len(h.broker.topics()) == 20


def test_refusals_are_logged_once_per_interval(make_broker, caplog):
    h = make_broker(auto_create_topics_max_per_request=1)
    metadata(h, [f"x{i}" for i in range(50)])
    refusals = [r for r in caplog.records if "refused to auto-create" in r.getMessage()]
    assert len(refusals) == 1
