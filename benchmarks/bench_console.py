"""The web console on a large topic: how long the broker takes to render the
message browser's first 100 records, and what 10 open live tails cost.

A ``logbroker serve`` with ``console_port = 0`` gets a topic of
``--records`` (1,000,000) records of 100 bytes in 6 partitions, produced
with the bulk API. Then:

* ``browse_ms``: the page ``/topics/T?limit=100`` (newest 100 of all
  partitions), ``browse_offset_ms``: 100 records from the middle of
  partition 0 (``mode=offset``), and ``browse_time_ms``: from a timestamp
  (``mode=time``): each the median of ``--repeat`` requests, timed by the
  client from request to last byte (so it includes HTTP and rendering);
  ``server_ms``: the time the page itself reports for reading the records.
  Target: ``browse_ms`` < 100.
* ``tails``: 10 live tails (server-sent event streams) open while 1,000 more
  records arrive; the broker's resident memory before and with them
  (``rss_mib_before``, ``rss_mib_with_tails``), and whether every tail saw
  every record.

Prints one JSON object on stdout; progress goes to stderr.

    python benchmarks/bench_console.py [--records N] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import shutil
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import LogbrokerProcess  # noqa: E402

_CONSOLE = re.compile(r"console on http://\S+:(\d+)/")
_SERVER_MS = re.compile(r"records in ([\d.]+) ms")
TOPIC = "console-bench"


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _get(url: str) -> tuple[float, str]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as response:
        body = response.read().decode()
    return (time.perf_counter() - started) * 1000, body


def _timed(url: str, repeat: int) -> tuple[float, float]:
    client, server = [], []
    _get(url)  # warm: first touch of the index pages
    for _ in range(repeat):
        ms, body = _get(url)
        client.append(ms)
        found = _SERVER_MS.search(body)
        server.append(float(found.group(1)) if found else -1.0)
    return round(statistics.median(client), 2), round(statistics.median(server), 2)


def _fill(bootstrap: str, records: int) -> int:
    import numpy as np
    import trio

    from logbroker.client import Admin, Producer

    async def main() -> int:
        async with Admin(bootstrap) as admin:
            await admin.create_topic(TOPIC, 6)
        rows = np.frombuffer(os.urandom(100 * 10_000), np.uint8).reshape(-1, 100)
        middle_ts = 0
        async with Producer(bootstrap, linger_ms=5) as producer:
            for i in range(0, records, 10_000):
                if i == records // 2:
                    middle_ts = int(time.time() * 1000)
                await producer.send_many(TOPIC, rows[: min(10_000, records - i)])
            await producer.flush()
        return middle_ts

    return trio.run(main)


def _tail(url: str, want: int, seen: list[int], ready: threading.Event) -> None:
    host, port = re.match(r"http://([^:/]+):(\d+)", url).groups()
    path = url.split(port, 1)[1]
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode())
        buf = b""
        count = 0
        ready.set()
        deadline = time.monotonic() + 60
        while count < want and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            count = buf.count(b"\ndata: ") + buf.startswith(b"data: ")
        seen.append(count)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    workdir = tempfile.mkdtemp(prefix="bench-console-")
    config = os.path.join(workdir, "console.toml")
    with open(config, "w") as f:
        f.write("console_port = 0\n")
    with LogbrokerProcess(os.path.join(workdir, "broker"), "--config", config) as broker:
        deadline = time.monotonic() + 30
        while _CONSOLE.search(broker.log()) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(_CONSOLE.search(broker.log()).group(1))
        base = f"http://127.0.0.1:{port}"
        print(f"filling {args.records} records", file=sys.stderr)
        middle_ts = _fill(broker.bootstrap, args.records)
        result: dict[str, object] = {"records": args.records, "repeat": args.repeat}
        result["browse_ms"], result["server_ms"] = _timed(f"{base}/topics/{TOPIC}?limit=100", args.repeat)
        middle = args.records // 12
        result["browse_offset_ms"], result["server_offset_ms"] = _timed(
            f"{base}/topics/{TOPIC}?partition=0&mode=offset&offset={middle}&limit=100", args.repeat)
        result["browse_time_ms"], result["server_time_ms"] = _timed(
            f"{base}/topics/{TOPIC}?mode=time&time={middle_ts}&limit=100", args.repeat)
        result["browse_target_met"] = result["browse_ms"] < 100

        pid = broker.pid
        assert pid is not None
        result["rss_mib_before"] = round(_rss_mib(pid), 1)
        seen: list[int] = []
        threads = []
        for _ in range(10):
            ready = threading.Event()
            thread = threading.Thread(target=_tail, args=(f"{base}/topics/{TOPIC}/tail", 1000, seen, ready))
            thread.start()
            ready.wait(10)
            threads.append(thread)
        time.sleep(1.0)
        result["rss_mib_with_tails"] = round(_rss_mib(pid), 1)
        import trio

        from logbroker.client import Producer

        async def more() -> None:
            async with Producer(broker.bootstrap, linger_ms=5) as producer:
                for i in range(1000):
                    producer.send_nowait(TOPIC, b"tail-%d" % i)
                await producer.flush()

        trio.run(more)
        for thread in threads:
            thread.join(60)
        result["rss_mib_after_tails"] = round(_rss_mib(pid), 1)
        result["tails_saw_every_record"] = sorted(seen) == [1000] * 10
        result["tail_counts"] = sorted(seen)
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
