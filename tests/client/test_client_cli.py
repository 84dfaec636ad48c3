"""``logbroker topics|produce|consume`` through click's CliRunner and as subprocesses."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from logbroker.cli.main import main
from logbroker.client import SyncAdmin


def run(*args: str, input: str | None = None, ok: bool = True):
    result = CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def test_topics_lifecycle(lb, topic):
    b = ("--bootstrap", lb.bootstrap)
    assert "created" in run("topics", "create", topic, "-p", "2", "-c", "retention.ms=3600000", *b).output
    again = run("topics", "create", topic, *b, ok=False)
    assert again.exit_code == 1 and "TOPIC_ALREADY_EXISTS" in again.output
    run("topics", "create", topic, "--if-not-exists", *b)
    assert topic in json.loads(run("topics", "list", "--format", "json", *b).output)
    run("topics", "alter", topic, "--partitions", "3", "-c", "retention.ms=7200000", *b)
    (described,) = json.loads(run("topics", "describe", topic, "--format", "json", *b).output)
    assert len(described["partitions"]) == 3 and described["configs"]["retention.ms"] == "7200000"
    text = run("topics", "describe", topic, *b).output
    assert topic in text and "retention.ms=7200000" in text
    assert "deleted" in run("topics", "delete", topic, *b).output
    assert run("topics", "delete", topic, *b, ok=False).exit_code == 1
    run("topics", "delete", topic, "--if-exists", *b)


def test_produce_then_consume_text_and_json(lb, topic):
    b = ("--bootstrap", lb.bootstrap)
    run("topics", "create", topic, "-p", "2", *b)
    lines = "".join(f"k{i % 2}:value {i}\n" for i in range(10))
    run("produce", topic, "-K", ":", "-H", "source=test", *b, input=lines)
    out = run("consume", topic, "--from-beginning", "-e", "--format", "json", *b).output
    records = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["value"] for r in records) == sorted(f"value {i}" for i in range(10))
    assert {r["key"] for r in records} == {"k0", "k1"}
    assert all(r["headers"] == [["source", "test"]] for r in records)
    by_key = {}
    for r in records:
        by_key.setdefault(r["key"], set()).add(r["partition"])
    assert all(len(p) == 1 for p in by_key.values())

    tomorrow = datetime.datetime.now(datetime.UTC).replace(microsecond=0) + datetime.timedelta(days=1)
    ts = int(tomorrow.timestamp() * 1000)
    json_lines = "\n".join([json.dumps({"value": "j1", "key": "a", "headers": {"h": "v"}, "partition": 1,
                                        "timestamp": ts}), json.dumps("plain")]) + "\n"
    summary = json.loads(run("produce", topic, "--format", "json", *b, input=json_lines).output)
    assert summary["records"] == 2 and "-1" not in summary["partitions"]
    out = run("consume", topic, "-p", "1", "--from-time", tomorrow.isoformat(), "-e", "--format", "json", *b).output
    first = json.loads(out.splitlines()[0])
    assert (first["value"], first["timestamp"], first["headers"]) == ("j1", ts, [["h", "v"]])

    text = run("consume", topic, "-p", "0", "--offset", "2", "-n", "2", "--print-offsets", *b).output
    assert text.splitlines()[0].startswith("0:2\t")
    assert len(text.splitlines()) == 2


def test_consume_with_a_group_commits_what_it_printed(lb, topic):
    b = ("--bootstrap", lb.bootstrap)
    run("produce", topic, "-p", "0", *b, input="".join(f"{i}\n" for i in range(8)))
    group = f"g-{topic}"
    first = run("consume", topic, "-g", group, "--from-beginning", "-n", "3", *b).output.split()
    assert first == ["0", "1", "2"]
    rest = run("consume", topic, "-g", group, "-e", *b).output.split()
    assert rest == ["3", "4", "5", "6", "7"]
    with SyncAdmin(lb.bootstrap) as admin:
        committed = admin.list_group_offsets(group, [topic], timeout=10)
    assert list(committed.values()) == [8]


def test_consume_stops_on_sigint_and_commits(lb, topic, tmp_path):
    """As a subprocess: Ctrl-C ends it cleanly and the printed records are committed."""
    b = ("--bootstrap", lb.bootstrap)
    run("produce", topic, "-p", "0", *b, input="".join(f"{i}\n" for i in range(5)))
    group = f"g-{topic}"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "logbroker", "consume", topic, "-g", group, "--from-beginning", *b],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        lines = []
        deadline = time.monotonic() + 30
        while len(lines) < 5 and time.monotonic() < deadline:
            lines.append(proc.stdout.readline().strip())
        assert lines == ["0", "1", "2", "3", "4"]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with SyncAdmin(lb.bootstrap) as admin:
        assert list(admin.list_group_offsets(group, [topic], timeout=10).values()) == [5]


def test_produce_subprocess_from_a_file_and_bad_input(lb, topic, tmp_path):
    path = tmp_path / "in.txt"
    path.write_text('"a"\n{"value": "b"}\n{"value": "c", "key": "k"}\n')
    done = subprocess.run([sys.executable, "-m", "logbroker", "produce", topic, "--file", str(path),
                           "--bootstrap", lb.bootstrap, "--format", "json"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] == 3
    bad = run("produce", topic, "--format", "json", "--bootstrap", lb.bootstrap, input="{not json\n", ok=False)
    assert bad.exit_code == 1 and "not JSON" in bad.output


@pytest.mark.parametrize("slow_call", [1, 2])
def test_consume_exit_at_end_survives_slow_fetches(lb, topic, monkeypatch, slow_call):
    """A fetch slower than the end check's 0.5 s neither crashes (the first)
    nor prints a record twice (a later one)."""
    import trio

    from logbroker.client import Consumer

    b = ("--bootstrap", lb.bootstrap)
    run("topics", "create", topic, "-p", "2", *b)
    run("produce", topic, "-K", ":", "--partition", "0", *b, input="alice:book\n")
    run("produce", topic, "-K", ":", "--partition", "1", *b, input="bob:pen\nalice:lamp\n")
    real = Consumer.getmany
    calls = {"n": 0}

    async def slow_getmany(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == slow_call:
            await trio.sleep(0.6)
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(Consumer, "getmany", slow_getmany)
    out = run("consume", topic, "--from-beginning", "--exit-at-end", "-K", ":", *b).output
    assert sorted(out.splitlines()) == ["alice:book", "alice:lamp", "bob:pen"]
    assert calls["n"] > slow_call
