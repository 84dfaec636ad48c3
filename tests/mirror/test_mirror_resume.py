"""`logbroker mirror` resumes from its saved progress (a consumer group's offsets),
at-least-once by default and exactly-once with --exactly-once, also across a
mirror killed mid-copy."""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import trio
from click.testing import CliRunner

from logbroker.cli.main import main
from logbroker.client import Admin, Consumer, Producer, TopicPartition

TOPIC = "events"


def _produce(bootstrap, start, count, *, partitions=3):
    async def go():
        async with Admin(bootstrap) as admin:
            if TOPIC not in await admin.list_topics():
                await admin.create_topic(TOPIC, partitions)
        async with Producer(bootstrap) as producer:
            for i in range(start, start + count):
                await producer.send(TOPIC, b"v%d" % i, b"k%d" % (i % 7))

    trio.run(go)


def _values(bootstrap, *, read_committed=True):
    """Every record value of TOPIC (read_committed: what a transactional reader sees)."""

    async def go():
        async with Admin(bootstrap) as admin:
            if TOPIC not in await admin.list_topics():
                return []
            counts = await admin.topic_offsets(TOPIC)
        isolation = "read_committed" if read_committed else "read_uncommitted"
        async with Consumer(bootstrap, isolation_level=isolation, enable_auto_commit=False) as consumer:
            tps = [TopicPartition(TOPIC, p) for p in counts]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            got = []
            with trio.fail_after(30):
                for tp in tps:
                    while await consumer.position(tp) < ends[tp]:
                        with trio.move_on_after(0.5):
                            got.extend(r.value for r in await consumer.getmany(10_000))
            return got

    return trio.run(go)


def _group_offsets(bootstrap, group):
    async def go():
        async with Admin(bootstrap) as admin:
            return await admin.list_group_offsets(group, [TOPIC])

    return trio.run(go)


def _mirror(source, target, *extra):
    result = CliRunner().invoke(main, ["mirror", TOPIC, "--source", source.bootstrap, "--target", target.bootstrap,
                                       "--format", "json", *extra], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_a_second_run_copies_only_new_records(broker_factory):
    source, target = broker_factory(), broker_factory()
    _produce(source.bootstrap, 0, 200)
    first = _mirror(source, target)
    assert first["total"] == 200 and first["resumed"] == [] and first["progress_on"] == "source"
    group = first["group"]
    assert group == f"logbroker-mirror-{target.bootstrap}"
    ends = {TopicPartition(TOPIC, p): o for p, o in enumerate(_source_ends(source))}
    assert _group_offsets(source.bootstrap, group) == ends, "progress committed on the source"

    again = _mirror(source, target)
    assert again["total"] == 0 and len(again["resumed"]) == 3
    assert sorted(_values(target.bootstrap)) == sorted(b"v%d" % i for i in range(200)), "copied once"

    _produce(source.bootstrap, 200, 50)
    more = _mirror(source, target)
    assert more["total"] == 50
    assert Counter(_values(target.bootstrap)) == Counter(b"v%d" % i for i in range(250))

    everything = _mirror(source, target, "--from-beginning")
    assert everything["total"] == 250 and everything["resumed"] == []
    assert Counter(_values(target.bootstrap)) == Counter({b"v%d" % i: 2 for i in range(250)})


def _source_ends(source):
    async def go():
        async with Admin(source.bootstrap) as admin:
            return list((await admin.topic_offsets(TOPIC)).values())

    return trio.run(go)


def test_groups_are_separate_progress(broker_factory):
    source, target = broker_factory(), broker_factory()
    _produce(source.bootstrap, 0, 30)
    assert _mirror(source, target, "--group", "one")["total"] == 30
    assert _mirror(source, target, "--group", "two")["total"] == 30, "a new group starts from the beginning"
    assert _mirror(source, target, "--group", "one")["total"] == 0


def test_exactly_once_keeps_its_progress_on_the_target(broker_factory):
    source, target = broker_factory(), broker_factory()
    _produce(source.bootstrap, 0, 120)
    first = _mirror(source, target, "--exactly-once", "--group", "eos")
    assert first["total"] == 120 and first["progress_on"] == "target"
    ends = {TopicPartition(TOPIC, p): o for p, o in enumerate(_source_ends(source))}
    assert _group_offsets(target.bootstrap, "eos") == ends, "progress committed with the records, on the target"
    assert _group_offsets(source.bootstrap, "eos") == ends, "and copied to the source for monitoring"
    assert _mirror(source, target, "--exactly-once", "--group", "eos")["total"] == 0
    _produce(source.bootstrap, 120, 30)
    assert _mirror(source, target, "--exactly-once", "--group", "eos")["total"] == 30
    assert Counter(_values(target.bootstrap)) == Counter(b"v%d" % i for i in range(150))


def _kill_mid_copy(source, target, *extra):
    """Run a following mirror while records keep arriving and kill -9 it once it has
    saved progress at least once; then stop producing."""
    _produce(source.bootstrap, 0, 3000)
    stop = threading.Event()
    produced = [3000]

    def keep_producing():
        while not stop.is_set():
            _produce(source.bootstrap, produced[0], 300)
            produced[0] += 300

    feeder = threading.Thread(target=keep_producing)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
    proc = subprocess.Popen([sys.executable, "-m", "logbroker", "mirror", TOPIC, "--source", source.bootstrap,
                             "--target", target.bootstrap, "--follow", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    feeder.start()
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while b"copied" not in seen and time.monotonic() < deadline and proc.poll() is None:
            if select.select([proc.stderr], [], [], 0.5)[0]:
                seen += proc.stderr.read1(4096)
        assert b"copied" in seen, seen
        time.sleep(0.3)  # mid-way through the next batch
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        stop.set()
        feeder.join()
    return produced[0]


def test_exactly_once_survives_a_killed_mirror(broker_factory):
    source, target = broker_factory(), broker_factory()
    total = _kill_mid_copy(source, target, "--exactly-once")
    _mirror(source, target, "--exactly-once")
    got = _values(target.bootstrap)
    assert Counter(got) == Counter(b"v%d" % i for i in range(total)), "each record exactly once"


def test_at_least_once_loses_nothing_when_killed(broker_factory):
    source, target = broker_factory(), broker_factory()
    total = _kill_mid_copy(source, target)
    _mirror(source, target)
    got = Counter(_values(target.bootstrap))
    assert set(got) == {b"v%d" % i for i in range(total)}, "nothing lost"
    assert _mirror(source, target)["total"] == 0, "the rerun saved its progress"


def test_source_and_target_settings_from_files(broker_factory, tmp_path):
    source, target = broker_factory(), broker_factory()
    _produce(source.bootstrap, 0, 10)
    (tmp_path / "source.properties").write_text(f"bootstrap.servers={source.bootstrap}\nclient.id=from-file\n")
    (tmp_path / "target.toml").write_text(f'"bootstrap.servers" = "{target.bootstrap}"\nsecurity.protocol = "plaintext"\n')
    result = CliRunner().invoke(main, ["mirror", TOPIC, "--source-config", str(tmp_path / "source.properties"),
                                       "--target-config", str(tmp_path / "target.toml")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [f"{TOPIC}: 10 records"]
    assert "progress saved in group" in result.stderr
    assert sorted(_values(target.bootstrap)) == sorted(b"v%d" % i for i in range(10))


def test_a_missing_source_topic_is_named(broker_factory):
    source, target = broker_factory(), broker_factory()
    _produce(source.bootstrap, 0, 1)
    result = CliRunner().invoke(main, ["mirror", "evnts", "--source", source.bootstrap,
                                       "--target", target.bootstrap])
    assert result.exit_code == 1
    assert "topic 'evnts' does not exist; similar: events" in result.output
