"""Fixtures for the group tests (helpers live in ``group_support``).

Unit tests drive a coordinator directly with explicit ``now_ms`` over a real
internal topic in a temp dir (``env``/``coord``), or the handlers with real
request bytes (``make_harness``). Interop tests use ``group_broker`` (a
module-scoped ``logbroker serve``).
"""

from __future__ import annotations

import os
import sys

import pytest

from logbroker.broker import Broker, BrokerConfig

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "interop"))

from brokerproc import BrokerProcess  # noqa: E402
from group_support import CoordinatorEnv, GroupHarness  # noqa: E402


@pytest.fixture
def env(tmp_path):
    environment = CoordinatorEnv(tmp_path / "data", initial_rebalance_delay_ms=100)
    yield environment
    environment.close()


@pytest.fixture
def coord(env):
    return env.open(0)


@pytest.fixture
def make_harness(tmp_path):
    brokers = []

    def make(clock=None, **settings) -> GroupHarness:
        settings.setdefault("data_dir", str(tmp_path / f"data{len(brokers)}"))
        broker = Broker(BrokerConfig(**settings), **({"clock": clock} if clock else {}))
        brokers.append(broker)
        return GroupHarness(broker)

    yield make
    for b in brokers:
        try:
            b.close()
        except Exception:
            pass


@pytest.fixture(scope="module")
def group_broker(tmp_path_factory):
    """One ``logbroker serve`` shared by the interop tests of a module."""
    proc = BrokerProcess(tmp_path_factory.mktemp("broker")).start()
    yield proc
    proc.kill()
