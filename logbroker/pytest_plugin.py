"""pytest plugin: a real Kafka-compatible broker for every test session.

Active once logbroker is installed (entry point ``pytest11``). Fixtures:

* ``logbroker_broker``: one in-process broker per test session (EmbeddedBroker);
* ``logbroker_bootstrap``: its address, "127.0.0.1:PORT";
* ``logbroker_topic``: a fresh, uniquely named topic per test, deleted afterwards;
* ``logbroker_schema_registry``: the URL of the session broker's schema registry
  (Confluent's API), for ``SchemaRegistryClient({"url": ...})``.

Options: ``--logbroker-data-dir DIR`` keeps the log there instead of a temp
dir; ``--logbroker-keep`` leaves the data on disk after the session.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from logbroker._embedded import EmbeddedBroker


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("logbroker", "embedded Kafka-compatible broker")
    group.addoption("--logbroker-data-dir", default=None, help="Data directory of the session's broker.")
    group.addoption(
        "--logbroker-keep", action="store_true", default=False,
        help="Keep the broker's data directory after the session (its path is printed).",
    )


@pytest.fixture(scope="session")
def logbroker_broker(request: pytest.FixtureRequest) -> Iterator[EmbeddedBroker]:
    """A broker running in this process for the whole test session."""
    from logbroker._embedded import embedded

    data_dir = request.config.getoption("--logbroker-data-dir")
    keep = request.config.getoption("--logbroker-keep")
    made = None
    if data_dir is None and keep:
        data_dir = made = tempfile.mkdtemp(prefix="logbroker-pytest-")
    with embedded(data_dir=data_dir, schema_registry=True) as broker:
        yield broker
    if keep:
        print(f"\nlogbroker data kept in {broker.data_dir}")
    elif made is not None:
        shutil.rmtree(made, ignore_errors=True)


@pytest.fixture(scope="session")
def logbroker_bootstrap(logbroker_broker: EmbeddedBroker) -> str:
    """The session broker's address for ``bootstrap_servers``."""
    return logbroker_broker.bootstrap_servers


@pytest.fixture(scope="session")
def logbroker_schema_registry(logbroker_broker: EmbeddedBroker) -> str:
    """The session broker's schema registry, "http://127.0.0.1:PORT" (subjects
    live for the whole session: name them after ``logbroker_topic``)."""
    assert logbroker_broker.schema_registry_url is not None  # the session broker always serves one
    return logbroker_broker.schema_registry_url


@pytest.fixture
def logbroker_topic(logbroker_broker: EmbeddedBroker, request: pytest.FixtureRequest) -> Iterator[str]:
    """A new topic for this test only (1 partition; mark a test with
    ``@pytest.mark.logbroker_topic(partitions=3, configs={...})`` for others)."""
    marker = request.node.get_closest_marker("logbroker_topic")
    options = dict(marker.kwargs) if marker else {}
    stem = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:180]
    name = f"{stem}-{uuid.uuid4().hex[:8]}"
    logbroker_broker.create_topic(name, options.get("partitions", 1), options.get("configs"))
    yield name
    try:
        logbroker_broker.delete_topic(name)
    except Exception:  # the test may have deleted it itself
        pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "logbroker_topic(partitions=1, configs=None): settings of the logbroker_topic fixture"
    )
