"""Start and stop a real ``logbroker serve`` process for tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time

_LISTENING = re.compile(r"listening on \S+:(\d+)")


class BrokerProcess:
    """A ``logbroker serve`` subprocess on a free loopback port in ``data_dir``."""

    def __init__(self, data_dir: str, *args: str, port: int = 0) -> None:
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.port = port
        self.proc: subprocess.Popen | None = None
        self.log_lines: list[str] = []

    def __repr__(self) -> str:
        return f"BrokerProcess(port={self.port}, running={self.running})"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self) -> str:
        return "".join(self.log_lines)

    def start(self, timeout: float = 30.0) -> BrokerProcess:
        cmd = [
            sys.executable, "-m", "logbroker", "serve",
            "--data-dir", self.data_dir, "--host", "127.0.0.1", "--port", str(self.port), *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGBROKER_")}
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
        found = threading.Event()

        def pump(stream, lines):
            for line in stream:
                lines.append(line)
                m = _LISTENING.search(line)
                if m and not found.is_set():
                    self.port = int(m.group(1))
                    found.set()

        self.log_lines = []
        threading.Thread(target=pump, args=(self.proc.stderr, self.log_lines), daemon=True).start()
        deadline = time.monotonic() + timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"broker did not start:\n{self.log}")
        return self

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: a graceful shutdown."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def kill(self) -> None:
        """SIGKILL: an unclean stop."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self, *, clean: bool = True) -> BrokerProcess:
        if clean:
            self.stop()
        else:
            self.kill()
        return self.start()
