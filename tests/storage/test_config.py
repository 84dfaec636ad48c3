import pytest

from logbroker.errors import InvalidConfigError
from logbroker.storage import TOPIC_CONFIG_DEFAULTS, LogConfig, LogManagerConfig


def test_defaults_match_kafka():
    c = LogConfig()
    assert (c.segment_bytes, c.segment_ms, c.segment_index_bytes) == (1 << 30, 604_800_000, 10 << 20)
    assert (c.index_interval_bytes, c.retention_ms, c.retention_bytes) == (4096, 604_800_000, -1)
    assert c.max_message_bytes == 1048588 and c.message_timestamp_type == "CreateTime"
    assert c.cleanup_policy == "delete"
    assert c.to_topic_configs() == TOPIC_CONFIG_DEFAULTS


def test_from_topic_configs_maps_names_and_keeps_extras():
    c = LogConfig.from_topic_configs(
        {"segment.bytes": "1000", "retention.ms": "-1", "compression.type": "zstd", "min.insync.replicas": "2"}
    )
    assert c.segment_bytes == 1000 and c.retention_ms == -1
    assert dict(c.extra) == {"compression.type": "zstd", "min.insync.replicas": "2"}
    out = c.to_topic_configs()
    assert out["segment.bytes"] == "1000" and out["compression.type"] == "zstd"
    again = LogConfig.from_topic_configs(out)
    assert (again.segment_bytes, again.retention_ms, dict(again.extra)["compression.type"]) == (1000, -1, "zstd")


def test_overrides_layer_over_defaults():
    base = LogConfig(segment_bytes=5000)
    c = LogConfig.from_topic_configs({"retention.bytes": "10"}, base)
    assert c.segment_bytes == 5000 and c.retention_bytes == 10


@pytest.mark.parametrize(
    "configs",
    [
        {"no.such.config": "1"},
        {"segment.bytes": "abc"},
        {"segment.bytes": "10"},
        {"segment.bytes": str(2**31)},
        {"retention.ms": "-2"},
        {"message.timestamp.type": "Whenever"},
        {"cleanup.policy": "shred"},
        {"compression.type": "brotli"},
        {"index.interval.bytes": "-1"},
    ],
)
def test_bad_configs_rejected(configs):
    with pytest.raises(InvalidConfigError):
        LogConfig.from_topic_configs(configs)


def test_cleanup_policy_and_timestamp_type_flags():
    assert not LogConfig(cleanup_policy="compact").deletes
    assert LogConfig(cleanup_policy="compact,delete").deletes
    assert LogConfig(message_timestamp_type="LogAppendTime").log_append_time


def test_configs_are_frozen_and_manager_config_validates():
    c = LogConfig()
    with pytest.raises(AttributeError):
        c.segment_bytes = 5  # type: ignore[misc]
    with pytest.raises(InvalidConfigError):
        LogManagerConfig(flush="sometimes")  # type: ignore[arg-type]
    with pytest.raises(InvalidConfigError):
        LogManagerConfig(flush_interval_ms=0)
    assert LogManagerConfig().flush == "interval"
