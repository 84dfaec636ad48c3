"""Group configs Kafka added after the first share-group release:
``share.auto.offset.reset=by_duration:...`` and
``errors.deadletterqueue.copy.record.enable``."""

from __future__ import annotations

import pytest

from logbroker.broker.share import ACK_REJECT
from logbroker.broker.share.config import duration_ms
from logbroker.errors import InvalidConfigError
from logbroker.records import BatchBuilder, decode_batches

from test_share_coordinator import T0, acquired_values, fetch

HOUR = 3_600_000


def _produce_at(env, topic: str, stamped: list[tuple[str, int]]) -> None:
    """One batch per record, each with its own timestamp."""
    for value, ts in stamped:
        builder = BatchBuilder()
        builder.append(value.encode(), timestamp_ms=ts)
        env.broker.append(topic, 0, builder.build())


@pytest.mark.parametrize("text, ms", [
    ("PT1H", HOUR), ("PT30M", 1_800_000), ("P1D", 24 * HOUR), ("P1DT2H3M4.5S", 93_784_500),
    ("PT0.001S", 1), ("pt15s", 15_000),
])
def test_iso_8601_durations(text, ms):
    assert duration_ms(text) == ms


@pytest.mark.parametrize("text", ["", "P", "PT", "1H", "PT-1H", "P1W", "PT1H30", "P1DT"])
def test_bad_durations_are_refused(text):
    with pytest.raises(InvalidConfigError):
        duration_ms(text)


def test_by_duration_starts_at_the_first_record_that_young(env):
    env.topic("t")
    _produce_at(env, "t", [("3h-old", T0 - 3 * HOUR), ("90m-old", T0 - 90 * 60_000), ("now", T0)])
    env.share.alter_configs("g", {"share.auto.offset.reset": "by_duration:PT2H"}, T0)
    assert acquired_values(fetch(env, "g", "m", "t")[0]) == ["90m-old", "now"]
    assert env.share.share_partition("g", "t", 0).start == 1


def test_by_duration_with_nothing_that_young_starts_at_the_end(env):
    env.topic("t")
    _produce_at(env, "t", [("old", T0 - 3 * HOUR)])
    env.share.alter_configs("g", {"share.auto.offset.reset": "by_duration:PT1H"}, T0)
    assert not fetch(env, "g", "m", "t")
    assert env.share.share_partition("g", "t", 0).start == 1


@pytest.mark.parametrize("configs", [
    {"share.auto.offset.reset": "by_duration:yesterday"},
    {"share.auto.offset.reset": "sometimes"},
    {"errors.deadletterqueue.copy.record.enable": "maybe"},
])
def test_bad_values_are_refused(env, configs):
    with pytest.raises(InvalidConfigError):
        env.share.alter_configs("g", configs, T0)


def _dead_letters(env):
    plog = env.broker.partition("dlq", 0)
    return [r for b in decode_batches(bytes(plog.read(0, 1 << 20).records)) for r in b.records]


@pytest.mark.parametrize("copy, key, value", [(None, b"k", b"v"), ("true", b"k", b"v"), ("false", None, None)])
def test_dead_letters_copy_the_record_unless_told_not_to(env, copy, key, value):
    env.topic("t")
    configs = {"share.auto.offset.reset": "earliest", "errors.deadletterqueue.topic.name": "dlq"}
    if copy is not None:
        configs["errors.deadletterqueue.copy.record.enable"] = copy
    env.share.alter_configs("g", configs, T0)
    builder = BatchBuilder()
    builder.append(b"v", key=b"k", headers=(("trace", b"1"),), timestamp_ms=T0 - 5)
    env.broker.append("t", 0, builder.build())
    fetch(env, "g", "m", "t")
    env.share.acknowledge("g", "m", "t", 0, [(0, 0, (ACK_REJECT,))], T0)
    env.share.commit(T0)
    [dead] = _dead_letters(env)
    headers = dict(dead.headers)
    assert (dead.key, dead.value, dead.timestamp) == (key, value, T0 - 5)
    assert headers["__dlq.errors.reason"] == b"REJECTED" and headers["__dlq.errors.offset"] == b"0"
    assert ("trace" in headers) == (value is not None)
