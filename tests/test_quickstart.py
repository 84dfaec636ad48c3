"""docs/quickstart.md, followed word for word against a real ``logbroker serve``.

Every fenced ``sh`` and ``python`` block of the quickstart runs in order, as a
user runs it in the terminals the text names, in a temporary project
directory whose ``.venv/bin/logbroker`` runs this checkout (the test cannot
``pip install``; the ``export PATH=...`` line of the quickstart puts it on the
PATH). The only change to the text is the broker's address: the broker is the
quickstart's own ``.venv/bin/logbroker serve`` with ``LOGBROKER_PORT=0``, the
commands that rely on the default bootstrap get it from
``LOGBROKER_BOOTSTRAP``, and ``localhost:9092`` written out becomes
``localhost:PORT``. Commands that run until stopped run in the background and
are stopped with Ctrl-C (SIGINT) once their step was seen to work.

The shells and Python blocks run in a time zone five hours west of UTC, so a
time written in the wrong zone shows up wherever the test machine is.
"""

from __future__ import annotations

import collections
import dataclasses
import importlib.util
import os
import pathlib
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "docs" / "quickstart.md"
DEFAULT_ADDRESS = "localhost:9092"
TZ_WEST_OF_UTC = "QST+5"  # POSIX TZ: UTC-5, no tzdata needed
STEP_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True, slots=True)
class Block:
    section: str
    lang: str
    text: str

    @property
    def lines(self) -> list[str]:
        """The commands of a shell block (one a line; blank lines and comments dropped)."""
        return [line for line in self.text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def parse_blocks(markdown: str) -> list[Block]:
    """The fenced blocks of ``markdown`` with the ``##`` section each is in."""
    blocks, section, lang, body = [], "", None, []
    for line in markdown.splitlines():
        if lang is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif line.startswith("```"):
                lang, body = line[3:].strip(), []
        elif line.startswith("```"):
            blocks.append(Block(section, lang, "\n".join(body) + "\n"))
            lang = None
        else:
            body.append(line)
    assert lang is None, "unclosed fenced block"
    return blocks


class Output:
    """The lines a process writes to one stream, collected by a thread."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, predicate, what: str, timeout: float = STEP_TIMEOUT):
        """Wait until ``predicate(lines)`` is true; return its value. The predicate may look
        at other outputs too: it is also checked every 0.1 s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not (found := predicate(self.lines)):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}; output:\n{self.text}")
                self._changed.wait(min(left, 0.1))
        return found


def _terminal_signals() -> None:
    """In the child: Ctrl-C as in a terminal, even if pytest was started with SIGINT
    ignored (``pytest &`` in a script): Python then installs no KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Background:
    """A command that runs until stopped (a terminal of its own)."""

    def __init__(self, argv: list[str], **popen) -> None:
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True, preexec_fn=_terminal_signals, **popen)
        self.out = Output(self.proc.stdout)
        self.err = Output(self.proc.stderr)

    def __repr__(self) -> str:
        return f"Background({self.argv[-1]!r}, running={self.proc.poll() is None})"

    def ctrl_c(self, timeout: float = STEP_TIMEOUT) -> int:
        """SIGINT, as Ctrl-C in its terminal, and wait for it to exit."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.argv[-1]!r} did not stop on Ctrl-C; stdout:\n{self.out.text}\n"
                                 f"stderr:\n{self.err.text}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Quickstart:
    """The user's machine: a project directory, the shell state of its terminals,
    and the blocks of the quickstart, taken one at a time in order."""

    def __init__(self, project: pathlib.Path) -> None:
        self.project = project
        self.blocks = parse_blocks(QUICKSTART.read_text())
        self.next_index = 0
        self.exports: list[str] = []
        self.address = DEFAULT_ADDRESS
        self.running: list[Background] = []
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
        self.env.update(TZ=TZ_WEST_OF_UTC, PYTHONPATH=str(ROOT),
                        PYTHONUNBUFFERED="1")  # a terminal shows each line as it is printed
        venv_bin = project / ".venv" / "bin"
        venv_bin.mkdir(parents=True)
        shim = venv_bin / "logbroker"
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m logbroker "$@"\n')
        shim.chmod(0o755)

    # -- the blocks, in order

    def next_block(self, lang: str, section: str) -> Block:
        assert self.next_index < len(self.blocks), f"expected a {lang} block in {section!r}, the quickstart ended"
        block = self.blocks[self.next_index]
        assert (block.lang, block.section) == (lang, section), (
            f"block {self.next_index} is {block.lang} in {block.section!r}, expected {lang} in {section!r}:\n"
            f"{block.text}")
        self.next_index += 1
        return block

    def all_blocks_ran(self) -> None:
        rest = self.blocks[self.next_index:]
        assert not rest, f"blocks the test did not run: {rest}"

    # -- the address, the one substitution

    def use_broker(self, port: int) -> None:
        self.address = f"localhost:{port}"
        self.env["LOGBROKER_BOOTSTRAP"] = self.address

    def substitute(self, text: str) -> str:
        return text.replace(DEFAULT_ADDRESS, self.address)

    # -- shell commands

    def _script(self, line: str, *, exec_: bool = False) -> list[str]:
        body = "\n".join([*self.exports, ("exec " if exec_ else "") + self.substitute(line)])
        return ["bash", "-c", "set -e\n" + body]

    def sh(self, line: str, *, stdin: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
        """Run one command in a terminal of the project directory; it must succeed."""
        if line.startswith("export "):
            self.exports.append(line)
        done = subprocess.run(self._script(line), cwd=self.project, env={**self.env, **(env or {})},
                              input=stdin, capture_output=True, text=True, timeout=STEP_TIMEOUT)
        assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"{line!r}:\n{done.stderr}"
        return done

    def start(self, line: str, *, env: dict | None = None) -> Background:
        """Run a command that runs until stopped, in a terminal of its own."""
        proc = Background(self._script(line, exec_=True), cwd=self.project, env={**self.env, **(env or {})})
        self.running.append(proc)
        return proc

    # -- Python blocks

    def python(self, block: Block, run: str | None = None) -> subprocess.CompletedProcess:
        """Run a Python block as a file; ``run`` names the coroutine function a block only defines."""
        path = self._python_file(block, run)
        done = subprocess.run([sys.executable, str(path)], cwd=self.project, env=self.env,
                              capture_output=True, text=True, timeout=STEP_TIMEOUT)
        assert done.returncode == 0, f"{block.text}\nexited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        return done

    def start_python(self, block: Block, run: str) -> Background:
        proc = Background([sys.executable, str(self._python_file(block, run))], cwd=self.project, env=self.env)
        self.running.append(proc)
        return proc

    def _python_file(self, block: Block, run: str | None) -> pathlib.Path:
        code = self.substitute(block.text)
        if run is not None:
            assert f"async def {run}(" in code and "trio.run(" not in code, block.text
            code += f"\nimport trio\ntrio.run({run})\n"
        path = self.project / f"block{self.next_index}.py"
        path.write_text(code)
        return path

    def stop_all(self) -> None:
        for proc in self.running:
            proc.kill()


@pytest.fixture
def quickstart(tmp_path):
    qs = Quickstart(tmp_path / "project")
    yield qs
    qs.stop_all()


def _records(lines: list[str]) -> list[tuple[int, int, str, str]]:
    """``P:O<tab>KEY:VALUE`` lines -> (partition, offset, key, value)."""
    out = []
    for line in lines:
        position, _, record = line.partition("\t")
        partition, offset = position.split(":")
        key, value = record.split(":", 1)
        out.append((int(partition), int(offset), key, value))
    return out


def test_quickstart_runs_word_for_word(quickstart, broker_factory):
    qs = quickstart

    # ## 1. Install and start the broker (terminal 1)
    section = "1. Install and start the broker (terminal 1)"
    install = qs.next_block("sh", section).lines
    assert len(install) == 1
    steps = [step.strip() for step in install[0].split("&&")]
    # what CI does: the venv and `pip install .` are this test's environment
    assert steps == ["python3 -m venv .venv", ".venv/bin/pip install .", ".venv/bin/logbroker serve"], steps
    broker = qs.start(steps[2], env={"LOGBROKER_PORT": "0"})  # the only change: any free port for 9092
    listening = broker.err.wait_for(
        lambda lines: next((m for line in lines if (m := re.search(r"listening on (\S+):(\d+)", line))), None),
        "the broker to listen")
    assert listening.group(1) == "127.0.0.1"
    assert f"data directory {qs.project / 'logbroker-data'}" in broker.err.text
    qs.use_broker(int(listening.group(2)))

    # ## 2. Topics, produce, consume (terminal 2)
    section = "2. Topics, produce, consume (terminal 2)"
    export, create, produce, consume = qs.next_block("sh", section).lines
    assert export == 'export PATH="$PWD/.venv/bin:$PATH"'
    qs.sh(export)
    assert "orders" in qs.sh(create).stdout
    produced = qs.sh(produce)
    assert "produced 3 records to orders" in produced.stderr
    records = _records(qs.sh(consume).stdout.splitlines())
    assert sorted((key, value) for _, _, key, value in records) == [
        ("alice", "book"), ("alice", "lamp"), ("bob", "pen")]
    alice = [(p, o, v) for p, o, key, v in records if key == "alice"]
    assert alice[0][0] == alice[1][0], "the same key lands in the same partition"
    assert [v for _, _, v in sorted(alice)] == ["book", "lamp"], "in order"

    # ## 3. Replay history from an offset or a time
    section = "3. Replay history from an offset or a time"
    from_offset, from_time, from_end = qs.next_block("sh", section).lines
    assert qs.sh(from_offset).stdout.splitlines() == [v for p, o, _, v in sorted(records) if p == 0 and o >= 1]
    assert sorted(qs.sh(from_time).stdout.splitlines()) == ["book", "lamp", "pen"], "records of the last 5 minutes"
    last = {p: v for p, o, _, v in sorted(records)}  # the last record of each partition
    assert sorted(qs.sh(from_end).stdout.splitlines()) == sorted(last.values()), "-1: one back from each end"
    replay = qs.python(qs.next_block("python", section)).stdout.splitlines()
    assert sorted(replay) == sorted(f"{p} {o} {k.encode()!r} {v.encode()!r}" for p, o, k, v in records)

    # ## 4. A consumer group
    section = "4. A consumer group"
    (member,) = qs.next_block("sh", section).lines
    members = [qs.start(member), qs.start(member)]  # "Run this in two terminals"

    def printed_by_both(_=None) -> list[str]:
        return [line for m in members for line in m.out.lines]

    members[0].out.wait_for(lambda _: len(printed_by_both()) >= 3, "the group to print the 3 orders")
    list_, describe, reset = qs.next_block("sh", section).lines
    assert "billing" in qs.sh(list_).stdout

    def owned_by_each(described: str) -> list[list[str]]:
        return [re.findall(r"orders-(\d)", line) for line in described.splitlines()
                if line.startswith("logbroker-consume-")]

    # Until the second member's join has completed, describe can show two
    # members and no assignment yet.
    deadline = time.monotonic() + STEP_TIMEOUT
    while time.monotonic() < deadline:
        described = qs.sh(describe).stdout
        if ", 2 members" in described and all(owned_by_each(described)):
            break
        time.sleep(0.2)
    assert ", 2 members" in described, described
    owned = owned_by_each(described)
    assert len(owned) == 2 and all(owned), f"the partitions are split between the two:\n{described}"
    assert sorted(p for ps in owned for p in ps) == ["0", "1", "2"], described
    assert sorted(printed_by_both()) == ["book", "lamp", "pen"], "each order once"
    assert [m.ctrl_c() for m in members] == [0, 0]
    stopped = qs.sh(describe).stdout
    assert "total lag 0" in stopped, f"both committed what they printed:\n{stopped}"
    qs.sh(reset)  # "with the group stopped"
    assert "total lag 3" in qs.sh(describe).stdout

    # ## 5. A queue: each record to exactly one worker
    section = "5. A queue: each record to exactly one worker"
    create, worker, produce = qs.next_block("sh", section).lines
    qs.sh(create)
    workers = [qs.start(worker), qs.start(worker)]  # "in two terminals"
    # a new share group starts at the end of the log once a worker first asks for records
    broker.err.wait_for(lambda lines: any("share group workers: jobs-0 starts at" in line for line in lines),
                        "the queue workers to join")
    qs.sh(produce)
    workers[0].out.wait_for(lambda _: sum(len(w.out.lines) for w in workers) >= 3,
                            "the workers to print the 3 jobs")
    time.sleep(0.5)  # a record delivered twice would show up now
    jobs = collections.Counter(line for w in workers for line in w.out.lines)
    assert jobs == {"job-1": 1, "job-2": 1, "job-3": 1}, jobs
    assert [w.ctrl_c() for w in workers] == [0, 0]
    # the Python worker of the same group takes the next jobs
    qs.sh(produce)
    work = qs.start_python(qs.next_block("python", section), run="work")
    work.out.wait_for(lambda lines: len(lines) >= 3, "work() to print the 3 jobs")
    assert work.out.lines == ["b'job-1' 1", "b'job-2' 1", "b'job-3' 1"]
    work.ctrl_c()

    # ## 6. Request-reply
    section = "6. Request-reply"
    create, reply, request = qs.next_block("sh", section).lines
    qs.sh(create)
    responder = qs.start(reply)  # terminal 1
    responder.err.wait_for(lambda lines: any("answering requests on upper" in line for line in lines),
                           "the responder to start")
    assert qs.sh(request).stdout == "HELLO\n"  # terminal 2
    assert qs.python(qs.next_block("python", section), run="ask").stdout == "b'HELLO'\n"
    assert responder.ctrl_c() == 0

    # ## 7. The same with kafka-python
    section = "7. The same with kafka-python"
    (install,) = qs.next_block("sh", section).lines
    assert install == "pip install kafka-python"  # not run: the test extras have it
    assert importlib.util.find_spec("kafka") is not None
    printed = qs.python(qs.next_block("python", section)).stdout.splitlines()
    assert sorted(line.split(" ", 2)[2] for line in printed) == [
        "b'alice' b'book'", "b'alice' b'lamp'", "b'bob' b'pen'", "b'carol' b'mug'"]

    # ## Moving to a Kafka cluster later
    section = "Moving to a Kafka cluster later"
    (mirror,) = qs.next_block("sh", section).lines
    assert "--target" in qs.sh("logbroker mirror --help").stdout
    cluster = broker_factory()  # stands in for kafka-1.example:9092
    assert "--target kafka-1.example:9092" in mirror
    copied = qs.sh(mirror.replace("kafka-1.example:9092", cluster.bootstrap)).stdout
    assert copied.splitlines() == ["orders: 4 records", "jobs: 6 records"], copied
    on_cluster = qs.sh(consume, env={"LOGBROKER_BOOTSTRAP": cluster.bootstrap}).stdout
    assert sorted(_records(on_cluster.splitlines())) == sorted(
        _records(qs.sh(consume).stdout.splitlines())), "same partitions, keys and values"

    qs.all_blocks_ran()

    # "Stop it with Ctrl-C: it finishes in-flight requests, flushes and marks a clean shutdown."
    assert broker.ctrl_c() == 0
    assert "clean shutdown complete" in broker.err.text
