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


def pytest_configure(config):
    # kafka-python loads its protocol schemas with deprecated importlib.resources calls.
    config.addinivalue_line("filterwarnings", "ignore:read_text is deprecated:DeprecationWarning")
    config.addinivalue_line("filterwarnings", "ignore:open_text is deprecated:DeprecationWarning")

_module_brokers: list[BrokerProcess] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Attach the tail of each module broker's log to a failed test's report."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and call.when == "call":
        for proc in _module_brokers:
            tail = "".join(proc.log_lines[-40:])
            report.sections.append((f"logbroker log, port {proc.port} (last 40 lines)", tail))


@pytest.fixture(scope="module")
def module_broker_factory(tmp_path_factory):
    """Like ``broker_factory``, but the brokers live until the end of the module."""
    started = []

    def start(*args: str):
        proc = BrokerProcess(tmp_path_factory.mktemp("broker"), *args)
        started.append(proc)
        _module_brokers.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.kill()
        _module_brokers.remove(proc)


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
