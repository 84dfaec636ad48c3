"""One topic the broker cannot answer for costs only that topic: ``logbroker
status`` still shows the others."""

from __future__ import annotations

import json

from click.testing import CliRunner

from logbroker import embedded
from logbroker.cli.main import main
from logbroker.client import SyncProducer
from logbroker.errors import StorageError


def test_status_shows_the_other_topics_when_one_cannot_be_read():
    with embedded() as broker:
        broker.create_topic("good", 2)
        broker.create_topic("bad", 1)
        with SyncProducer(broker.bootstrap_servers) as producer:
            for i in range(3):
                producer.send("good", b"x", partition=0).result(10)
        inner = broker._server.broker
        real = inner.partition

        def partition(topic, index):
            if topic == "bad":
                raise StorageError("cannot open bad-0: Input/output error")
            return real(topic, index)

        inner.partition = partition  # ListOffsets for "bad" now answers KAFKA_STORAGE_ERROR
        result = CliRunner().invoke(main, ["status", "--bootstrap", broker.bootstrap_servers, "--json",
                                           "--timeout", "1"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    topics = {t["name"]: t for t in status["topics"]}
    assert topics["good"]["records"] == 3 and topics["good"]["error"] is None
    assert topics["bad"]["error"] and topics["bad"]["partitions"][0]["log_end"] == -1

