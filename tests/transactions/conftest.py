"""Fixtures for the transaction coordinator tests: a coordinator over a real
``__transaction_state`` in a temp dir, driven with explicit ``now_ms``;
``env.restart()`` reopens the log and replays it."""

from __future__ import annotations

import itertools
import os
import sys

import pytest

from logbroker.broker.transactions import TransactionConfig, TransactionCoordinator, TransactionStateTopic
from logbroker.storage import LogManager

sys.path.insert(0, os.path.dirname(__file__))


class TxnEnv:
    """A coordinator whose producer ids come from a counter (1000, 1001, ...)."""

    def __init__(self, data_dir, **config) -> None:
        self.data_dir = data_dir
        self.config = TransactionConfig(**config)
        self.ids = itertools.count(1000)
        self.manager: LogManager | None = None
        self.store: TransactionStateTopic | None = None
        self.coordinator: TransactionCoordinator | None = None
        self.allocate = lambda: next(self.ids)

    def open(self, now_ms: int = 0, *, load: bool = True) -> TransactionCoordinator:
        self.manager = LogManager(self.data_dir, now_ms=now_ms)
        self.store = TransactionStateTopic(self.manager)
        self.coordinator = TransactionCoordinator(
            self.config, self.store, lambda: self.allocate(), offsets_partition_for=lambda group: 0,
        )
        if load:
            self.coordinator.load(now_ms)
        return self.coordinator

    def restart(self, now_ms: int, **config) -> TransactionCoordinator:
        self.close()
        if config:
            self.config = TransactionConfig(**config)
        return self.open(now_ms)

    def close(self) -> None:
        if self.manager is not None:
            self.manager.close()
            self.manager = None


@pytest.fixture
def env(tmp_path):
    environment = TxnEnv(tmp_path / "data")
    yield environment
    environment.close()


@pytest.fixture
def coord(env):
    return env.open(0)


@pytest.fixture
def make_env(tmp_path):
    made = []

    def make(**config) -> TxnEnv:
        environment = TxnEnv(tmp_path / f"data{len(made)}", **config)
        made.append(environment)
        return environment

    yield make
    for environment in made:
        environment.close()
