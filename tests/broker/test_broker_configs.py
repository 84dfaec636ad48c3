"""BROKER config resources: DescribeConfigs, AlterConfigs and IncrementalAlterConfigs
of this node ("<node.id>") and of the cluster default (""), as Kafka's
DynamicBrokerConfig: dynamic settings apply at once and survive a restart."""

import json

import pytest

from logbroker.broker import BrokerConfig
from logbroker.broker.dynamic_config import DYNAMIC_CONFIG_FILE
from logbroker.protocol import ErrorCode

DESCRIBE, ALTER, INCREMENTAL = 32, 33, 44
BROKER, BROKER_LOGGER = 4, 8
DYNAMIC_BROKER, DYNAMIC_DEFAULT, STATIC, DEFAULT = 2, 3, 4, 5
NODE = 2
DAY = str(24 * 3600 * 1000)


@pytest.fixture
def h(make_broker):
    return make_broker(node_id=NODE, log_roll_ms=123_456)


def describe(h, name, keys=None, synonyms=True, rtype=BROKER):
    resource = h.req(DESCRIBE, 4, "DescribeConfigsResource", resource_type=rtype, resource_name=name,
                     configuration_keys=keys)
    return h.call(DESCRIBE, 4, "DescribeConfigsRequest", resources=(resource,), include_synonyms=synonyms,
                  include_documentation=False).results[0]


def incremental(h, name, *ops, validate_only=False, rtype=BROKER):
    configs = tuple(h.req(INCREMENTAL, 1, "AlterableConfig", name=k, config_operation=op, value=v) for k, op, v in ops)
    resource = h.req(INCREMENTAL, 1, "AlterConfigsResource", resource_type=rtype, resource_name=name, configs=configs)
    return h.call(INCREMENTAL, 1, "IncrementalAlterConfigsRequest", resources=(resource,),
                  validate_only=validate_only).responses[0]


def alter(h, name, **configs):
    made = tuple(h.req(ALTER, 2, "AlterableConfig", name=k.replace("_", "."), value=v) for k, v in configs.items())
    resource = h.req(ALTER, 2, "AlterConfigsResource", resource_type=BROKER, resource_name=name, configs=made)
    return h.call(ALTER, 2, "AlterConfigsRequest", resources=(resource,), validate_only=False).responses[0]


def entries(result):
    return {c.name: c for c in result.configs}


def test_describe_lists_every_setting_with_its_source_and_read_only(h) -> None:
    result = describe(h, str(NODE))
    assert result.error_code == ErrorCode.none
    got = entries(result)
    assert len(got) == len(BrokerConfig.field_names())
    roll = got["log.roll.ms"]
    assert (roll.value, roll.config_source, roll.read_only, roll.config_type) == ("123456", STATIC, False, 5)
    assert [(s.value, s.source) for s in roll.synonyms] == [("123456", STATIC), (str(7 * int(DAY)), DEFAULT)]
    node = got["node.id"]
    assert (node.value, node.config_source, node.read_only) == (str(NODE), STATIC, True)
    assert (got["port"].config_source, got["port"].read_only) == (DEFAULT, True)
    assert got["auto.create.topics.enable"].config_type == 1
    assert got["max.connections"].config_type == 3
    assert describe(h, "").configs == ()  # nothing set at the cluster default yet


def test_a_dynamic_setting_applies_at_once_to_topics_without_their_own(h) -> None:
    h.broker.create_topic("plain", 1)
    h.broker.create_topic("own", 1, {"retention.ms": "5000"})
    assert incremental(h, "", ("log.retention.ms", 0, DAY)).error_code == ErrorCode.none
    assert incremental(h, str(NODE), ("log.retention.ms", 0, "3600000")).error_code == ErrorCode.none
    assert h.broker.partition("plain", 0).config.retention_ms == 3_600_000
    assert h.broker.partition("own", 0).config.retention_ms == 5000
    retention = entries(describe(h, str(NODE), keys=("log.retention.ms",)))["log.retention.ms"]
    assert (retention.value, retention.config_source) == ("3600000", DYNAMIC_BROKER)
    assert [s.source for s in retention.synonyms] == [DYNAMIC_BROKER, DYNAMIC_DEFAULT, DEFAULT]
    default = describe(h, "")
    assert [(c.name, c.value, c.config_source) for c in default.configs] == [("log.retention.ms", DAY, DYNAMIC_DEFAULT)]
    # DELETE falls back to the cluster default.
    assert incremental(h, str(NODE), ("log.retention.ms", 1, None)).error_code == ErrorCode.none
    assert h.broker.partition("plain", 0).config.retention_ms == int(DAY)


def test_refusals_are_kafkas(h) -> None:
    fixed = incremental(h, str(NODE), ("port", 0, "1"), ("log.retention.ms", 0, "1000"))
    assert (fixed.error_code, fixed.error_message) == (
        ErrorCode.invalid_request, "Cannot update these configs dynamically: Set(port)")
    assert h.broker.config.log_retention_ms != 1000  # refused whole
    other = incremental(h, "7", ("log.retention.ms", 0, "1000"))
    assert (other.error_code, other.error_message) == (
        ErrorCode.invalid_request, f"Unexpected broker id, expected {NODE}, but received 7")
    assert incremental(h, "x", ("log.retention.ms", 0, "1")).error_message == "Node id must be an integer, but it is: x"
    bad = incremental(h, str(NODE), ("log.retention.ms", 0, "-5"))
    assert bad.error_code == ErrorCode.invalid_request and "log.retention.ms" in bad.error_message
    appended = incremental(h, str(NODE), ("message.max.bytes", 2, "5"))
    assert appended.error_message == "Config value append is not allowed for config key: message.max.bytes"
    assert describe(h, "7").error_code == ErrorCode.invalid_request
    assert incremental(h, str(NODE), ("x", 0, "1"), rtype=BROKER_LOGGER).error_code == ErrorCode.invalid_request
    assert describe(h, str(NODE), rtype=BROKER_LOGGER).error_code == ErrorCode.invalid_request
    checked = incremental(h, str(NODE), ("message.max.bytes", 0, "5000"), validate_only=True)
    assert checked.error_code == ErrorCode.none and h.broker.config.message_max_bytes == 1048588


def test_legacy_alter_replaces_the_layer_and_a_restart_keeps_it(h, make_broker, tmp_path) -> None:
    assert incremental(h, str(NODE), ("log.segment.bytes", 0, "100000")).error_code == ErrorCode.none
    assert alter(h, str(NODE), message_max_bytes="5000").error_code == ErrorCode.none
    assert h.broker.config.log_segment_bytes == 1 << 30  # not named: removed
    data_dir = h.broker.config.data_dir
    stored = json.loads((tmp_path / "data0" / DYNAMIC_CONFIG_FILE).read_text())
    assert stored["node"] == {"message.max.bytes": "5000"}
    h.broker.close()
    again = make_broker(data_dir=data_dir, node_id=NODE)
    assert again.broker.config.message_max_bytes == 5000
    assert again.broker.log_manager.config.log.max_message_bytes == 5000
    entry = entries(describe(again, str(NODE), keys=("message.max.bytes",)))["message.max.bytes"]
    assert (entry.value, entry.config_source) == ("5000", DYNAMIC_BROKER)
