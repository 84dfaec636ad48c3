"""Hypothesis-driven random and mutated frames against a live broker.

A module-scoped broker first serves real kafka-python and confluent-kafka
workloads through a recording proxy (``tools/fuzz_broker.py``), which gives a
corpus of genuine requests. Hypothesis then draws inputs of the same families
as the long fuzzer (random bytes, random frames, valid headers with random
bodies, mutated / truncated / spliced / pipelined captured requests, length
prefixes that lie), each sent on a fresh connection whose write side is then
shut. Every input must be answered or the connection closed within a few
seconds (only long-poll APIs may wait longer), the broker must stay up, and
afterwards a normal client must still produce and consume. CreateTopics and
CreatePartitions are left out (a mutated partition count exhausts file
descriptors: a known bug, tested deterministically in test_resource_limits.py).

``test_fuzzed_requests_cause_no_internal_error`` is stricter: a request the
broker decodes must not make a handler fail (logged as ``handler for API key
... failed`` with a traceback); bad input should be refused by the protocol
layer or answered with an error code.

``LOGBROKER_FAULT_ITERATIONS`` scales the number of examples (default 300).
``tools/fuzz_broker.py`` is the long (100,000-input) version.
"""

from __future__ import annotations

import importlib.util
import random
import struct
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fault_support import ITERATIONS, REPO, FaultBroker, summary

_spec = importlib.util.spec_from_file_location("fuzz_broker", REPO / "tools" / "fuzz_broker.py")
fz = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("fuzz_broker", fz)
_spec.loader.exec_module(fz)

EXAMPLES = ITERATIONS * 25 if ITERATIONS else 300
EXCLUDED_APIS = {19, 37}  # CreateTopics, CreatePartitions: see the live fixture
TIMEOUT = 4.0


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(broker, proxy, corpus, served versions)."""
    proxy = fz.RecordingProxy()
    broker = FaultBroker(tmp_path_factory.mktemp("fuzz"), "--advertised-port", str(proxy.port)).start()
    proxy.start(broker.port)
    try:
        from fault_support import create_topic

        create_topic(proxy_bootstrap(proxy), "fuzz", 3)
        errors: list[str] = []
        corpus = fz.capture_corpus(proxy, errors=errors)
        assert len(corpus) >= 30, f"captured only {len(corpus)} requests: {errors}"
        # CreateTopics/CreatePartitions with a mutated count can ask for 100,000 partitions,
        # which exhausts file descriptors: a known bug with its own deterministic test
        # (test_resource_limits.py); keeping them here would make this test fail at random.
        corpus = [f for f in corpus if fz.header_of(f)[0] not in EXCLUDED_APIS]
        served = {k: v for k, v in fz.api_versions(broker.port).items() if k not in EXCLUDED_APIS}
        yield broker, proxy, corpus, served
    finally:
        proxy.close()
        broker.kill()


def proxy_bootstrap(proxy) -> str:
    return f"127.0.0.1:{proxy.port}"


def _frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


_PACK = {2: ">h", 4: ">i", 8: ">q"}
_VALUES = {2: fz.INTERESTING_16, 4: fz.INTERESTING_32, 8: fz.INTERESTING_64}


def _apply(body: bytes, ops) -> bytes:
    """Shrinkable mutations: (kind, position, value index)."""
    buf = bytearray(body)
    for kind, pos, k in ops:
        if not buf:
            break
        pos %= len(buf)
        if kind == "flip":
            buf[pos] ^= 1 << (k % 8)
        elif kind == "byte":
            buf[pos] = fz.INTERESTING_8[k % len(fz.INTERESTING_8)]
        elif kind in ("i16", "i32", "i64"):
            size = {"i16": 2, "i32": 4, "i64": 8}[kind]
            if len(buf) >= size:
                pos = min(pos, len(buf) - size)
                values = _VALUES[size]
                struct.pack_into(_PACK[size], buf, pos, values[k % len(values)])
        elif kind == "insert":
            buf[pos:pos] = bytes([k % 256]) * (1 + k % 7)
        elif kind == "delete":
            del buf[pos:pos + 1 + k % 16]
    return bytes(buf)


_OPS = st.lists(
    st.tuples(st.sampled_from(["flip", "byte", "i16", "i32", "i64", "insert", "delete"]),
              st.integers(0, 1 << 16), st.integers(0, 255)),
    min_size=1, max_size=4,
)


@st.composite
def bad_inputs(draw, corpus, served):
    family = draw(st.sampled_from(fz.FAMILIES + ("havoc",)))
    if family == "random_bytes":
        return family, draw(st.binary(max_size=600))
    if family == "random_frame":
        return family, _frame(draw(st.binary(max_size=400)))
    if family == "random_header":
        other_keys = st.integers(-3, 90).filter(lambda k: k not in EXCLUDED_APIS)
        key = draw(st.one_of(st.sampled_from(sorted(served)), other_keys))
        lo, hi = served.get(key, (0, 3))
        version = draw(st.one_of(st.integers(lo, hi), st.integers(-2, 20)))
        client = draw(st.binary(max_size=20))
        header = struct.pack(">hhih", key, version, draw(st.integers(-2**31, 2**31 - 1)), len(client)) + client
        if draw(st.booleans()):
            header += b"\x00"
        return family, _frame(header + draw(st.binary(max_size=300)))
    frame = draw(st.sampled_from(corpus))
    body = frame[4:]
    if family == "mutated":
        new = _apply(body, draw(_OPS))
        return family, _frame(new) if draw(st.integers(0, 9)) else frame[:4] + new
    if family == "havoc":
        return family, _frame(fz.mutate_body(body, random.Random(draw(st.integers(0, 2**32)))))
    if family == "truncated":
        cut = draw(st.integers(0, max(len(body) - 1, 0)))
        return family, frame[:4 + cut] if draw(st.booleans()) else _frame(body[:cut])
    if family == "spliced":
        other = draw(st.sampled_from(corpus))[4:]
        return family, _frame(body[:draw(st.integers(0, len(body)))] + other[draw(st.integers(0, len(other))):])
    if family == "length_lies":
        size = draw(st.sampled_from([-1, -2**31, 0, 1, 3, len(body) + 1, len(body) + 100, 2**31 - 1,
                                     100 * 1024 * 1024 + 1, max(len(body) - 1, 0)]))
        return family, struct.pack(">i", size) + body
    parts = [draw(st.sampled_from(corpus)) for _ in range(draw(st.integers(2, 5)))]
    parts = [p if draw(st.booleans()) else _frame(_apply(p[4:], draw(_OPS))) for p in parts]
    return "pipelined", b"".join(parts)


def _check_one(broker, data: bytes) -> str:
    outcome, _ = fz.probe(broker.port, data, TIMEOUT)
    head = fz.header_of(data)
    if outcome in ("hung", "answered_open") and head is not None and head[0] in fz.WAITING_APIS:
        outcome = "waited"  # a long poll (Fetch max_wait, JoinGroup/SyncGroup) may legitimately wait
    assert outcome != "hung", f"no answer and no close within {TIMEOUT}s for {data[:120]!r}..."
    assert outcome != "refused" and broker.running, f"the broker died:\n{broker.tail(30)}"
    return outcome


def test_fuzzed_input_is_answered_or_closed_and_broker_survives(live):
    broker, proxy, corpus, served = live
    outcomes: dict[str, int] = {}
    families: dict[str, int] = {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=False,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(bad_inputs(corpus, served))
    def one(item):
        family, data = item
        outcome = _check_one(broker, data)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        families[family] = families.get(family, 0) + 1

    started = time.monotonic()
    one()
    assert broker.running, f"the broker died:\n{broker.tail(30)}"
    fz.api_versions(broker.port)
    ok, detail = fz.client_works(proxy_bootstrap(proxy))
    assert ok, f"a normal client no longer works after fuzzing: {detail}"
    errors, samples = fz.handler_errors(broker.log_lines)
    summary("fuzz_live", inputs=sum(outcomes.values()), outcomes=outcomes, families=families,
            corpus=len(corpus), handler_errors=errors, handler_error_samples=samples[:5],
            seconds=round(time.monotonic() - started, 1))


def test_fuzzed_requests_cause_no_internal_error(live):
    """Decodable but wrong requests (null arrays, absurd numbers...) must not make a
    handler raise: the broker should answer with an error code or refuse the frame
    in the protocol layer, not log a traceback per request."""
    broker, proxy, corpus, served = live

    @settings(max_examples=max(EXAMPLES * 2 // 3, 50), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.sampled_from(corpus), _OPS)
    def one(frame, ops):
        before = len(broker.log_lines)
        data = _frame(_apply(frame[4:], ops))
        _check_one(broker, data)
        time.sleep(0.01)  # let the log pump catch up
        new = "".join(broker.log_lines[before:])
        assert "handler for API key" not in new, (
            f"request {fz.header_of(data)} made a handler fail:\n{new[-1500:]}"
        )

    one()


def _fetch_v4(topics: list[bytes], max_wait_ms: int) -> bytes:
    """Fetch v4 (header v1): replica -1, max_wait, min_bytes 1, partition 0 of each topic at offset 0."""
    body = struct.pack(">hhih", 1, 4, 42, 4) + b"fuzz" + struct.pack(">iiiib", -1, max_wait_ms, 1, 1 << 20, 0)
    body += struct.pack(">i", len(topics))
    for name in topics:
        body += struct.pack(">h", len(name)) + name + struct.pack(">i", 1) + struct.pack(">iqi", 0, 0, 1 << 20)
    return _frame(body)


@pytest.mark.parametrize("topics", [[b"waiting"], []], ids=["one-partition", "no-partitions"])
def test_sigterm_is_prompt_while_a_fetch_long_polls(fault_broker, topics):
    """Found by tools/fuzz_broker.py: a mutated Fetch kept a graceful shutdown waiting.
    A Fetch that long-polls (min_bytes 1, max_wait 10 min) must not hold up SIGTERM,
    whatever partitions it watches, even none."""
    from fault_support import create_topic

    broker = fault_broker()
    create_topic(broker.bootstrap, "waiting", 1)
    import socket

    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(_fetch_v4(topics, 600_000))
        time.sleep(0.3)
        started = time.monotonic()
        rc = broker.stop(timeout=60)
        took = time.monotonic() - started
    assert rc == 0
    assert took < 5, f"SIGTERM took {took:.1f}s with a long-polling Fetch watching {topics}"
