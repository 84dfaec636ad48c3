"""`logbroker groups ...` against a real broker and a real kafka-python group."""

import json

from click.testing import CliRunner
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from logbroker.cli import main


def _run(*args):
    result = CliRunner().invoke(main, list(args))
    return result


def _setup(bootstrap):
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic("cli-t", 3, 1)])
    groups_seen = admin
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(90):
        producer.send("cli-t", value=b"x", partition=i % 3)
    producer.flush()
    producer.close()
    consumer = KafkaConsumer("cli-t", bootstrap_servers=bootstrap, group_id="billing",
                             auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=3000)
    consumed = 0
    for _ in consumer:
        consumed += 1
        if consumed == 60:
            consumer.commit()
            break
    return groups_seen, consumer


def test_describe_shows_lag_and_members_then_reset_and_delete(broker):
    b = broker.bootstrap
    admin, consumer = _setup(b)
    try:
        listed = json.loads(_run("groups", "list", "-b", b, "--format", "json").output)
        assert {"group": "billing", "type": "classic", "protocol_type": "consumer", "state": "Stable"} in listed
        described = json.loads(_run("groups", "describe", "billing", "-b", b, "--format", "json").output)
        assert described["state"] == "Stable" and len(described["members"]) == 1
        assert described["total_lag"] == 90 - sum(p["committed"] for p in described["partitions"])
        assert all(p["log_end"] == 30 for p in described["partitions"])
        # kafka-python's admin agrees with the CLI.
        groups = admin.list_groups()
        names = [g["group_id"] if isinstance(g, dict) else g[0] for g in groups]
        assert "billing" in names
        refused = _run("groups", "reset-offsets", "billing", "--topic", "cli-t", "--to-earliest", "-b", b)
        assert refused.exit_code != 0 and "active members" in refused.output
        text = _run("groups", "describe", "billing", "-b", b).output
        assert "LAG" in text and "cli-t" in text
    finally:
        consumer.close()
        admin.close()
    dry = json.loads(_run("groups", "reset-offsets", "billing", "--topic", "cli-t", "--shift-by", "-5",
                          "--dry-run", "-b", b, "--format", "json").output)
    assert all(p["new"] == max(p["old"] - 5, 0) for p in dry["partitions"])
    done = _run("groups", "reset-offsets", "billing", "--topic", "cli-t", "--to-offset", "10", "-b", b)
    assert done.exit_code == 0, done.output
    described = json.loads(_run("groups", "describe", "billing", "-b", b, "--format", "json").output)
    assert [p["committed"] for p in described["partitions"]] == [10, 10, 10]
    # A consumer of the group now starts where the reset put it.
    consumer = KafkaConsumer("cli-t", bootstrap_servers=b, group_id="billing", enable_auto_commit=False,
                             consumer_timeout_ms=3000)
    offsets = sorted({(m.partition, m.offset) for m in consumer})
    consumer.close()
    assert min(o for _, o in offsets) == 10 and len(offsets) == 60
    assert _run("groups", "delete", "billing", "-b", b).exit_code == 0
    assert json.loads(_run("groups", "list", "-b", b, "--format", "json").output) == []
