"""The machine's own limits, measured with nothing of logbroker in the way, so
the broker's figures can stand next to them.

* **disk**: ``os.write`` of 64 KiB and of 1 MiB blocks (``--disk-mib`` MiB in
  all, default 1024) to a new file in a temporary directory on the filesystem
  where the benchmarks put the brokers' data (``tempfile.gettempdir()``, as
  ``_harness`` does; ``--dir`` to choose), then one ``fsync``. MB/s (10^6
  bytes) until the last ``write()`` returned (``write_mb_per_s``: the page
  cache, what ``flush=interval`` waits for) and until ``fsync()`` returned
  (``write_fsync_mb_per_s``: on the disk). Best of ``--repeat`` runs.
* **loopback**: a second process connects to this one over 127.0.0.1 TCP and
  ``sendall()``s a 256 KiB memoryview over and over (``--loopback-mib`` MiB in
  all, default 2048); this process ``recv_into()``s a 1 MiB buffer. MB/s from
  the first byte received to the last. Best of ``--repeat`` runs.

Prints one JSON object on stdout. ``--quick`` writes 64 MiB and sends 256 MiB.

    python benchmarks/_limits.py [--quick] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time

MiB = 1 << 20
BLOCKS = (("64KiB", 64 * 1024), ("1MiB", MiB))
SEND_CHUNK = 256 * 1024
RECV_BUFFER = MiB


def disk_write(directory: str, block: int, total: int) -> dict:
    """Write ``total`` bytes in ``block``-byte writes to a new file, then fsync; seconds of each."""
    data = memoryview(os.urandom(block))
    path = os.path.join(directory, f"raw-{block}")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write = os.write
        start = time.perf_counter()
        for _ in range(total // block):
            write(fd, data)
        written = time.perf_counter()
        os.fsync(fd)
        synced = time.perf_counter()
    finally:
        os.close(fd)
        os.unlink(path)
    return {"write_s": written - start, "write_fsync_s": synced - start}


def measure_disk(directory: str, total: int, repeat: int) -> dict:
    work = tempfile.mkdtemp(prefix="bench-limits-", dir=directory)
    out: dict = {"dir": directory, "bytes": total}
    try:
        for label, block in BLOCKS:
            runs = [disk_write(work, block, total) for _ in range(repeat)]
            write_s = min(r["write_s"] for r in runs)
            fsync_s = min(r["write_fsync_s"] for r in runs)
            out[label] = {
                "block_bytes": block,
                "write_mb_per_s": round(total / write_s / 1e6),
                "write_fsync_mb_per_s": round(total / fsync_s / 1e6),
                "runs_write_fsync_mb_per_s": [round(total / r["write_fsync_s"] / 1e6) for r in runs],
            }
    finally:
        os.rmdir(work)
    out["write_mb_per_s"] = max(out[label]["write_mb_per_s"] for label, _ in BLOCKS)
    out["write_fsync_mb_per_s"] = max(out[label]["write_fsync_mb_per_s"] for label, _ in BLOCKS)
    return out


def send(port: int, total: int) -> None:
    """The sending process: ``total`` bytes to 127.0.0.1:``port`` in SEND_CHUNK-byte sendall()s."""
    data = memoryview(os.urandom(SEND_CHUNK))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sendall = sock.sendall
        for _ in range(total // SEND_CHUNK):
            sendall(data)
        sock.shutdown(socket.SHUT_WR)


def loopback_once(total: int) -> tuple[int, float]:
    """Receive ``total`` bytes from a sender process; ``(bytes timed, seconds)`` from
    the end of the first receive to the last byte (the first one is not timed)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        sender = subprocess.Popen([sys.executable, os.path.abspath(__file__), "_send", str(port), str(total)],
                                  stdin=subprocess.DEVNULL)
        try:
            server.settimeout(30)
            conn, _ = server.accept()
            with conn:
                conn.settimeout(30)
                buf = bytearray(RECV_BUFFER)
                view = memoryview(buf)
                recv_into = conn.recv_into
                first = got = recv_into(view)
                start = time.perf_counter()
                while got < total:
                    n = recv_into(view)
                    if not n:
                        raise RuntimeError(f"sender closed after {got} of {total} bytes")
                    got += n
                return got - first, time.perf_counter() - start
        finally:
            if sender.wait(30) != 0:
                raise RuntimeError(f"sender exited with {sender.returncode}")


def measure_loopback(total: int, repeat: int) -> dict:
    runs = [timed / seconds / 1e6 for timed, seconds in (loopback_once(total) for _ in range(repeat))]
    return {"bytes": total, "send_chunk_bytes": SEND_CHUNK, "recv_buffer_bytes": RECV_BUFFER,
            "mb_per_s": round(max(runs)), "runs_mb_per_s": [round(r) for r in runs]}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_send":
        send(int(argv[1]), int(argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB to disk, 256 MiB over loopback")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where to write (default: the temp dir, where the brokers' data goes)")
    parser.add_argument("--disk-mib", type=int, default=0, help="MiB per disk run [default: 1024, 64 with --quick]")
    parser.add_argument("--loopback-mib", type=int, default=0,
                        help="MiB per loopback run [default: 2048, 256 with --quick]")
    parser.add_argument("--repeat", type=int, default=0, help="runs of each, best kept [default: 3, 2 with --quick]")
    args = parser.parse_args(argv)
    disk_mib = args.disk_mib or (64 if args.quick else 1024)
    loopback_mib = args.loopback_mib or (256 if args.quick else 2048)
    repeat = args.repeat or (2 if args.quick else 3)
    started = time.perf_counter()
    report = {
        "benchmark": "limits",
        "quick": args.quick,
        "repeat": repeat,
        "disk": measure_disk(args.dir, disk_mib * MiB, repeat),
        "loopback": measure_loopback(loopback_mib * MiB, repeat),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
