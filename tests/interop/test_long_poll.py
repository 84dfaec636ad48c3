"""A fetch waiting on a long fetch.max.wait is answered as soon as a record arrives.

The consumer is already polling (its Fetch is parked at the broker with a 5 s
max wait) when another thread produces one record; the time from the send call
to the consumer's receipt must stay under 100 ms. A broker that answers only
at the deadline would take seconds. The clients talk through the counting
``proxy``, which shows the consumer really was waiting on a parked Fetch (not
re-polling a broker that answers empty fetches at once).
"""

from __future__ import annotations

import threading
import time

import pytest

from interop_support import CLIENTS, consume, create_topic, make_consumer, make_producer

FETCH = 1
FETCH_MAX_WAIT_MS = 5000
LIMIT_S = 0.100
ROUNDS = 3


@pytest.mark.parametrize("client", CLIENTS)
def test_long_poll_delivers_within_100ms(proxy, topic, client):
    create_topic(proxy.bootstrap, topic, partitions=1)
    producer = make_producer(client, proxy.bootstrap, linger_ms=0)
    consumer = make_consumer(client, proxy.bootstrap, topic, fetch_max_wait_ms=FETCH_MAX_WAIT_MS)
    try:
        # Warm up both: connections, metadata, producer id, fetch position.
        producer.send_many(topic, [dict(key=b"warm", value=b"up", partition=0)])
        assert [r.offset for r in consume(consumer, 1)] == [0]

        latencies, idle_fetches = [], []
        for i in range(ROUNDS):
            sent_at: list[float] = []
            errors: list[BaseException] = []
            fetches_at_start = proxy.requests[FETCH]

            def send_later(i=i):
                time.sleep(0.4)  # the consumer's fetch is parked at the broker by now
                idle_fetches.append(proxy.requests[FETCH] - fetches_at_start)
                sent_at.append(time.monotonic())
                try:
                    producer.send_many(topic, [dict(key=b"k", value=b"round-%d" % i, partition=0)])
                except BaseException as exc:  # reported below
                    errors.append(exc)

            thread = threading.Thread(target=send_later)
            thread.start()
            got = []
            deadline = time.monotonic() + 8
            while not got and time.monotonic() < deadline:
                got = consumer.poll_once(2.0)
            received_at = time.monotonic()
            thread.join(10)
            assert not errors, errors
            assert [(r.offset, r.value) for r in got] == [(1 + i, b"round-%d" % i)]
            latencies.append(received_at - sent_at[0])
        assert max(latencies) < LIMIT_S, f"send-to-receipt latencies (s): {latencies}"
        # While idle for 0.4 s the consumer sent at most a couple of Fetches: they were parked.
        assert max(idle_fetches) <= 2, f"Fetch requests per 0.4 s idle window: {idle_fetches}"
    finally:
        consumer.close()
        producer.close()
