"""Scale on one machine: every target of the scale work in one JSON, pass or fail each.

Runs, each in its own process and each against its own fresh broker:

* ``bench_bytes.py``: broker CPU per GB (1 KiB, 64 KiB, 1 MB records) and per
  million 100-byte records, produce plus consume with librdkafka, and the
  same workload on Tansu in the same run;
* ``bench_fetch_sessions.py``: broker CPU of a consumer of 10,000 mostly idle
  partitions with and without incremental fetch sessions;
* ``bench_partitions.py``: 100,000 partitions created, written and read,
  open descriptors, memory, restarts, Metadata latency;
* ``soak.py`` (only with ``--soak-minutes``): the mixed long run.

    python benchmarks/bench_scale.py [--quick] [--soak-minutes 30] [--only bytes,sessions,partitions]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(script: str, args: list[str], timeout: float) -> dict:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, os.path.join(HERE, script), *args], capture_output=True, text=True,
                          timeout=timeout)
    lines = proc.stdout.strip()
    try:
        report = json.loads(lines[lines.index("{"):]) if "{" in lines else {}
    except ValueError:
        report = {}
    if proc.returncode != 0 or not report:
        return {"error": f"{script} exited with {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
    report["wall_seconds"] = round(time.monotonic() - started, 1)
    return report


def _targets(parts: dict) -> dict:
    """Every target of the scale work: True, False, or None (not measured)."""
    out: dict[str, bool | None] = {}
    for key, value in parts.get("bytes", {}).get("targets", {}).items():
        out[f"bytes.{key}"] = value
    sessions = parts.get("sessions", {})
    if "error" not in sessions and sessions:
        out["sessions.cpu_ratio_ge_5"] = sessions.get("target_met")
    for key, value in parts.get("partitions", {}).get("targets", {}).items():
        out[f"partitions.{key}"] = value
    for key, value in parts.get("soak", {}).get("criteria", parts.get("soak", {}).get("targets", {})).items():
        out[f"soak.{key}"] = value
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs of each part")
    parser.add_argument("--only", help="comma-separated parts: bytes, sessions, partitions, soak")
    parser.add_argument("--soak-minutes", type=float, default=0.0, help="also run the soak this long")
    args = parser.parse_args(argv)
    wanted = set(args.only.split(",")) if args.only else {"bytes", "sessions", "partitions"}
    if args.soak_minutes:
        wanted.add("soak")
    quick = ["--quick"] if args.quick else []
    plan = {
        "bytes": ("bench_bytes.py", quick, 1800),
        "sessions": ("bench_fetch_sessions.py", ["--topics", "20", "--seconds", "8"] if args.quick else [], 1800),
        "partitions": ("bench_partitions.py", quick, 3600),
        "soak": ("soak.py", ["--minutes", str(args.soak_minutes)], args.soak_minutes * 60 * 2 + 600),
    }
    parts: dict = {}
    for name in ("bytes", "sessions", "partitions", "soak"):
        if name in wanted:
            script, extra, timeout = plan[name]
            print(f"bench_scale: {name} ({script} {' '.join(extra)})", file=sys.stderr, flush=True)
            parts[name] = _run(script, extra, timeout)
    targets = _targets(parts)
    report = {"benchmark": "scale", "quick": args.quick, "targets": targets,
              "all_met": all(v for v in targets.values() if v is not None), **parts}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
