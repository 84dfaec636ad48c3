"""`logbroker groups` on groups and topics that do not exist, and `request`/`reply`
that must not create the topic they were given."""

import datetime
import json

import pytest
import trio
from click.testing import CliRunner

from logbroker.cli.main import main
from logbroker.client import Admin, Producer


def run(broker, *args, input=None):
    return CliRunner().invoke(main, [*args, "--bootstrap", broker.bootstrap], input=input, catch_exceptions=False)


def topics_of(broker):
    async def go():
        async with Admin(broker.bootstrap) as admin:
            return await admin.list_topics()

    return trio.run(go)


def fill(broker, topic, count, partitions=2):
    async def go():
        async with Admin(broker.bootstrap) as admin:
            await admin.create_topic(topic, partitions)
        async with Producer(broker.bootstrap) as producer:
            for i in range(count):
                await producer.send(topic, b"v%d" % i, partition=i % partitions)

    trio.run(go)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from brokerproc import BrokerProcess

    proc = BrokerProcess(tmp_path_factory.mktemp("broker")).start()
    fill(proc, "orders", 10)
    yield proc
    proc.kill()


def test_describe_a_missing_group(shared):
    result = run(shared, "groups", "describe", "nosuchgroup")
    assert result.exit_code == 1
    assert "group 'nosuchgroup' does not exist" in result.output
    assert "Dead" not in result.output
    as_json = run(shared, "groups", "describe", "nosuchgroup", "--format", "json")
    assert as_json.exit_code == 1 and "does not exist" in as_json.output


def test_a_group_holding_only_offsets_exists_and_similar_names_are_offered(shared):
    made = run(shared, "groups", "reset-offsets", "billing", "--topic", "orders", "--to-earliest")
    assert made.exit_code == 0, made.output  # as kafka-consumer-groups: a reset creates the group
    described = run(shared, "groups", "describe", "billing")
    assert described.exit_code == 0, described.output
    assert "Group billing: Empty, 0 members" in described.output and "total lag 10" in described.output
    typo = run(shared, "groups", "describe", "biling")
    assert typo.exit_code == 1
    assert "group 'biling' does not exist; similar: billing" in typo.output


def test_delete_a_missing_group(shared):
    result = run(shared, "groups", "delete", "nosuchgroup")
    assert result.exit_code == 1
    assert "nosuchgroup: does not exist" in result.output


def test_reset_offsets_on_a_missing_topic_creates_nothing(shared):
    result = run(shared, "groups", "reset-offsets", "g1", "--topic", "ordrs", "--to-earliest")
    assert result.exit_code == 1
    assert "topic 'ordrs' does not exist; similar: orders" in result.output
    assert "ordrs" not in topics_of(shared)
    partition = run(shared, "groups", "reset-offsets", "g1", "--topic", "orders", "--partition", "7", "--to-latest")
    assert partition.exit_code == 1
    assert "partition 7 of orders does not exist (it has 2: 0-1)" in partition.output


@pytest.mark.parametrize("when", ["-1h", "epoch", "iso"])
def test_reset_offsets_to_datetime_takes_what_consume_takes(shared, when):
    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1)
    value = {"-1h": "-1h", "epoch": str(int(an_hour_ago.timestamp() * 1000)),
             "iso": an_hour_ago.isoformat(timespec="seconds")}[when]
    result = run(shared, "groups", "reset-offsets", f"dt-{when}", "--topic", "orders", "--to-datetime", value,
                 "--format", "json")
    assert result.exit_code == 0, result.output
    # every record is newer than an hour: back to the start of each partition
    assert [p["new"] for p in json.loads(result.output)["partitions"]] == [0, 0]
    future = run(shared, "groups", "reset-offsets", f"dt-{when}", "--topic", "orders", "--to-datetime",
                 str(int((an_hour_ago + datetime.timedelta(hours=2)).timestamp() * 1000)), "--format", "json")
    assert [p["new"] for p in json.loads(future.output)["partitions"]] == [5, 5], "none yet: the log end"


def test_reset_offsets_refuses_a_time_it_cannot_read(shared):
    result = run(shared, "groups", "reset-offsets", "g2", "--topic", "orders", "--to-datetime", "yesterday-ish")
    assert result.exit_code == 2
    assert "is not a time" in result.output


def test_request_to_a_missing_topic_does_not_create_it(shared):
    result = run(shared, "request", "ordres", "hello", "--timeout-ms", "1000")
    assert result.exit_code == 1
    assert "topic 'ordres' does not exist; similar: orders" in result.output
    names = topics_of(shared)
    assert "ordres" not in names
    assert not [n for n in names if n.startswith("logbroker-replies-")], "no reply topic left behind"


def test_reply_on_a_missing_topic_does_not_create_it(shared):
    result = CliRunner().invoke(main, ["reply", "upperr", "--max-requests", "1", "--bootstrap", shared.bootstrap,
                                       "--", "tr", "a-z", "A-Z"], catch_exceptions=False)
    assert result.exit_code == 1
    assert "topic 'upperr' does not exist" in result.output
    assert "upperr" not in topics_of(shared)
