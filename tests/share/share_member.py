"""One confluent-kafka ShareConsumer in its own process, for the interop tests.

Usage: share_member.py BOOTSTRAP GROUP TOPIC [--hold] [--reject V,...] [--release V,...]
                       [--max-records N] [--sleep SECONDS]

Explicit acknowledgement mode. Every record polled is reported on stdout as
a JSON line ``{"got": [partition, offset, delivery_count, value]}``; then it
is acknowledged: REJECT if its value is listed in ``--reject``, RELEASE if in
``--release``, else ACCEPT, and ``commit_sync`` runs after each poll. Records
whose commit succeeded are reported as ``{"acked": [[partition, offset, type], ...]}``.
With ``--hold`` the first records polled are held unacknowledged and the
process polls no more (the test kills it).
The process exits on SIGTERM (closing the consumer) or when stdin closes.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

from confluent_kafka import AcknowledgeType, ShareConsumer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bootstrap")
    parser.add_argument("group")
    parser.add_argument("topic")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--reject", default="")
    parser.add_argument("--release", default="")
    parser.add_argument("--max-records", type=int, default=500, help="max.poll.records")
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds of 'work' after each poll")
    args = parser.parse_args()
    reject = set(filter(None, args.reject.split(",")))
    release = set(filter(None, args.release.split(",")))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()

    consumer = ShareConsumer({
        "bootstrap.servers": args.bootstrap,
        "group.id": args.group,
        "share.acknowledgement.mode": "explicit",
        "fetch.wait.max.ms": 100,
        "max.poll.records": args.max_records,
    })
    consumer.subscribe([args.topic])
    emit({"ready": True})
    try:
        while not stop.is_set():
            messages = consumer.poll(0.2)
            pending = []
            for m in messages:
                if m.error():
                    emit({"error": str(m.error())})
                    continue
                value = m.value().decode()
                emit({"got": [m.partition(), m.offset(), m.delivery_count(), value]})
                if args.hold:  # explicit mode refuses another poll before the acknowledgements
                    continue
                kind = "reject" if value in reject else "release" if value in release else "accept"
                ack = {"reject": AcknowledgeType.REJECT, "release": AcknowledgeType.RELEASE}.get(kind, AcknowledgeType.ACCEPT)
                consumer.acknowledge(m, ack)
                pending.append((m.partition(), m.offset(), kind))
            if args.hold and messages:
                emit({"holding": len(messages)})
                stop.wait()
                break
            if pending and args.sleep:
                time.sleep(args.sleep)
            if pending:
                results = consumer.commit_sync(10)
                failed = {tp.partition for tp, exc in (results or {}).items() if exc is not None}
                ok = [p for p in pending if p[0] not in failed]
                if failed:
                    emit({"commit_failed": sorted(failed)})
                if ok:
                    emit({"acked": ok})
    finally:
        consumer.close()
        emit({"closed": True})


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
