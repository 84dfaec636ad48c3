"""Running out of file descriptors (found by tools/fuzz_broker.py: a mutated
CreatePartitions asked for tens of thousands of partitions).

Partitions used to keep descriptors open (the active segment's .log and the
memory maps of its two indexes), so one CreatePartitions or CreateTopics
request could exhaust RLIMIT_NOFILE. Now maps keep none and write
descriptors stay within log.max.open.files; whether the broker creates the
partitions or refuses the request, it must stay usable: the topic keeps its old partition count (in Metadata and in
topics.json), new connections are still accepted, the topic can still be
deleted, the other topics still work, and the data directory can be opened
again.

The broker runs with RLIMIT_NOFILE = 256 here so that a few hundred
partitions are enough.
"""

from __future__ import annotations

import json
import resource
import socket
import struct
from pathlib import Path

from fault_support import create_topic, produce_all, read_partitions, summary, unique_topic

NOFILE = 256


def _nofile():
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _accepts_connections(port: int) -> bool:
    """An ApiVersions v0 on a fresh connection is answered."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.settimeout(5)
            sock.sendall(struct.pack(">ihhih", 12, 18, 0, 1, 2) + b"fd")
            return len(sock.recv(64)) >= 8
    except OSError:
        return False


def test_create_partitions_beyond_the_fd_limit_leaves_a_usable_broker(fault_broker):
    broker = fault_broker(preexec_fn=_nofile)
    keep, grow = unique_topic("keep"), unique_topic("grow")
    create_topic(broker.bootstrap, keep, 1)
    create_topic(broker.bootstrap, grow, 1)
    acked = produce_all(broker.bootstrap, keep, [(0, None, b"v%d" % i) for i in range(10)])

    from confluent_kafka.admin import AdminClient, NewPartitions

    client = AdminClient({"bootstrap.servers": broker.bootstrap, "log_level": 0})
    try:
        client.create_partitions([NewPartitions(grow, 2 * NOFILE)], request_timeout=60)[grow].result(60)
        outcome = "created"
    except Exception as exc:  # noqa: BLE001 - the error is what we look at
        outcome = repr(exc)
    problems = []
    if not _accepts_connections(broker.port):
        problems.append("the broker no longer accepts connections (out of file descriptors)")
    doc = json.loads(Path(broker.data_dir, "topics.json").read_text())
    topics = {t["name"]: t["partitions"] for t in doc["topics"]}
    if outcome != "created" and topics.get(grow) != 1:
        problems.append(f"the request failed ({outcome}) but topics.json now says {grow} has {topics.get(grow)} "
                        f"partitions")
    # The admin client's connection predates the exhaustion: the topic must still be deletable.
    try:
        client.delete_topics([grow], request_timeout=10)[grow].result(15)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"DeleteTopics of {grow} afterwards failed: {exc!r}")
    if _accepts_connections(broker.port):
        [records] = read_partitions(broker.bootstrap, keep, [0]).values()
        if [v for _, _, v in records] != [v for _, _, v in acked]:
            problems.append("the other topic no longer reads back")
    broker.stop()
    try:
        broker.start()
        [records] = read_partitions(broker.bootstrap, keep, [0]).values()
        if [v for _, _, v in records] != [v for _, _, v in acked]:
            problems.append("after a restart the other topic does not read back")
    except RuntimeError as exc:
        problems.append(f"the broker cannot start on this data directory any more: {str(exc).strip().splitlines()[-1]}")
    summary("fd_exhaustion", nofile=NOFILE, create_partitions=outcome, problems=problems)
    assert not problems, f"CreatePartitions to {2 * NOFILE} with RLIMIT_NOFILE={NOFILE} ({outcome}):\n- " + \
        "\n- ".join(problems)


def _open_descriptors(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def test_a_thousand_partitions_fit_in_a_256_descriptor_limit(fault_broker, tmp_path):
    # Idle partitions hold no descriptor: maps keep none, and the active segments'
    # write descriptors stay within log.max.open.files (64 here).
    settings = tmp_path / "broker.toml"
    settings.write_text('"log.max.open.files" = 64\n')
    broker = fault_broker("--config", str(settings), preexec_fn=_nofile)
    topic, partitions = unique_topic("wide"), 1000
    create_topic(broker.bootstrap, topic, partitions)
    acked = produce_all(broker.bootstrap, topic, [(p, None, b"p%d" % p) for p in range(partitions)])
    assert len(acked) == partitions
    during = _open_descriptors(broker.proc.pid)
    read = read_partitions(broker.bootstrap, topic, range(partitions), timeout=60)
    assert {p: [v for _, _, v in records] for p, records in read.items()} == {
        p: [b"p%d" % p] for p in range(partitions)}
    after_read = _open_descriptors(broker.proc.pid)
    broker.stop()
    broker.start()
    reread = read_partitions(broker.bootstrap, topic, [0, 499, 999], timeout=30)
    assert [records[0][2] for records in reread.values()] == [b"p0", b"p499", b"p999"]
    restarted = _open_descriptors(broker.proc.pid)
    summary("descriptor_budget", partitions=partitions, nofile=NOFILE, max_open_files=64,
            open_after_produce=during, open_after_read=after_read, open_after_restart=restarted)
    # 64 write descriptors, the listener, a few client connections, logs and the lock file.
    assert max(during, after_read, restarted) <= 64 + 40
