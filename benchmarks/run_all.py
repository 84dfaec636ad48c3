"""Run every benchmark in ``benchmarks/`` and write ``docs/benchmarks.md``.

Each step runs as its own subprocess (this Python, the repository first on
``PYTHONPATH``) and prints one JSON object, which is collected:

* ``limits``: the machine's raw disk write and loopback TCP throughput
  (``_limits.py``), measured in every run so the broker's figures stand next
  to limits of the same moment;
* ``bench_records``, ``bench_storage``, ``bench_broker``, ``bench_groups``,
  ``bench_queues``, ``bench_clients``, ``bench_transactions``, ``bench_embedded``: the scripts with
  their defaults (smallest settings with ``--quick``);
* ``record_sizes``: ``bench_broker.py --sizes``, the same produce and consume
  workers (same client settings) with 10 KiB and 100 KiB records against
  logbroker and Tansu, next to the 100 B and 1 KiB figures of ``bench_broker``.

Then it writes the Markdown page: machine, date and command, one section per
step with a table of its figures and the targets and ratios it prints, PNG
plots in ``img/`` next to the page when matplotlib is importable (the
``plots`` extra), and the hand-written prose of ``docs/benchmarks_notes.md``.
The combined JSON object goes to stdout at the end; progress to stderr. Exit
code 1 if any step failed (the page then says which).

    python benchmarks/run_all.py                # full run, writes docs/benchmarks.md
    python benchmarks/run_all.py --quick        # smoke run, writes to a temp dir
    python benchmarks/run_all.py --only bench_storage,bench_embedded --out /tmp/b/benchmarks.md
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
DEFAULT_OUT = os.path.join(REPO_ROOT, "docs", "benchmarks.md")
NOTES = os.path.join(REPO_ROOT, "docs", "benchmarks_notes.md")
COMMAND = "python benchmarks/run_all.py"

# name -> (script, full arguments, --quick arguments, timeout in seconds)
STEPS = {
    "limits": ("_limits.py", [], ["--quick"], 600),
    "bench_records": ("bench_records.py", [], [], 600),
    "bench_storage": ("bench_storage.py", [], ["--scale", "0.02"], 1200),
    "bench_broker": ("bench_broker.py", [], ["--quick"], 2400),
    "record_sizes": ("bench_broker.py", ["--sizes"], ["--sizes", "--quick"], 2400),
    "bench_groups": ("bench_groups.py", [], ["--records", "20000", "--repeat", "1"], 1200),
    "bench_queues": ("bench_queues.py", [], ["--records", "20000", "--work-records", "5000", "--repeat", "1"], 1200),
    "bench_clients": ("bench_clients.py", [], ["--records", "20000"], 1800),
    "bench_transactions": ("bench_transactions.py", [], ["--quick"], 1800),
    "bench_embedded": ("bench_embedded.py", [], ["--starts", "5"], 300),
    "bench_console": ("bench_console.py", [], ["--records", "100000", "--repeat", "5"], 900),
    "bench_registry": ("bench_registry.py", [], ["--schemas", "200", "--records", "10000"], 900),
}
BROKER_SIZES = {"100B": 100, "1KiB": 1024}  # bench_broker.py's SIZES

_t0 = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - _t0:7.1f}s] run_all: {msg}", file=sys.stderr, flush=True)


# -- running the steps -------------------------------------------------------------------


def parse_json(out: str) -> dict:
    """The JSON object a benchmark printed: all of stdout, else the last object starting a line."""
    try:
        return json.loads(out)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    for m in reversed(list(re.finditer(r"^\{", out, re.M))):
        try:
            return decoder.raw_decode(out, m.start())[0]
        except ValueError:
            continue
    raise ValueError("no JSON object on stdout")


def _stop(proc: subprocess.Popen) -> None:
    """SIGINT (the scripts clean up their brokers on KeyboardInterrupt), SIGTERM, then SIGKILL the group."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: brokers and workers it left behind
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def run_step(name: str, quick: bool) -> tuple[dict | None, dict]:
    """Run one step; (its JSON or None, {seconds, returncode, error, stderr_tail})."""
    script, full, quick_args, timeout = STEPS[name]
    cmd = [sys.executable, os.path.join(BENCH_DIR, script), *(quick_args if quick else full)]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    progress(f"{name}: {' '.join(['python', os.path.relpath(cmd[1], REPO_ROOT), *cmd[2:]])}")
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            text=True, cwd=REPO_ROOT, env=env, start_new_session=True)
    tail: collections.deque[str] = collections.deque(maxlen=15)

    def copy_stderr() -> None:  # progress shows live; the tail goes into the report on failure
        for line in proc.stderr:
            tail.append(line.rstrip())
            sys.stderr.write(line)
            sys.stderr.flush()

    stdout: list[str] = []
    readers = [threading.Thread(target=copy_stderr, daemon=True),
               threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    error = None
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        error = f"timed out after {timeout} s"
    except BaseException:  # Ctrl-C or SIGTERM: stop it, clean up its brokers, then leave
        _stop(proc)
        raise
    for reader in readers:
        reader.join(10)  # EOF once every process holding the pipes has gone
    out = "".join(stdout)
    result = None
    if error is None:
        try:
            result = parse_json(out)
        except ValueError as exc:
            error = f"exit code {proc.returncode}: {exc}"
        if proc.returncode != 0 and error is None:
            error = f"exit code {proc.returncode}"
    status = {"seconds": round(time.monotonic() - start, 1), "returncode": proc.returncode, "error": error}
    if error:
        status["stderr_tail"] = list(tail)
        progress(f"{name} FAILED: {error}")
    else:
        progress(f"{name}: done in {status['seconds']} s")
    return result, status


def machine() -> dict:
    cpu = None
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"cpu": cpu or platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "implementation": platform.python_implementation(),
            "platform": platform.platform(), "commit": commit, "loadavg_1m_at_start": round(os.getloadavg()[0], 2)}


# -- Markdown ------------------------------------------------------------------------------


def read_notes(path: str) -> dict[str, str]:
    """The prose blocks of the notes file, by section name (see the file's header)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return {}
    parts = re.split(r"^<!-- section: (.+?) -->\s*$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts) - 1, 2)}


def num(v, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}" if isinstance(v, float) or digits else f"{v:,}"


def ms3(values) -> str:
    """'1.3 / 3.0 / 5.4 ms', or in seconds when every value is at least one."""
    if any(v is None for v in values):
        return "–"
    if min(values) >= 1000:
        return " / ".join(f"{v / 1000:.1f}" for v in values) + " s"
    return " / ".join(f"{v:.2f}" if v < 1 else f"{v:.1f}" if v < 100 else f"{v:.0f}" for v in values) + " ms"


def size_label(nbytes: int) -> str:
    for unit, shift in (("MiB", 20), ("KiB", 10)):
        if nbytes >= 1 << shift:
            return f"{nbytes / (1 << shift):g} {unit}"
    return f"{nbytes} B"


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def table(header: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join("" if c is None else str(c) for c in row) + " |" for row in rows]
    return out


def target(text: str, met: bool | None) -> str:
    return text if met is None else f"{text}: {'met' if met else 'missed'}"


def _ratio(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def render_limits(r: dict) -> list[str]:
    disk, loop = r["disk"], r["loopback"]
    rows = []
    for label in ("64KiB", "1MiB"):
        d = disk[label]
        rows.append([f"disk: `write()` of {size_label(d['block_bytes'])} blocks, until the last returned (page cache)",
                     num(d["write_mb_per_s"])])
        rows.append(["disk: the same, until `fsync()` returned", num(d["write_fsync_mb_per_s"])])
    rows.append(["loopback TCP, one connection between two processes", num(loop["mb_per_s"])])
    return [f"{disk['bytes'] >> 20:,} MiB per disk run in `{disk['dir']}`, "
            f"{loop['bytes'] >> 20:,} MiB per loopback run; best of {r['repeat']} runs.", "", *table(["limit", "MB/s"], rows)]


def render_records(r: dict) -> list[str]:
    rows = [[codec, num(c["encode_records_per_s"]), num(c.get("kafka_python_encode_records_per_s")),
             _ratio(c.get("encode_ratio")), num(c["decode_records_per_s"]),
             num(c.get("kafka_python_decode_records_per_s")), _ratio(c.get("decode_ratio"))]
            for codec, c in r["codecs"].items()]
    return [f"kafka-python {r.get('kafka_python')}; records/s.", "",
            *table(["codec", "encode", "kafka-python", "ratio", "decode", "kafka-python", "ratio"], rows)]


def render_storage(r: dict) -> list[str]:
    def vs_raw(a: dict) -> str:
        return f"{a['append_vs_raw']:.2f} ({a['mb_per_s']:,} vs {a['raw_mb_per_s']:,} MB/s)"

    a10, a64, a1m = r["append_10KiB"], r["append_64KiB"], r["append_1MiB"]
    look = r["random_lookup_us"]
    rec10, rec64 = r["recovery_1GiB_10KiB_batches"], r["recovery_1GiB_64KiB_batches"]
    rows = [
        ["append 64 KiB batches vs raw writes (`append_vs_raw`)", vs_raw(a64), target("≥ 0.7", a64["append_vs_raw"] >= 0.7)],
        ["appends/s, 10 KiB batches", num(a10["appends_per_s"]), target("≥ 100,000", a10["appends_per_s"] >= 100_000)],
        ["append 10 KiB batches vs raw", vs_raw(a10), ""],
        ["append 1 MiB batches vs raw", vs_raw(a1m), ""],
        ["sequential read via `read()` (memoryviews)",
         f"{r['read_gb_per_s']:,} GB/s handed out; {r['read_touching_bytes_gb_per_s']:,} GB/s touching every byte",
         target("≥ 1 GB/s", r["read_touching_bytes_gb_per_s"] >= 1)],
        ["random offset lookup", f"{look['mean']} µs mean, {look['p99']} µs p99", target("< 20 µs", look["p99"] < 20)],
        [f"recovery of a {rec10['segment_bytes'] / (1 << 30):.2g} GiB unclean segment",
         f"{rec10['seconds']} s (10 KiB batches), {rec64['seconds']} s (64 KiB)",
         target("< 5 s", max(rec10["seconds"], rec64["seconds"]) < 5)],
    ]
    return [f"Scale {r.get('scale')} (1 = 1 GiB per append size).", "", *table(["figure", "result", "target"], rows)]


def _targets_table(targets: dict) -> list[str]:
    return table(["target (as the script prints it)", "result"],
                 [[f"`{k}`", "met" if v else "missed"] for k, v in targets.items()])


def render_broker(r: dict) -> list[str]:
    ours, theirs, ratios = r.get("logbroker", {}), r.get("tansu", {}), r.get("ratios", {})
    rec, client = r["records"], r["client"]
    rows = []
    for label, size in BROKER_SIZES.items():
        for key, what in ((f"produce_{label}_acks1", "produce {n} × {s}, acks=1"),
                          (f"produce_{label}_acksall", "produce {n} × {s}, acks=all"),
                          (f"consume_{label}", "consume {n} × {s}")):
            cells = [f"{num(f.get(f'{key}_rps'))} ({num(f.get(f'{key}_MBps'), 0)} MB/s)" if f.get(f"{key}_rps")
                     else "–" for f in (ours, theirs)]
            rows.append([what.format(n=num(rec[label]), s=size_label(size)) + " (records/s)", *cells,
                         _ratio(ratios.get(f"{key}_rps"))])
    lat = rec["latency"]
    for key, linger in lat["linger_ms"].items():
        cells = [ms3([f.get(key, {}).get(p) for p in ("p50", "p99", "p999")]) if key in f else "–"
                 for f in (ours, theirs)]
        rows.append([f"end-to-end latency at {lat['rate_per_s']:,} records/s, linger.ms {linger}: "
                     f"p50 / p99 / p99.9", *cells, ""])
    out = [f"confluent-kafka {client['confluent_kafka']} (librdkafka {client['librdkafka']}); "
           f"{rec['partitions']} partitions; median of {rec['repeat']} run(s); latency runs "
           f"{lat['seconds']:g} s after {lat['warmup_s']:g} s of warm-up, acks={lat['acks']}.", "",
           *table(["workload", "logbroker", "Tansu" if theirs else "Tansu (not run)", "ratio"], rows),
           "", *_targets_table(r.get("targets", {}))]
    return out + _problems(r.get("details", {}))


def _problems(details: dict) -> list[str]:
    lines = []
    for name, d in details.items():
        for kind in ("errors", "notes", "log_trouble"):
            for item in d.get(kind) or []:
                lines.append(f"- {name} {kind.replace('_', ' ')}: {item}")
    return ["", "Reported by the run:", "", *lines] if lines else []


def size_rows(results: dict) -> list[tuple[str, int, dict, dict]]:
    """(label, bytes, logbroker figures, Tansu figures) for every record size measured."""
    rows = []
    broker, sweep = results.get("bench_broker") or {}, results.get("record_sizes") or {}
    for label, size in BROKER_SIZES.items():
        if broker.get("logbroker"):
            rows.append((label, size, broker["logbroker"], broker.get("tansu") or {}))
    for label, spec in (sweep.get("sizes") or {}).items():
        rows.append((label, spec["bytes"], sweep.get("logbroker") or {}, sweep.get("tansu") or {}))
    return rows


def render_sizes(results: dict) -> list[str]:
    def cell(f: dict, key: str) -> str:
        return num(f.get(key), 0) if f.get(key) is not None else "–"

    def ratio(a: dict, b: dict, key: str) -> str:
        return f"{a[key] / b[key]:.2f}" if a.get(key) and b.get(key) else "–"

    rows = []
    for label, size, ours, theirs in size_rows(results):
        p, c = f"produce_{label}_acks1_MBps", f"consume_{label}_MBps"
        rows.append([size_label(size), cell(ours, p), cell(theirs, p), ratio(ours, theirs, p),
                     cell(ours, c), cell(theirs, c), ratio(ours, theirs, c)])
    out = table(["record size", "produce: logbroker MB/s", "Tansu", "ratio", "consume: logbroker MB/s", "Tansu",
                 "ratio"], rows)
    limits = results.get("limits")
    if limits:
        disk = limits["disk"]
        out += ["", f"Limits in the same run: disk `write()` {disk['write_mb_per_s']:,} MB/s to the page cache, "
                    f"{disk['write_fsync_mb_per_s']:,} MB/s with `fsync()`; loopback TCP "
                    f"{limits['loopback']['mb_per_s']:,} MB/s."]
    return out + _problems((results.get("record_sizes") or {}).get("details", {}))


def render_groups(r: dict) -> list[str]:
    f, commits, consume = r["formation"], r["commits"], r["consume"]
    rows = [
        ["three members joining → all hold their assignment",
         f"{num(f['formation_ms'])} ms (client's own share {num(f['client_join_ms'])} ms; "
         f"group.initial.rebalance.delay.ms {f['initial_rebalance_delay_ms']})",
         target("< 1 s beyond the client's delay",
                f["broker_share_ms"] < 1000 if f.get("broker_share_ms") is not None else None)],
        ["rebalance after one member leaves", f"{num(r['rebalance_after_leave_ms'])} ms (bounded by the 1 s heartbeat)", ""],
        ["synchronous commits/s, one member (flush=interval)", num(commits["commits_per_s"]),
         target("≥ 2,000", commits["commits_per_s"] >= 2000)],
        [f"3-member group vs one assigned consumer, {r['record_bytes']} B records",
         f"{consume['ratio']:.2f} ({consume['group_of_3_records_per_s']:,} vs "
         f"{consume['single_assigned_records_per_s']:,} records/s)", target("≥ 0.9", consume["ratio"] >= 0.9)],
    ]
    kip848, versus = r.get("consumer_protocol"), r.get("consumer_vs_classic")
    if kip848 and versus:
        rows += [
            ["consumer protocol (KIP-848): three members joining → all hold their assignment",
             f"{num(kip848['formation_ms'])} ms ({versus['formation_ratio']:.2f} of classic)",
             target("not slower than classic", versus["formation_ratio"] <= 1)],
            ["consumer protocol: rebalance after one member leaves",
             f"{num(kip848['rebalance_after_leave_ms'])} ms ({versus['rebalance_after_leave_ratio']:.2f} of classic)",
             target("not slower than classic", versus["rebalance_after_leave_ratio"] <= 1)],
            ["3-member consumer-protocol group vs one assigned consumer",
             f"{consume['consumer_protocol_ratio']:.2f} ({consume['consumer_protocol_group_of_3_records_per_s']:,} "
             f"vs {consume['single_assigned_records_per_s']:,} records/s)",
             target("≥ 0.9", consume["consumer_protocol_ratio"] >= 0.9)],
        ]
    out = [f"{r['records']:,} records of {r['record_bytes']} B; medians of {r['runs']} run(s).", "",
           *table(["figure", "result", "target"], rows)]
    return out + _problems({"logbroker": {"log_trouble": r.get("broker_log_trouble")}})


def render_queues(r: dict) -> list[str]:
    nw, w = r["no_work"], r["work"]
    goal = r.get("target", {})
    cpu = [run["broker_cpu_us_per_record"] for run in nw.get("runs", {}).get("one", [])
           if run.get("broker_cpu_us_per_record") is not None]

    def two_vs_one(x: dict) -> str:
        return (f"{x['ratio']:.2f} ({x['two_consumers_records_per_s']:,} vs "
                f"{x['one_consumer_records_per_s']:,} records/s)")

    rows = [
        ["records/s acknowledged, 1 consumer, no work per record", num(nw["one_consumer_records_per_s"]),
         target(f"≥ {goal.get('records_per_s', 50_000):,}",
                nw["one_consumer_records_per_s"] >= goal.get("records_per_s", 50_000))],
        ["2 consumers vs 1, no work per record", two_vs_one(nw), ""],
        [f"2 consumers vs 1, {w['work_us_per_record']:g} µs of work per record", two_vs_one(w),
         target(f"≥ {goal.get('ratio_two_vs_one', 1.5)}", w["ratio"] >= goal.get("ratio_two_vs_one", 1.5))],
        ["broker CPU per acknowledged record (1 consumer, no work)",
         (f"{min(cpu):g} µs" if min(cpu) == max(cpu) else f"{min(cpu):g}–{max(cpu):g} µs") if cpu else "–", ""],
    ]
    rr = r.get("request_reply")
    if rr:
        one, fifty = rr["outstanding_1"], rr["outstanding_50"]
        rows.append(["request-reply round trip, 1 outstanding (Requester + Responder): p50 / p99",
                     f"{one['p50_ms']} / {one['p99_ms']} ms ({one['round_trips_per_s']:,} round trips/s)",
                     target("p50 < 5 ms", rr.get("target_p50_below_5ms_at_1"))])
        rows.append(["request-reply, 50 outstanding on one requester and one responder",
                     f"{fifty['round_trips_per_s']:,} round trips/s, p50 {fifty['p50_ms']} ms, p99 {fifty['p99_ms']} ms",
                     ""])
    repeat = len(nw.get("runs", {}).get("one", [])) or "?"
    out = [f"{nw['records']:,} records ({w['records']:,} with work), {r['partitions']} partitions; medians of "
           f"{repeat} run(s); the script's verdict `meets_target`: {r.get('meets_target')}.", "",
           *table(["figure", "result", "target"], rows)]
    return out + _problems({"logbroker": {"log_trouble": r.get("broker_trouble")}})


def render_clients(r: dict) -> list[str]:
    rows = []
    for client, p in r["produce"].items():
        c = r["consume"].get(client, {})
        rows.append([client, num(p.get("records_per_s")), num(p.get("mb_per_s"), 1),
                     num(c.get("records_per_s")), num(c.get("mb_per_s"), 1)])
    ratios = [[f"{kind} {name}", f"{v:.2f}"] for kind, d in r.get("ratios", {}).items() for name, v in d.items()]
    goals = [[f"`{k}`", f"{v['ratio']:.2f}: {'met' if v['met'] else 'missed'}"] for k, v in r.get("targets", {}).items()]
    out = [f"{r['records']:,} records of {r['value_bytes']} B, {r['partitions']} partitions, "
           f"median of {r['repeat']} run(s).", "",
           *table(["client", "produce records/s", "MB/s", "consume records/s", "MB/s"], rows), "",
           *table(["ratio", "value"], ratios)]
    if goals:
        out += ["", *table(["target", "result"], goals)]
    return out + _problems({"logbroker": {"log_trouble": r.get("broker_log_trouble")}})


def render_transactions(r: dict) -> list[str]:
    produce, consume, ratios, goals = r["produce"], r["consume"], r["ratios"], r.get("targets", {})
    idem = produce["idempotent"]

    def met(name: str) -> bool | None:
        return goals[name]["met"] if name in goals else None

    rows = [["produce, idempotent (the baseline)", f"{num(idem['records_per_s'])} records/s", ""]]
    for k in r["per_transaction"]:
        p = produce[f"txn_{k}"]
        cpu = (f"; broker CPU {p['broker_cpu_s'] * 1000 / p['transactions']:.2f} ms per transaction"
               if p.get("broker_cpu_s") is not None and p.get("transactions") else "")
        rows.append([f"produce, transactional, {num(k)} records per transaction (vs idempotent)",
                     f"{_ratio(ratios.get(f'txn_{k}_vs_idempotent'))} ({num(p['records_per_s'])} records/s; "
                     f"`commit_transaction()` p50 {p['commit_call_ms']['p50']} ms{cpu})",
                     target("≥ 0.8", met("txn_1000_vs_idempotent_at_least_0.8")) if k == 1000 else ""])
    peer = r.get("tansu")
    if peer:
        rows.append(["the same against Tansu (Rust, in memory): 1,000 per transaction vs idempotent",
                     f"{_ratio(peer['txn_1000_vs_idempotent'])} ({num(peer['txn_1000']['records_per_s'])} vs "
                     f"{num(peer['idempotent']['records_per_s'])} records/s); logbroker's transactional rate is "
                     f"{_ratio(r.get('txn_1000_vs_tansu'))} Tansu's", ""])
    c = r["commit_ms"]
    rows.append([f"commit latency, {num(r['latency_transactions'])} transactions of "
                 f"{r['latency_records_per_transaction']} records flushed first: p50 / p99 / max",
                 f"{c['p50']} / {c['p99']} / {c['max']} ms",
                 target("p50 < 5 ms", met("commit_p50_below_5ms")) + ", "
                 + target("p99 < 20 ms", met("commit_p99_below_20ms"))])
    for k in r["per_transaction"]:
        rc, ru = consume[f"read_committed_txn_{k}"], consume[f"read_uncommitted_txn_{k}"]
        rows.append([f"consume read_committed vs read_uncommitted, the {num(k)}-per-transaction topic",
                     f"{_ratio(ratios.get(f'read_committed_vs_uncommitted_txn_{k}'))} "
                     f"({num(rc['records_per_s'])} vs {num(ru['records_per_s'])} records/s)",
                     target("≥ 0.9", met("read_committed_vs_uncommitted_at_least_0.9"))])
    client = r.get("client", {})
    out = [f"confluent-kafka {client.get('confluent_kafka')} (librdkafka {client.get('librdkafka')}); "
           f"{r['records']:,} records of {r['value_bytes']} B per run, {r['partitions']} partitions, "
           f"broker flush={r.get('broker_flush')}; median of {r['repeat']} run(s).", "",
           *table(["figure", "result", "target"], rows)]
    return out + _problems({"logbroker": {"log_trouble": r.get("broker_log_trouble")}})


def render_embedded(r: dict) -> list[str]:
    s = r["startup_ms"]
    rows = [[f"`embedded()` to accepting connections, p50 / max over {r['starts']} starts",
             f"{s['p50']} / {s['max']} ms", target("p50 < 200 ms", r.get("target_p50_below_200ms"))],
            ["shutdown, p50", f"{r['shutdown_ms_p50']} ms", ""]]
    return table(["figure", "result", "target"], rows)


def render_console(r: dict) -> list[str]:
    rows = [[f"message browser, newest 100 of {r['records']:,} records (all partitions)",
             f"{r['browse_ms']} ms ({r['server_ms']} ms reading)", target("< 100 ms", r.get("browse_target_met"))],
            ["100 records from an offset in the middle of a partition",
             f"{r['browse_offset_ms']} ms ({r['server_offset_ms']} ms reading)", ""],
            ["100 records from a time (time index)", f"{r['browse_time_ms']} ms ({r['server_time_ms']} ms reading)", ""],
            ["broker memory: before / with 10 live tails / after 1,000 records through them",
             f"{r['rss_mib_before']} / {r['rss_mib_with_tails']} / {r['rss_mib_after_tails']} MiB", ""],
            ["every tail saw every record", "yes" if r.get("tails_saw_every_record") else f"no: {r['tail_counts']}", ""]]
    return table(["figure", "result", "target"], rows)


def render_registry(r: dict) -> list[str]:
    rows = [[f"register a new schema (fsynced), {r['schemas']:,} in a row", f"{r['register_per_s']:,} /s"],
            ["schema by id (GET /schemas/ids/N), one keep-alive client", f"{r['get_by_id_per_s']:,} /s"],
            ["compatibility check against 20 versions, FULL_TRANSITIVE", f"{r['check_ms']} ms"],
            [f"restart with {r['schemas']:,} schemas until the registry answers", f"{r['restart_s']} s"],
            [f"confluent-kafka produce + consume of {r['records']:,} records: JSON bytes / Avro through the "
             "registry", f"{r['plain_json_records_per_s']:,} / {r['avro_records_per_s']:,} records/s "
             f"({r['avro_ratio']:.2f})"]]
    return table(["figure", "result"], rows)


SECTIONS = [  # step, heading, renderer (taking the step's JSON, or all results for record_sizes)
    ("limits", "Raw limits of this machine (`_limits.py`)", render_limits),
    ("bench_records", "Records (`bench_records.py`)", render_records),
    ("bench_storage", "Storage engine (`bench_storage.py`)", render_storage),
    ("bench_broker", "Broker over the Kafka protocol (`bench_broker.py`)", render_broker),
    ("record_sizes", "Throughput by record size (`bench_broker.py` and `run_all.py`)", None),
    ("bench_groups", "Consumer groups (`bench_groups.py`)", render_groups),
    ("bench_queues", "Queues (`bench_queues.py`)", render_queues),
    ("bench_clients", "Clients compared (`bench_clients.py`)", render_clients),
    ("bench_transactions", "Transactions (`bench_transactions.py`)", render_transactions),
    ("bench_embedded", "Embedded broker (`bench_embedded.py`)", render_embedded),
    ("bench_console", "Web console (`bench_console.py`)", render_console),
    ("bench_registry", "Schema registry (`bench_registry.py`)", render_registry),
]
PLOT_OF = {"record_sizes": "throughput_by_record_size", "bench_broker": "latency_percentiles",
           "bench_queues": "queue_throughput"}
PLOT_TITLES = {"throughput_by_record_size": "Throughput by record size: logbroker, Tansu, raw disk and loopback",
               "latency_percentiles": "End-to-end latency percentiles", "queue_throughput": "Queue throughput, 1 vs 2 consumers"}


def render(combined: dict, notes: dict[str, str], plots: dict[str, str], plots_skipped: str | None) -> str:
    m, results, status = combined["machine"], combined["results"], combined["steps"]
    lines = ["# Benchmarks", ""]
    if notes.get("intro"):
        lines += [notes["intro"], ""]
    when = combined["started"][:10]
    only = [name for name in combined["steps"] if name != "limits"]
    this = " ".join([COMMAND, *(["--quick"] if combined["quick"] else []),
                     *(["--only", ",".join(only)] if set(only) != set(STEPS) - {"limits"} else [])])
    lines += [f"Figures below: {m['cores']} cores ({m['cpu']}), {m['implementation']} {m['python']}, {when}"
              f"{', commit ' + m['commit'] if m.get('commit') else ''}; load average {m['loadavg_1m_at_start']} "
              f"at the start, {m.get('loadavg_1m_at_end')} at the end; {duration(combined['seconds'])} in all. "
              f"Reproduce with `{COMMAND}`{' (this page: `' + this + '`)' if this != COMMAND else ''}.",
              ""]
    if combined["quick"]:
        lines += ["**Quick run** (`--quick`, the smallest settings): the figures only show that every benchmark "
                  "runs; they are not comparable with a full run.", ""]
    if plots_skipped:
        lines += [f"Plots skipped: {plots_skipped} (`pip install '.[plots]'` adds matplotlib).", ""]
    for name, heading, fn in SECTIONS:
        if name not in status:
            continue
        lines += [f"## {heading}", ""]
        if notes.get(name):
            lines += [notes[name], ""]
        st = status[name]
        if st.get("error"):
            lines += [f"Not measured in this run: `{name}` failed ({st['error']}).", ""]
            tail = [t for t in st.get("stderr_tail") or [] if t.strip()][-5:]
            if tail:
                lines += ["```", *tail, "```", ""]
        else:
            try:
                body = render_sizes(results) if name == "record_sizes" else fn(results[name])
            except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
                body = [f"Could not tabulate this step's JSON ({type(exc).__name__}: {exc}); see the combined JSON."]
            lines += [*body, ""]
        plot = plots.get(PLOT_OF.get(name, ""))
        if plot:
            lines += [f"![{PLOT_TITLES[PLOT_OF[name]]}]({plot})", ""]
        if notes.get(f"{name} after"):
            lines += [notes[f"{name} after"], ""]
    if notes.get("end"):
        lines += [notes["end"], ""]
    return "\n".join(lines).rstrip() + "\n"


# -- plots ---------------------------------------------------------------------------------


def make_plots(results: dict, img_dir: str, rel: str) -> tuple[dict[str, str], str | None]:
    """PNG files for what was measured: {plot name: path relative to the page}, or why none were made."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import matplotlib.ticker
    except ImportError:
        return {}, "matplotlib is not installed"
    made = {}
    for name, draw in (("throughput_by_record_size", _plot_sizes), ("latency_percentiles", _plot_latency),
                       ("queue_throughput", _plot_queues)):
        try:
            fig = draw(plt, results)
        except (KeyError, TypeError, ValueError) as exc:
            progress(f"plot {name} skipped: {type(exc).__name__}: {exc}")
            fig = None
        if fig is None:
            continue
        os.makedirs(img_dir, exist_ok=True)
        for ax in fig.axes:  # 1,000 rather than 10^3
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        fig.tight_layout()
        fig.savefig(os.path.join(img_dir, f"{name}.png"), dpi=110, metadata={"Software": None})
        plt.close(fig)
        made[name] = f"{rel}/{name}.png"
    return made, None


def _plot_sizes(plt, results: dict):
    rows = size_rows(results)
    if not rows:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    limits = results.get("limits")
    xs = [size for _, size, _, _ in rows]
    for ax, kind in zip(axes, ("produce", "consume")):
        key = "produce_{}_acks1_MBps" if kind == "produce" else "consume_{}_MBps"
        for broker, idx, marker in (("logbroker", 2, "o"), ("Tansu", 3, "s")):
            pts = [(row[1], row[idx][key.format(row[0])]) for row in rows if row[idx].get(key.format(row[0]))]
            if pts:
                ax.plot(*zip(*pts), marker=marker, label=broker)
        if limits:
            if kind == "produce":
                ax.axhline(limits["disk"]["write_mb_per_s"], ls="--", color="grey", label="raw disk write() (page cache)")
                ax.axhline(limits["disk"]["write_fsync_mb_per_s"], ls=":", color="grey", label="raw disk write() + fsync")
            ax.axhline(limits["loopback"]["mb_per_s"], ls="-.", color="black", label="raw loopback TCP")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(xs, [size_label(x) for x in xs])
        ax.minorticks_off()
        ax.yaxis.set_major_locator(plt.matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        ax.set_xlabel("record size")
        ax.set_title(f"{kind} (acks=1)" if kind == "produce" else kind)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("MB/s of record values")
    return fig


def _plot_latency(plt, results: dict):
    r = results.get("bench_broker") or {}
    runs = (r.get("records") or {}).get("latency", {}).get("linger_ms", {})
    brokers = [(label, r[key]) for label, key in (("logbroker", "logbroker"), ("Tansu", "tansu")) if r.get(key)]
    if not runs or not brokers:
        return None
    pcts = (("p50", "p50"), ("p99", "p99"), ("p99.9", "p999"))
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 4), sharey=True, squeeze=False)
    width = 0.8 / len(brokers)
    for ax, (key, linger) in zip(axes[0], runs.items()):
        for i, (label, figures) in enumerate(brokers):
            values = [(figures.get(key) or {}).get(p) for _, p in pcts]
            xs = [j + i * width for j in range(len(pcts))]
            shown = [(x, v) for x, v in zip(xs, values) if v]
            bars = ax.bar([x for x, _ in shown], [v for _, v in shown], width, label=label)
            ax.bar_label(bars, labels=[ms3([v]).removesuffix(" ms") for _, v in shown], fontsize=7)
        ax.set_xticks([j + width * (len(brokers) - 1) / 2 for j in range(len(pcts))], [p for p, _ in pcts])
        ax.set_yscale("log")
        ax.set_title(f"{r['records']['latency']['rate_per_s']:,} records/s, linger.ms {linger}")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("ms (log scale)")
    return fig


def _plot_queues(plt, results: dict):
    r = results.get("bench_queues")
    if not r:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    workloads = (("no work", r["no_work"]), (f"{r['work']['work_us_per_record']:g} µs work per record", r["work"]))
    for i, (label, key) in enumerate((("1 consumer", "one_consumer_records_per_s"),
                                      ("2 consumers", "two_consumers_records_per_s"))):
        bars = ax.bar([j + i * 0.4 for j in range(len(workloads))], [w[key] for _, w in workloads], 0.4, label=label)
        ax.bar_label(bars, labels=[f"{w[key]:,}" for _, w in workloads], fontsize=7)
    ax.set_xticks([j + 0.2 for j in range(len(workloads))],
                  [f"{name}\n(2 vs 1: {w['ratio']:.2f})" for name, w in workloads])
    ax.set_ylabel("records/s acknowledged")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    return fig


# -- main ------------------------------------------------------------------------------------


def _names(values: list[str]) -> list[str]:
    names = []
    for value in values:
        for part in filter(None, (p.strip() for p in value.split(","))):
            name = part.removesuffix(".py")
            if name not in STEPS and f"bench_{name}" in STEPS:
                name = f"bench_{name}"
            if name not in STEPS:
                raise SystemExit(f"run_all.py: unknown step {part!r}; choose from {', '.join(STEPS)}")
            names.append(name)
    return names


def write_page(combined: dict, out: str) -> None:
    out_dir = os.path.dirname(os.path.abspath(out))
    plots, skipped = make_plots(combined["results"], os.path.join(out_dir, "img"), "img")
    os.makedirs(out_dir, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write(render(combined, read_notes(NOTES), plots, skipped))
    progress(f"wrote {out}" + (f" and {len(plots)} plot(s) in {os.path.join(out_dir, 'img')}" if plots else ""))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog=f"steps, in order: {', '.join(STEPS)} (limits always runs)")
    parser.add_argument("--quick", action="store_true",
                        help="smallest settings (a smoke run); writes to a temp dir unless --out is given")
    parser.add_argument("--only", action="append", default=[], metavar="NAME",
                        help="run only these steps (repeat or comma-separate; bench_ may be left off)")
    parser.add_argument("--out", help="Markdown page to write (plots go to img/ beside it) [default: docs/benchmarks.md]")
    parser.add_argument("--json", metavar="PATH", help="also save the combined JSON object (it always goes to stdout)")
    parser.add_argument("--from-json", metavar="PATH",
                        help="run nothing: write the page from a combined JSON saved by --json (e.g. after editing "
                             "docs/benchmarks_notes.md)")
    args = parser.parse_args(argv)
    out = args.out or (os.path.join(tempfile.gettempdir(), "logbroker-benchmarks", "benchmarks.md") if args.quick
                       else DEFAULT_OUT)
    if args.from_json:
        with open(args.from_json, encoding="utf-8") as f:
            write_page(json.load(f), out)
        return 0
    selected = _names(args.only) if args.only else list(STEPS)
    steps = [name for name in STEPS if name == "limits" or name in selected]
    command = " ".join(["python benchmarks/run_all.py", *argv])
    combined = {"benchmark": "run_all", "command": command, "quick": args.quick,
                "started": datetime.now().astimezone().isoformat(timespec="seconds"),
                "machine": machine(), "steps": {}, "results": {}}
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    progress(f"{len(steps)} step(s): {', '.join(steps)}; page: {out}")
    for name in steps:
        result, status = run_step(name, args.quick)
        combined["steps"][name] = status
        if result is not None:
            combined["results"][name] = result
    combined["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    combined["seconds"] = round(time.monotonic() - _t0, 1)
    write_page(combined, out)
    text = json.dumps(combined, indent=2)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    failed = [name for name, st in combined["steps"].items() if st["error"]]
    if failed:
        progress(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
