"""``logbroker consume`` and ``logbroker queue consume`` as kcat users expect them:
no topic created by reading, kcat's -o forms and -f tokens, raw bytes on
stdout, JSON that ``produce --format json`` takes back, one-line errors.

One broker for the module; one topic with three partitions written once:

* partition 0: keys k0..k4, values v0..v4, header i=<n>, timestamps 3 h ago + n ms;
* partition 1: one record with a UTF-8 key and a null value, timestamped now;
* partition 2: one binary record (every byte value, a non-UTF-8 key, binary,
  text and null headers), timestamped 2 h ago.
"""

from __future__ import annotations

import base64
import datetime
import json
import struct
import time
import uuid
from dataclasses import dataclass

import pytest
from click.testing import CliRunner

from brokerproc import BrokerProcess
from logbroker.cli.main import main
from logbroker.client import SyncAdmin, SyncProducer

BINARY = bytes(range(256))
BINARY_KEY = b"\xff\xfe"
BINARY_HEADERS = [("h", b"\x00\xff"), ("t", b"text"), ("n", None)]
UTF8_KEY = "tömb"


@dataclass(frozen=True)
class Data:
    bootstrap: str
    topic: str
    old: int  # timestamp of partition 0's offset 0
    now: int  # timestamp of partition 1's record
    two_hours_ago: int  # timestamp of partition 2's record


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Data:
    proc = BrokerProcess(tmp_path_factory.mktemp("consume-cli")).start()
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    d = Data(proc.bootstrap, topic, old=now - 3 * 3600_000, now=now, two_hours_ago=now - 2 * 3600_000)
    with SyncAdmin(d.bootstrap) as admin:
        admin.create_topic(topic, 3, timeout=10)
    with SyncProducer(d.bootstrap) as producer:
        sent = [producer.send(topic, f"v{i}", f"k{i}", partition=0, headers=[("i", str(i).encode())],
                              timestamp_ms=d.old + i) for i in range(5)]
        sent.append(producer.send(topic, None, UTF8_KEY, partition=1, timestamp_ms=d.now))
        sent.append(producer.send(topic, BINARY, BINARY_KEY, partition=2, headers=BINARY_HEADERS,
                                  timestamp_ms=d.two_hours_ago))
        for delivery in sent:
            delivery.result(timeout=10)
    yield d
    proc.kill()


def cli(d: Data, *args: str, ok: bool = True):
    result = CliRunner().invoke(main, [*args, "--bootstrap", d.bootstrap], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def consume(d: Data, *args: str, ok: bool = True):
    return cli(d, "consume", d.topic, *args, ok=ok)


def lines(result) -> list[bytes]:
    return sorted(result.stdout_bytes.splitlines())


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    err = result.stderr
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    assert "Traceback" not in result.output and result.stdout_bytes == b""
    for fragment in fragments:
        assert fragment in err, err


# -- topics and partitions that do not exist ----------------------------------------------

def test_a_missing_topic_is_not_created_and_similar_names_are_listed(data):
    typo = data.topic.replace("orders", "ordrs")
    assert_one_line_error(cli(data, "consume", typo, "-e", ok=False), f"topic '{typo}' does not exist",
                          f"similar: {data.topic}")
    assert_one_line_error(cli(data, "consume", typo, "-g", f"g-{typo}", ok=False), "does not exist")
    assert_one_line_error(cli(data, "queue", "consume", typo, "-g", f"q-{typo}", ok=False),
                          f"topic '{typo}' does not exist", f"similar: {data.topic}")
    with SyncAdmin(data.bootstrap) as admin:
        names = admin.list_topics(timeout=10)
    assert data.topic in names and typo not in names


def test_an_unknown_partition_names_the_partitions_there_are(data):
    assert_one_line_error(consume(data, "-p", "9", "-e", ok=False),
                          f"partition 9 of {data.topic} does not exist (it has 3: 0-2)")


# -- where reading starts -------------------------------------------------------------------

def test_minus_n_gives_the_last_n_records_of_each_partition(data):
    out = consume(data, "-o", "-2", "-e", "-f", r"%p:%o\n")
    # partitions 1 and 2 hold one record each: clamped to their start
    assert lines(out) == [b"0:3", b"0:4", b"1:0", b"2:0"]


def test_absolute_beginning_end_and_stored_offsets(data):
    assert consume(data, "-p", "0", "-o", "3", "-e").stdout_bytes == b"v3\nv4\n"
    assert consume(data, "-p", "0", "-o", "99", "-e").stdout_bytes == b""  # past the end: the end
    assert consume(data, "-p", "0", "-o", "beginning", "-e", "-n", "2").stdout_bytes == b"v0\nv1\n"
    assert consume(data, "-o", "end", "-e").stdout_bytes == b""
    group = f"g-{uuid.uuid4().hex[:8]}"
    assert consume(data, "-p", "0", "-g", group, "--from-beginning", "-n", "3").stdout_bytes == b"v0\nv1\nv2\n"
    assert consume(data, "-p", "0", "-g", group, "-o", "stored", "-e").stdout_bytes == b"v3\nv4\n"


def test_timestamps_as_kcat_s_at_and_as_from_time(data):
    expected = [b"0:3", b"0:4", b"1:0", b"2:0"]
    assert lines(consume(data, "-o", f"s@{data.old + 3}", "-e", "-f", r"%p:%o\n")) == expected
    assert lines(consume(data, "--from-time", str(data.old + 3), "-e", "-f", r"%p:%o\n")) == expected
    assert lines(consume(data, "--from-time", "-1h", "-e", "-f", r"%p:%o\n")) == [b"1:0"]
    assert lines(consume(data, "--from-time", "-150m", "-e", "-f", r"%p:%o\n")) == [b"1:0", b"2:0"]


def test_a_group_starts_each_assigned_partition_at_minus_n_and_commits_what_it_printed(data):
    group = f"g-{uuid.uuid4().hex[:8]}"
    out = consume(data, "-g", group, "-o", "-1", "-e", "-f", r"%p:%o\n")
    assert lines(out) == [b"0:4", b"1:0", b"2:0"]
    with SyncAdmin(data.bootstrap) as admin:
        committed = admin.list_group_offsets(group, [data.topic], timeout=10)
    assert sorted(committed.values()) == [1, 1, 5]


# -- output ------------------------------------------------------------------------------------

def test_every_format_token_and_escape(data):
    fmt = r"%t|%p|%o|%T|%k|%K|%s|%S|%h|%%|\t\x41\0\101\n"
    out = consume(data, "-p", "0", "-o", "1", "-n", "1", "-f", fmt).stdout_bytes
    assert out == f"{data.topic}|0|1|{data.old + 1}|k1|2|v1|2|i=1|%|\tA\x00e\n".encode()
    null = consume(data, "-p", "1", "-o", "0", "-n", "1", "-f", "[%k][%K][%s][%S][%R][%h]").stdout_bytes
    assert null == f"[{UTF8_KEY}][{len(UTF8_KEY.encode())}][][-1][".encode() + b"\xff\xff\xff\xff][]"


def test_format_string_with_binary_length_prefix_frames_binary_values(data):
    out = consume(data, "-p", "2", "-o", "0", "-n", "1", "-f", "%R%s%k%h").stdout_bytes
    assert out == struct.pack(">i", 256) + BINARY + BINARY_KEY + b"h=\x00\xff,t=text,n=NULL"
    hexed = consume(data, "-p", "2", "-o", "0", "-n", "1", "--encoding", "hex", "-f", r"%K %k %S %s %h\n")
    assert hexed.stdout_bytes == f"2 fffe 256 {BINARY.hex()} h=00ff,t=74657874,n=NULL\n".encode()


def test_text_writes_the_raw_bytes_of_binary_values(data):
    assert consume(data, "-p", "2", "--from-beginning", "-e").stdout_bytes == BINARY + b"\n"
    out = consume(data, "-p", "2", "--from-beginning", "-e", "-K", ":", "--encoding", "hex").stdout_bytes
    assert out == f"fffe:{BINARY.hex()}\n".encode()
    out = consume(data, "-p", "2", "--from-beginning", "-e", "--encoding", "base64").stdout_bytes
    assert out == base64.b64encode(BINARY) + b"\n"


def test_text_prints_offsets_timestamps_headers_and_keys(data):
    out = consume(data, "-p", "0", "-o", "0", "-n", "1", "--print-offsets", "--print-timestamp", "--print-headers",
                  "-K", "=").stdout_bytes
    when = datetime.datetime.fromtimestamp(data.old / 1000, datetime.UTC).isoformat(timespec="milliseconds")
    assert out == f"0:0\t{when.replace('+00:00', 'Z')}\ti=0\tk0=v0\n".encode()
    null = consume(data, "-p", "1", "--from-beginning", "-e", "-K", "|").stdout_bytes
    assert null == f"{UTF8_KEY}|\n".encode()


def test_json_marks_binary_bytes_and_matches_json_dumps(data):
    out = consume(data, "--from-beginning", "-e", "-f", "json").stdout_bytes
    objects = {}
    for line in out.decode("ascii").splitlines():  # ensure_ascii, as json.dumps
        obj = json.loads(line)
        assert line == json.dumps(obj)  # field order and spacing as json.dumps gives them
        assert list(obj) == ["topic", "partition", "offset", "timestamp", "key", "value", "headers"]
        objects[obj["partition"], obj["offset"]] = obj
    assert len(objects) == 7

    def b64(b: bytes) -> dict:
        return {"base64": base64.b64encode(b).decode()}

    assert objects[2, 0] == {"topic": data.topic, "partition": 2, "offset": 0, "timestamp": data.two_hours_ago,
                             "key": b64(BINARY_KEY), "value": b64(BINARY),
                             "headers": [["h", b64(b"\x00\xff")], ["t", "text"], ["n", None]]}
    assert (objects[1, 0]["key"], objects[1, 0]["value"], objects[1, 0]["headers"]) == (UTF8_KEY, None, [])
    assert (objects[0, 4]["key"], objects[0, 4]["value"], objects[0, 4]["headers"]) == ("k4", "v4", [["i", "4"]])


# -- user errors: one line, exit 1 --------------------------------------------------------------

@pytest.mark.parametrize("args, fragment", [
    (("-o", "-x"), "--offset '-x'"),
    (("-o", "e@5"), "e@"),
    (("-o", "stored"), "needs --group"),
    (("-f", "%q"), "unknown token %q"),
    (("-f", "%s%"), "lone %"),
    (("-f", "jsno"), "give text, json, or a kcat format string"),
    (("-f", "json", "--encoding", "hex"), "--encoding"),
    (("-f", "json", "-K", ":"), "-K/--key-separator"),
    (("--from-time", "soon"), "--from-time"),
    (("--from-beginning", "-o", "1"), "at most one"),
    (("-n", "0"), "--max-records"),
    (("--group-protocol", "consumer"), "needs --group"),
    (("-g", ""), "group_id"),
])
def test_user_errors_are_one_line(data, args, fragment):
    assert_one_line_error(consume(data, *args, "-e", ok=False), fragment)


# -- queue consume -------------------------------------------------------------------------------

def test_queue_consume_prints_json_with_binary_bytes_and_delivery_counts(data):
    group = f"q-{uuid.uuid4().hex[:8]}"
    cli(data, "groups", "config", group, "--set", "share.auto.offset.reset=earliest")
    out = cli(data, "queue", "consume", data.topic, "-g", group, "-n", "7", "-f", "json").stdout_bytes
    objects = [json.loads(line) for line in out.splitlines()]
    assert sorted((o["partition"], o["offset"]) for o in objects) == [(0, i) for i in range(5)] + [(1, 0), (2, 0)]
    assert all(o["delivery_count"] == 1 for o in objects)
    [binary] = [o for o in objects if o["partition"] == 2]
    assert binary["value"] == {"base64": base64.b64encode(BINARY).decode()}
