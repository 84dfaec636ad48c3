"""Fixtures for the client interop tests.

``tests/conftest.py`` gives a function-scoped ``broker`` and ``broker_factory``.
Most interop tests do not interfere with each other (each uses its own topic),
so ``module_broker`` shares one ``logbroker serve`` process per test module.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from brokerproc import BrokerProcess  # noqa: E402
from interop_support import unique_topic  # noqa: E402

# TEMPORARY: INTEROP_TARGET=tansu runs the suite against Tansu (in-memory) to validate
# the tests' own logic while logbroker is unfinished. Removed before hand-off.
if os.environ.get("INTEROP_TARGET") == "tansu":
    from tansuproc import TansuProcess as BrokerProcess  # noqa: F811,E402

    @pytest.fixture
    def broker_factory(tmp_path):
        started = []

        def start(*args, data_dir=None):
            proc = BrokerProcess(data_dir or tmp_path / f"data{len(started)}", *args)
            started.append(proc)
            return proc.start()

        yield start
        for proc in started:
            proc.kill()

    @pytest.fixture
    def broker(broker_factory):
        return broker_factory()


@pytest.fixture(scope="module")
def module_broker_factory(tmp_path_factory):
    """Like ``broker_factory``, but the brokers live until the end of the module."""
    started = []

    def start(*args: str):
        proc = BrokerProcess(tmp_path_factory.mktemp("broker"), *args)
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()


@pytest.fixture(scope="module")
def module_broker(module_broker_factory):
    """One default ``logbroker serve`` shared by every test of a module."""
    return module_broker_factory()


@pytest.fixture(scope="module")
def proxy(module_broker_factory):
    """A ``DropProxy`` in front of a module-scoped broker that advertises the proxy's port."""
    from kafka_proxy import DropProxy

    proxy = DropProxy()
    broker = module_broker_factory("--advertised-port", str(proxy.port))
    proxy.target = ("127.0.0.1", broker.port)
    yield proxy
    proxy.close()


@pytest.fixture
def topic(request):
    """A topic name unique to this test (the topic itself is not created)."""
    return unique_topic(request.node.name)
