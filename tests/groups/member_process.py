"""Parent side of ``group_member.py``: start, watch, stop or SIGKILL one group member."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "group_member.py")
_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MemberProcess:
    """A group member in a subprocess; its events are collected by a reader thread."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str, *, name: str = "m", **extra) -> None:
        self.name = name
        spec = {"client": client, "bootstrap": bootstrap, "topic": topic, "group": group, **extra}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen(
            [sys.executable, _SCRIPT, json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=env,
        )
        self.parts: list[int] = []
        self.assignments: list[list[int]] = []  # every assignment it reported, in order
        self.records: list[tuple[int, int, str, float]] = []  # (partition, offset, value, time), in order
        self.committed: list[tuple[int, int, float]] = []  # (partition, offset, time) of successful commits
        self.failed: list[tuple[int, int, str]] = []
        self.closed = False
        self.stderr: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def __repr__(self) -> str:
        return f"MemberProcess({self.name}, parts={self.parts}, records={len(self.records)})"

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                kind = event["e"]
                if kind == "assign":
                    self.parts = event["parts"]
                    self.assignments.append(event["parts"])
                elif kind == "rec":
                    self.records.append((event["p"], event["o"], event["v"], event["t"]))
                elif kind == "ok":
                    self.committed.append((event["p"], event["o"], event["t"]))
                elif kind == "fail":
                    self.failed.append((event["p"], event["o"], event.get("error", "")))
                elif kind == "closed":
                    self.closed = True

    def _read_stderr(self) -> None:
        for line in self.proc.stderr:
            self.stderr.append(line)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """Ask it to close its consumer (leaving the group) and wait for it to exit."""
        if self.alive:
            try:
                self.proc.stdin.write("stop\n")
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"{self.name} did not stop in {timeout}s:\n{''.join(self.stderr[-20:])}")
        time.sleep(0.05)  # let the reader thread drain the last lines

    def kill(self) -> None:
        """SIGKILL: the member vanishes without leaving the group."""
        if self.alive:
            self.proc.kill()
        self.proc.wait()
        time.sleep(0.05)
