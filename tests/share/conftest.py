"""Fixtures for the share-group tests.

Unit tests drive a real :class:`~logbroker.broker.Broker` in a temp dir
(``env``): its share coordinator with explicit ``now_ms``, topics filled with
batches built here, and ``reopen()`` to replay the internal topic. Handler
tests use the broker Harness with real request bytes (``make_harness``).
Interop tests use ``share_broker``: one ``logbroker serve`` per module with
a 2 s record lock.
"""

from __future__ import annotations

import os
import sys
import uuid

import pytest

from logbroker.broker import Broker, BrokerConfig
from logbroker.records import BatchBuilder

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

from brokerproc import BrokerProcess  # noqa: E402
from share_support import LOCK_MS  # noqa: E402


class ShareEnv:
    """A broker in ``data_dir`` whose share coordinator the test drives with explicit time."""

    def __init__(self, data_dir, **settings) -> None:
        self.data_dir = str(data_dir)
        self.settings = {"group_share_record_lock_duration_ms": 1000, **settings}
        self.broker = Broker(BrokerConfig(data_dir=self.data_dir, **self.settings))

    @property
    def share(self):
        return self.broker.share

    def topic(self, name: str, partitions: int = 1) -> str:
        self.broker.create_topic(name, partitions)
        return name

    def produce(self, topic: str, values: list[str], partition: int = 0, *, per_batch: int | None = None) -> list[int]:
        """Append ``values`` as batches of ``per_batch`` records (default: one batch); returns base offsets."""
        per_batch = per_batch or max(len(values), 1)
        bases = []
        for i in range(0, len(values), per_batch):
            builder = BatchBuilder()
            for value in values[i : i + per_batch]:
                builder.append(value.encode(), timestamp_ms=1000)
            bases.append(self.broker.append(topic, partition, builder.build()).base_offset)
        return bases

    def reopen(self) -> ShareEnv:
        self.broker.close()
        self.broker = Broker(BrokerConfig(data_dir=self.data_dir, **self.settings))
        return self

    def close(self) -> None:
        self.broker.close()


@pytest.fixture
def env(tmp_path):
    environment = ShareEnv(tmp_path / "data")
    yield environment
    environment.close()


@pytest.fixture
def make_env(tmp_path):
    made = []

    def make(**settings) -> ShareEnv:
        environment = ShareEnv(tmp_path / f"data{len(made)}", **settings)
        made.append(environment)
        return environment

    yield make
    for environment in made:
        try:
            environment.close()
        except Exception:
            pass


@pytest.fixture
def make_harness(make_env):
    """A ShareHarness over a fresh ShareEnv's broker."""
    from share_support import ShareHarness

    def make(**settings):
        environment = make_env(**settings)
        return ShareHarness(environment)

    return make


@pytest.fixture(scope="module")
def share_broker(tmp_path_factory):
    """One ``logbroker serve`` for a module, record lock 2 s."""
    data = tmp_path_factory.mktemp("share-broker")
    config = data / "broker.toml"
    config.write_text(f"group_share_record_lock_duration_ms = {LOCK_MS}\n")
    proc = BrokerProcess(data / "data", "--config", str(config))
    proc.start()
    yield proc
    proc.kill()


@pytest.fixture
def names():
    def make(what: str) -> tuple[str, str]:
        suffix = uuid.uuid4().hex[:6]
        return f"{what}-{suffix}", f"group-{what}-{suffix}"

    return make
