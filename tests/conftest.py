import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from brokerproc import BrokerProcess  # noqa: E402


@pytest.fixture
def broker_factory(tmp_path):
    """Start brokers in temp dirs; all are stopped at the end of the test."""
    started: list[BrokerProcess] = []

    def start(*args: str, data_dir=None) -> BrokerProcess:
        proc = BrokerProcess(data_dir or tmp_path / f"data{len(started)}", *args)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture
def broker(broker_factory):
    """One running broker with default settings."""
    return broker_factory()
