"""Start and stop a real ``logbroker serve`` process for tests; the small
helpers the test support modules share."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid

_LISTENING = re.compile(r"listening on \S+:(\d+)")


def unique_topic(hint: str = "t") -> str:
    """A valid, unique topic name that still says which test made it."""
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", hint).strip("-.")[:80] or "t"
    return f"{base}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, message: str = "condition", *,
               what: str | None = None):
    """Call ``predicate`` until it returns a truthy value (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or message}")
        time.sleep(interval)


class BrokerProcess:
    """A ``logbroker serve`` subprocess on a free loopback port in ``data_dir``.

    ``preexec_fn`` runs in the child before exec (resource limits); ``port``
    is kept across restarts once bound. ``log_lines`` is this start's output,
    ``all_log_lines`` every start's; ``returncode`` how the last run exited.
    """

    def __init__(self, data_dir, *args: str, port: int = 0, preexec_fn=None, cwd: str | None = None) -> None:
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.port = port
        self.preexec_fn = preexec_fn
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.log_lines: list[str] = []
        self.all_log_lines: list[str] = []
        self.returncode: int | None = None
        self._pump: threading.Thread | None = None
        self._found = threading.Event()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(port={self.port}, running={self.running})"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def tail(self, n: int = 40) -> str:
        return "".join(self.log_lines[-n:])

    def spawn(self) -> None:
        """Start the process without waiting for it to listen."""
        cmd = [
            sys.executable, "-m", "logbroker", "serve",
            "--data-dir", self.data_dir, "--host", "127.0.0.1", "--port", str(self.port), *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env,
                                     preexec_fn=self.preexec_fn, cwd=self.cwd)
        self.returncode = None
        self.log_lines = []
        self._found = found = threading.Event()

        def pump(stream, lines):
            for line in stream:
                lines.append(line)
                self.all_log_lines.append(line)
                m = _LISTENING.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()

        self._pump = threading.Thread(target=pump, args=(self.proc.stderr, self.log_lines), daemon=True)
        self._pump.start()

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        """Start and wait until it listens; RuntimeError (with the log) if it does not."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while not self._found.wait(0.02):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                if self._pump is not None:
                    self._pump.join(2)
                raise RuntimeError(f"broker did not start (exit {self.returncode}):\n{self.log}")
        return self

    def start_expecting_failure(self, timeout: float = 30.0) -> tuple[int, str]:
        """Start a broker that should refuse to; returns (exit status, its output)."""
        self.spawn()
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"the broker did not exit within {timeout}s:\n{self.log}") from None
        self._pump.join(5)
        self.proc = None
        self.returncode = rc
        if any(_LISTENING.search(line) for line in self.log_lines):
            raise AssertionError(f"the broker started listening:\n{self.log}")
        return rc, self.log

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a graceful shutdown."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout)
            return self.returncode
        finally:
            if self._pump is not None:
                self._pump.join(5)
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: an unclean stop (a process crash)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.returncode = self.proc.wait()
            self.proc = None

    def restart(self, *, clean: bool = True) -> BrokerProcess:
        if clean:
            self.stop()
        else:
            self.kill()
        return self.start()
