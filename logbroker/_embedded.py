"""Run a real broker inside the current process, for applications and tests.

``with embedded() as broker:`` runs it on a trio loop in a background thread;
``async with embedded() as broker:`` runs it as a task of the caller's trio
loop. Either way it listens on an ephemeral loopback port and, unless a
``data_dir`` is given, keeps its log in a temporary directory that is removed
on exit.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any

import trio

from logbroker.broker import BrokerConfig
from logbroker.errors import LogbrokerError
from logbroker.server import Server, serve

_START_TIMEOUT_S = 30.0


class EmbeddedBroker:
    """A running in-process broker: its address, topic creation and ``stop()``.

    Obtained from :func:`embedded`. ``bootstrap_servers`` is "127.0.0.1:PORT";
    ``schema_registry_url`` is "http://127.0.0.1:PORT" when started with
    ``schema_registry=True`` (else None), and ``console_url`` likewise with ``console=True``.
    """

    def __init__(self, server: Server, data_dir: str, *, call: Callable[..., Any]) -> None:
        self._server = server
        self._call = call
        self.data_dir = data_dir
        self.port = server.port
        self.bootstrap_servers = f"127.0.0.1:{server.port}"
        registry = server.schema_registry_port
        self.schema_registry_url = None if registry is None else f"http://127.0.0.1:{registry}"
        console = server.console_port
        self.console_url = None if console is None else f"http://127.0.0.1:{console}"
        self._stopped = False

    def __repr__(self) -> str:
        return f"EmbeddedBroker(bootstrap_servers={self.bootstrap_servers!r}, stopped={self._stopped})"

    def create_topic(self, name: str, partitions: int = 1, configs: dict[str, str] | None = None) -> None:
        """Create a topic (raises TopicExistsError, InvalidTopicError, InvalidConfigError)."""
        self._call(self._server.broker.create_topic, name, partitions, dict(configs or {}))

    def delete_topic(self, name: str) -> None:
        self._call(self._server.broker.delete_topic, name)

    def topics(self) -> list[str]:
        return sorted(self._call(self._server.broker.topics))

    def stop(self) -> None:
        """Shut down gracefully; idempotent."""
        if not self._stopped:
            self._stopped = True
            self._call(self._server.shutdown)


def _config(data_dir: str, port: int, settings: dict[str, Any]) -> BrokerConfig:
    if settings.pop("schema_registry", False):
        settings.setdefault("schema_registry_port", 0)
    if settings.pop("console", False):
        settings.setdefault("console_port", 0)
    names = set(BrokerConfig.field_names())
    unknown = set(settings) - names
    if unknown:
        raise LogbrokerError(f"unknown broker settings: {', '.join(sorted(unknown))}")
    return dataclasses.replace(BrokerConfig(), data_dir=data_dir, host="127.0.0.1", port=port, **settings)


class embedded:  # noqa: N801 - used like a function: ``with embedded() as b``
    """Context manager running a broker in this process (sync or async form).

    ``data_dir``: where the log lives (default: a temporary directory, removed
    on exit). ``port``: 0 picks a free port. ``schema_registry=True`` serves a
    schema registry on a free port (``schema_registry_url``), ``console=True``
    the web console (``console_url``). Other keyword
    arguments are :class:`BrokerConfig` fields, e.g. ``num_partitions=3``.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, port: int = 0, **settings: Any) -> None:
        self._data_dir = None if data_dir is None else os.fspath(data_dir)
        self._port = port
        self._settings = dict(settings)
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._temp: str | None = None
        self._async_cm: AbstractAsyncContextManager[EmbeddedBroker] | None = None
        self._broker: EmbeddedBroker | None = None
        self._error: BaseException | None = None

    def _prepare_dir(self) -> str:
        if self._data_dir is not None:
            return self._data_dir
        self._temp = tempfile.mkdtemp(prefix="logbroker-")
        return self._temp

    def _cleanup_dir(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
            self._temp = None

    # -- sync form: a trio loop in a background thread ------------------------

    def __enter__(self) -> EmbeddedBroker:
        config = _config(self._prepare_dir(), self._port, self._settings)
        ready: queue.Queue = queue.Queue()

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                try:
                    server = await nursery.start(serve, config)
                except BaseException as exc:
                    ready.put(exc)
                    raise
                ready.put(server)

        def run() -> None:
            try:
                trio.run(main)
            except BaseException as exc:  # reported to the caller of __enter__ or __exit__
                self._error = exc
                ready.put(exc)

        self._thread = threading.Thread(target=run, name="logbroker-embedded", daemon=True)
        self._thread.start()
        try:
            got = ready.get(timeout=_START_TIMEOUT_S)
        except queue.Empty:
            raise LogbrokerError("embedded broker did not start in time") from None
        if isinstance(got, BaseException):
            self._thread.join()
            self._cleanup_dir()
            raise LogbrokerError(f"embedded broker failed to start: {got}") from got

        def call(fn: Callable[..., Any], *args: Any) -> Any:
            return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

        self._broker = EmbeddedBroker(got, config.data_dir, call=call)
        return self._broker

    def __exit__(self, *exc_info: object) -> None:
        try:
            if self._broker is not None and self._thread is not None and self._thread.is_alive():
                try:
                    self._broker.stop()
                except trio.RunFinishedError:
                    pass
            if self._thread is not None:
                self._thread.join(_START_TIMEOUT_S)
        finally:
            self._cleanup_dir()

    # -- async form: a task in the caller's trio loop -------------------------

    async def __aenter__(self) -> EmbeddedBroker:
        self._async_cm = cm = self._run_async()
        return await cm.__aenter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        assert self._async_cm is not None, "__aexit__ without __aenter__"
        return await self._async_cm.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _run_async(self) -> AsyncIterator[EmbeddedBroker]:
        config = _config(self._prepare_dir(), self._port, self._settings)
        try:
            async with trio.open_nursery() as nursery:
                server = await nursery.start(serve, config)

                def call(fn: Callable[..., Any], *args: Any) -> Any:
                    return fn(*args)

                broker = EmbeddedBroker(server, config.data_dir, call=call)
                try:
                    yield broker
                finally:
                    broker.stop()
        finally:
            self._cleanup_dir()
