"""faust-streaming (a Python stream processing library on aiokafka) in
exactly-once mode against ``logbroker serve``.

The application counts records per key in a faust Table (kept in memory and
rebuilt from its changelog topic, which faust creates compacted) and writes
``{"seq", "n"}`` for every input record. It runs as a subprocess with
``processing_guarantee="exactly_once"``: faust then gives each input
partition its own transactional producer (transactional id
``<app>-<topic group>-<partition>``, so a restarted worker fences the killed
one) and commits the changelog and the consumer offsets in its transactions.
While an idempotent producer feeds the input, the worker is SIGKILLed mid-run
and started again. Read with read_committed, the output should be exactly
what one uninterrupted run would produce: for each key the counts 1..N, once
each, in input order.

faust 0.15.3 does not keep that promise, whatever the broker (the batches in
the log show why), so the test is an expected failure, kept to measure a
later faust against logbroker:

* a ``topic.send()`` to a topic the application does not consume goes out
  through its plain producer, outside the transaction (faust's
  ``TransactionManager.send`` finds no topic group for it): after a SIGKILL
  the output repeats what the killed worker wrote since its last commit;
* the consumer offsets can be committed in a transaction before the
  changelog records of the same input records are sent, which then land in
  the next transaction; when that one is aborted (the restarted worker fences
  it) those inputs are neither counted nor processed again, and later counts
  come out short.

faust pins ``click<8.4``, older than logbroker's, so it is not a test
dependency: the test runs when faust is importable, or with
``LOGBROKER_FAUST_PYTHON`` naming an interpreter that has it (the worker is
a subprocess).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stream_eos_support import check_count_app_across_a_sigkill

ck = pytest.importorskip("confluent_kafka")
PYTHON = os.environ.get("LOGBROKER_FAUST_PYTHON") or sys.executable
if subprocess.run([PYTHON, "-c", "import faust"], capture_output=True, timeout=60).returncode:
    pytest.skip(f"faust-streaming is not importable by {PYTHON}", allow_module_level=True)


APP = '''
import sys

import faust

bootstrap, source, sink, app_id, data_dir = sys.argv[1:6]
app = faust.App(app_id, broker=f"kafka://{bootstrap}", processing_guarantee="exactly_once", datadir=data_dir,
                store="memory://", topic_partitions=2, topic_replication_factor=1, web_enabled=False,
                broker_commit_every=50, broker_commit_interval=0.3,
                # the killed member's session must end soon: its partitions wait for it
                broker_session_timeout=6, broker_heartbeat_interval=0.5)
source_topic = app.topic(source, key_type=str, value_type=bytes, value_serializer="raw")
sink_topic = app.topic(sink, key_type=str, value_type=bytes, value_serializer="raw")
counts = app.Table("counts", default=int, partitions=2)


@app.agent(source_topic)
async def count(stream):
    async for key, value in stream.items():
        counts[key] += 1
        seq = __import__("json").loads(value)["seq"]
        await sink_topic.send(key=key, value=b'{"seq": %d, "n": %d}' % (seq, counts[key]))


sys.argv = [sys.argv[0], "worker", "-l", "warn"]
app.main()
'''


@pytest.mark.xfail(strict=False, reason="faust 0.15.3's exactly_once sends output outside its transactions and "
                                         "can commit offsets ahead of the changelog (see the module docstring)")
def test_stateful_count_is_exactly_once_across_a_sigkill(module_broker, tmp_path):
    check_count_app_across_a_sigkill(module_broker.bootstrap, tmp_path, PYTHON, APP, "fa")
