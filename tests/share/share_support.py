"""Helpers for the share-group tests: a ShareConsumer subprocess, produce,
topic and group-config setup with confluent-kafka, waiting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

MEMBER = os.path.join(os.path.dirname(__file__), "share_member.py")
from brokerproc import wait_until as wait_until  # noqa: E402

LOCK_MS = 2000
"""The record lock of the interop tests' brokers."""


class ShareHarness:
    """Real request bytes through ``dispatch`` and back, without sockets.

    ``call`` encodes a request, dispatches it, completes a fetch operation
    (``final`` as given: False returns None while a ShareFetch would wait)
    and decodes the response. ``env`` is the test's ShareEnv.
    """

    def __init__(self, env) -> None:
        self.env = env
        self._correlation = 0

    @property
    def broker(self):
        return self.env.broker

    def req(self, api_key, version, class_name, /, **fields):
        from logbroker.broker.handlers._build import build
        from logbroker.protocol import request_module

        return build(getattr(request_module(api_key, version), class_name), **fields)

    def call(self, api_key: int, version: int, body_name: str, /, final: bool = True, **fields):
        from logbroker.broker.handlers import FetchOperation, Reply, dispatch
        from logbroker.protocol import decode_request, decode_response, encode_request, encode_response

        body = self.req(api_key, version, body_name, **fields)
        self._correlation += 1
        frame = encode_request(api_key, version, self._correlation, "test-client", body)
        request = decode_request(frame[4:])
        result = dispatch(self.broker, request)
        self.last_result = result
        if isinstance(result, FetchOperation):
            result = result.attempt(final=final)
            if result is None:
                return None
        if isinstance(result, Reply):
            result = result.body
        payload = b"".join(bytes(p) for p in encode_response(request, result))[4:]
        correlation, decoded = decode_response(api_key, version, payload)
        assert correlation == self._correlation
        return decoded




class ShareMemberProcess:
    """``share_member.py`` in a subprocess; ``got``/``acked`` fill from its stdout."""

    def __init__(self, bootstrap: str, group: str, topic: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, MEMBER, bootstrap, group, topic, *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.got: list[tuple[int, int, int, str]] = []
        self.acked: list[tuple[int, int, str]] = []
        self.events: list[dict] = []
        self.ready = threading.Event()
        self.closed = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)
                if "got" in event:
                    self.got.append(tuple(event["got"]))
                if "acked" in event:
                    self.acked.extend(tuple(a) for a in event["acked"])
            if "ready" in event:
                self.ready.set()
            if "closed" in event:
                self.closed.set()

    def values(self) -> list[str]:
        with self._lock:
            return [g[3] for g in self.got]

    def stop(self, timeout: float = 20.0) -> None:
        """Close the consumer cleanly (stdin closes) and wait."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: the consumer dies holding whatever it acquired."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def set_group_configs(bootstrap: str, group: str, **configs: str) -> None:
    """IncrementalAlterConfigs SET on the GROUP resource ``group`` (names with dots)."""
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType

    admin = AdminClient({"bootstrap.servers": bootstrap})
    entries = [
        ConfigEntry(name.replace("_", "."), value, incremental_operation=AlterConfigOpType.SET)
        for name, value in configs.items()
    ]
    resource = ConfigResource(ResourceType.GROUP, group, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(15)


def produce(bootstrap: str, topic: str, values: list[str], partitions: int = 1, batch: int = 10000) -> None:
    """Values round-robin over the partitions, at most ``batch`` records per batch."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "batch.num.messages": batch})
    for i, value in enumerate(values):
        producer.produce(topic, value=value.encode(), partition=i % partitions)
    assert producer.flush(15) == 0


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 20.0):
    """Every record of ``topic`` from the start with a classic consumer (no group)."""
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    partitions = list(meta.topics[topic].partitions)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    out = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            m = consumer.poll(0.2)
            if m is None or m.error():
                continue
            out.append(m)
    finally:
        consumer.close()
    return out
