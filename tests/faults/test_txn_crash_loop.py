"""SIGKILL loop under transactions: the broker (``--flush always``) is killed at
random moments while confluent-kafka transactional producers commit and abort.

The workload, all librdkafka, in threads of the test process:

* two transactional producers write transactions of 1-30 records over the 3
  partitions of ``out``; about one in four is aborted on purpose (flushed
  first, so the aborted records are in the log). Each transaction ends in the
  ledger as committed (``commit_transaction`` returned), aborted
  (``abort_transaction`` returned) or unknown (the producer hit a fatal error,
  e.g. fenced after the broker timed its transaction out, and was replaced);
* a consume-transform-produce loop: a read_committed consumer of ``in`` (fed
  by an idempotent producer throughout) and a transactional producer that
  writes each input record, transformed, to ``ctp-out`` and commits the
  consumer's offsets in the same transaction (``send_offsets_to_transaction``);
  after an abort or a replaced producer it rewinds to the committed offsets;
* now and then a producer opens a transaction, writes a few records and is
  abandoned: the broker must abort it when its timeout passes.

After the last kill the workers stop, and a read_committed consumer must
reach the high watermark of every partition within the transaction timeout
plus a margin (the last stable offset advances: no transaction hangs). Then
both output topics are read with read_committed and ``check.crcs=true``:

* every committed transaction is there exactly once, whole; nothing of an
  aborted or abandoned one; an unknown one is all there or not at all; no
  value appears twice;
* ``ctp-out`` holds exactly the transformed input log, each record once, and
  the group's committed offsets are the input's end offsets.

The same checks run again after a clean restart. ``LOGBROKER_FAULT_ITERATIONS``
sets the number of kills (6 by default, about 30 s; 20 is the long form);
``LOGBROKER_FAULT_SEED`` replays a run's timing and choices.
"""

from __future__ import annotations

import collections
import os
import random
import sys
import threading
import time
import traceback
import uuid

import pytest

from fault_support import ITERATIONS, create_topic, summary, unique_topic, wait_until

ck = pytest.importorskip("confluent_kafka")

KILLS = ITERATIONS or 6
PARTITIONS = 3
TXN_TIMEOUT_MS = 6000
MARGIN_S = 15.0  # beyond the transaction timeout, for the broker's restart and the timer's retry
CALL_TIMEOUT = 5.0  # each commit/abort/send_offsets call; retried while the broker is away
GIVE_UP_S = 60.0
QUIET = {"log_level": 0}  # librdkafka's connection-refused chatter while the broker is down
BROKER_CONFIG = '"transaction.abort.timed.out.transaction.cleanup.interval.ms" = 500\n'
# No re-bootstrap when every broker is unreachable (librdkafka 2.10+ does it by default): in
# librdkafka 2.16 the transaction coordinator's broker handle can then stay "terminating" for
# good, and send_offsets_to_transaction()/commit_transaction() wait forever, past their timeout.
CLIENT = {"socket.timeout.ms": 5000, "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 250,
          "retry.backoff.ms": 50, "metadata.recovery.strategy": "none", **QUIET}
_SERIOUS = {"_BAD_MSG", "CORRUPT_MESSAGE", "INVALID_RECORD", "_INCONSISTENT"}


class Ledger:
    """What the clients were told, shared by the worker threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.txns: dict[str, tuple[str, list[bytes]]] = {}  # txn name -> (outcome, values)
        self.outcomes: collections.Counter = collections.Counter()
        self.client_errors: list[str] = []  # errors that must never happen (CRC, corrupt)
        self.replaced: list[str] = []  # fatal errors after which a producer was replaced
        self.ctp_batches = 0

    def record(self, name: str, outcome: str, values: list[bytes]) -> None:
        with self.lock:
            self.txns[name] = (outcome, values)
            self.outcomes[outcome] += 1


def _err(exc: Exception):
    return exc.args[0] if exc.args and isinstance(exc.args[0], ck.KafkaError) else None


class Txn:
    """A transactional producer that runs transactions to a known outcome when it can."""

    def __init__(self, bootstrap: str, transactional_id: str, ledger: Ledger, halt: threading.Event) -> None:
        self.bootstrap, self.transactional_id, self.ledger, self.halt = bootstrap, transactional_id, ledger, halt
        self.producer = None
        self.retried: list[str] = []  # the retriable errors, for a failure's report
        self._new_producer()

    def _new_producer(self) -> None:
        def on_error(err):
            if err.name() in _SERIOUS:
                self.ledger.client_errors.append(f"{self.transactional_id}: {err!r}")

        self.producer = ck.Producer({
            "bootstrap.servers": self.bootstrap, "transactional.id": self.transactional_id,
            "transaction.timeout.ms": TXN_TIMEOUT_MS, "linger.ms": 2, "error_cb": on_error, **CLIENT,
        })
        deadline = time.monotonic() + GIVE_UP_S
        while True:
            try:
                self.producer.init_transactions(CALL_TIMEOUT)
                return
            except ck.KafkaException as exc:
                err = _err(exc)
                if time.monotonic() > deadline or (err is not None and err.fatal()):
                    raise
                # retriable (broker away, or the previous transaction still completing)

    def _retry(self, call) -> None:
        """Repeat a commit/abort/send_offsets call that failed with a retriable error."""
        deadline = time.monotonic() + GIVE_UP_S
        while True:
            try:
                call()
                return
            except ck.KafkaException as exc:
                err = _err(exc)
                if err is None or not err.retriable() or time.monotonic() > deadline:
                    raise
                self.retried.append(f"{time.strftime('%H:%M:%S')} {err!r}")

    def run(self, name: str, body, commit: bool) -> str:
        """Begin, ``body(producer)`` -> values, then commit or abort: the outcome recorded."""
        p = self.producer
        values: list[bytes] = []
        try:
            p.begin_transaction()
            values = body(p)
            if commit:
                self._retry(lambda: p.commit_transaction(CALL_TIMEOUT))
                outcome = "committed"
            else:
                p.flush(CALL_TIMEOUT)  # in the log before the abort
                self._retry(lambda: p.abort_transaction(CALL_TIMEOUT))
                outcome = "aborted"
        except ck.KafkaException as exc:
            err = _err(exc)
            if err is not None and err.txn_requires_abort():
                try:
                    self._retry(lambda: p.abort_transaction(CALL_TIMEOUT))
                    outcome = "aborted"
                except ck.KafkaException as exc2:
                    outcome = self._replace(f"{'commit' if commit else 'transaction'} failed with {exc!r}, "
                                            f"then the abort with {exc2!r}")
            else:
                outcome = self._replace(exc)
        except BufferError:
            self._retry(lambda: p.abort_transaction(CALL_TIMEOUT))
            outcome = "aborted"
        self.ledger.record(name, outcome, values)
        return outcome

    def _replace(self, why) -> str:
        """A fatal error (fenced, say): the outcome is the broker's to know; start afresh."""
        self.ledger.replaced.append(f"{self.transactional_id}: {why if isinstance(why, str) else repr(why)}")
        self.producer = None
        self._new_producer()  # InitProducerId completes or aborts whatever was in flight
        return "unknown"


def _produce(p, topic: str, value: bytes, partition: int) -> None:
    while True:
        try:
            p.produce(topic, value=value, partition=partition)
            return
        except BufferError:
            p.poll(0.05)


class TxnWorker(threading.Thread):
    def __init__(self, bootstrap: str, topic: str, name: str, ledger: Ledger, rng: random.Random) -> None:
        super().__init__(daemon=True, name=name)
        self.bootstrap, self.topic, self.ledger, self.rng = bootstrap, topic, ledger, rng
        self.halt = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            txn = Txn(self.bootstrap, f"txn-{self.name}-{uuid.uuid4().hex[:6]}", self.ledger, self.halt)
            n = 0
            while not self.halt.is_set():
                size, commit = self.rng.randint(1, 30), self.rng.random() >= 0.25
                name = f"{self.name}/{n}"

                def body(p, name=name, size=size):
                    values = [f"{name}/{j}".encode() for j in range(size)]
                    for j, value in enumerate(values):
                        _produce(p, self.topic, value, j % PARTITIONS)
                    return values

                txn.run(name, body, commit)
                n += 1
                time.sleep(self.rng.uniform(0, 0.02))
        except BaseException as exc:  # reported by the test
            self.error = exc


class Feeder(threading.Thread):
    """An idempotent producer writing ``in`` at about 300 records/s."""

    def __init__(self, bootstrap: str, topic: str, ledger: Ledger) -> None:
        super().__init__(daemon=True, name="feeder")
        self.bootstrap, self.topic, self.ledger = bootstrap, topic, ledger
        self.halt = threading.Event()
        self.failed: list[str] = []
        self.left = 0

    def run(self) -> None:
        def delivered(err, msg):
            if err is not None:
                self.failed.append(repr(err))

        p = ck.Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "message.timeout.ms": 120000, **CLIENT})
        seq = 0
        while not self.halt.is_set():
            for _ in range(6):
                p.produce(self.topic, value=b"in-%d" % seq, partition=seq % PARTITIONS, on_delivery=delivered)
                seq += 1
            p.poll(0)
            time.sleep(0.02)
        self.left = p.flush(120)


class TransformWorker(threading.Thread):
    """Consume ``in`` (read_committed), produce ``T:<value>`` to ``ctp-out`` and commit the
    offsets in the same transaction; rewind to the committed offsets when one does not commit."""

    def __init__(self, bootstrap: str, source: str, sink: str, group: str, ledger: Ledger) -> None:
        super().__init__(daemon=True, name="transform")
        self.bootstrap, self.source, self.sink, self.group, self.ledger = bootstrap, source, sink, group, ledger
        self.halt = threading.Event()
        self.idle = threading.Event()  # set while consume() finds nothing new
        self.error: BaseException | None = None
        self.txn: Txn | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:
            self.error = exc

    def _rewind(self, consumer, assignment) -> None:
        deadline = time.monotonic() + GIVE_UP_S
        while True:
            try:
                committed = consumer.committed(assignment, timeout=CALL_TIMEOUT)
                break
            except ck.KafkaException:
                if time.monotonic() > deadline:
                    raise
        for tp in committed:
            consumer.seek(ck.TopicPartition(self.source, tp.partition, tp.offset if tp.offset >= 0 else 0))

    def _run(self) -> None:
        ledger = self.ledger

        def on_error(err):
            if err.name() in _SERIOUS:
                ledger.client_errors.append(f"transform consumer: {err!r}")

        consumer = ck.Consumer({
            "bootstrap.servers": self.bootstrap, "group.id": self.group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "isolation.level": "read_committed", "check.crcs": True,
            "fetch.wait.max.ms": 50, "fetch.queue.backoff.ms": 10, "error_cb": on_error, **CLIENT,
        })
        assignment = [ck.TopicPartition(self.source, p) for p in range(PARTITIONS)]
        consumer.assign(assignment)
        txn = self.txn = Txn(self.bootstrap, f"txn-transform-{uuid.uuid4().hex[:6]}", ledger, self.halt)
        n = 0
        try:
            while not self.halt.is_set():
                msgs = []
                for msg in consumer.consume(num_messages=200, timeout=0.1):
                    err = msg.error()
                    if err is None:
                        msgs.append(msg)
                    elif err.name() in _SERIOUS:
                        ledger.client_errors.append(f"transform consumer: {err!r}")
                if not msgs:
                    self.idle.set()
                    continue
                self.idle.clear()
                ends: dict[int, int] = {}
                for msg in msgs:
                    ends[msg.partition()] = msg.offset() + 1

                def body(p, msgs=msgs, ends=ends):
                    values = [b"T:" + m.value() for m in msgs]
                    for m, value in zip(msgs, values):
                        _produce(p, self.sink, value, m.partition())
                    offsets = [ck.TopicPartition(self.source, part, off) for part, off in ends.items()]
                    txn._retry(lambda: p.send_offsets_to_transaction(
                        offsets, consumer.consumer_group_metadata(), CALL_TIMEOUT))
                    return values

                outcome = txn.run(f"transform/{n}", body, commit=True)
                n += 1
                ledger.ctp_batches += 1
                if outcome != "committed":
                    self._rewind(consumer, assignment)
        finally:
            consumer.close()


class Abandoner(threading.Thread):
    """Every 2-4 s a new transactional id opens a transaction, writes a few records and is left."""

    def __init__(self, bootstrap: str, topic: str, ledger: Ledger, rng: random.Random) -> None:
        super().__init__(daemon=True, name="abandoner")
        self.bootstrap, self.topic, self.ledger, self.rng = bootstrap, topic, ledger, rng
        self.halt = threading.Event()
        self.left: list = []  # the producers, kept alive (destroying one could end its transaction)

    def run(self) -> None:
        n = 0
        while not self.halt.wait(self.rng.uniform(2.0, 4.0)):
            name = f"abandoned/{n}"
            values = [f"{name}/{j}".encode() for j in range(5)]
            p = ck.Producer({"bootstrap.servers": self.bootstrap, "transactional.id": f"txn-left-{n}-{uuid.uuid4().hex[:6]}",
                             "transaction.timeout.ms": TXN_TIMEOUT_MS, "linger.ms": 2, **CLIENT})
            self.left.append(p)
            try:
                p.init_transactions(CALL_TIMEOUT)
                p.begin_transaction()
                for j, value in enumerate(values):
                    _produce(p, self.topic, value, j % PARTITIONS)
                p.flush(CALL_TIMEOUT)
            except ck.KafkaException:
                pass  # the broker went away; whatever reached it is an open transaction too
            self.ledger.record(name, "abandoned", values)
            n += 1


def read_committed(bootstrap: str, topic: str, timeout: float = 30.0) -> dict[int, list[bytes]]:
    """Every value a read_committed consumer (``check.crcs=true``) gets from each partition,
    read until it reaches the high watermark: {partition: [value...]}. AssertionError on any
    client error or if the end is not reached in ``timeout`` s."""
    ends = watermarks(bootstrap, topic, "read_uncommitted")
    consumer = ck.Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:8]}",
        "enable.auto.commit": False, "isolation.level": "read_committed", "check.crcs": True,
        "enable.partition.eof": True, "fetch.wait.max.ms": 20, "fetch.queue.backoff.ms": 1,
        "socket.timeout.ms": 10000, **QUIET,
    })
    out: dict[int, list[bytes]] = {p: [] for p in range(PARTITIONS)}
    at_end = {p for p in range(PARTITIONS) if ends[p] == 0}
    try:
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(PARTITIONS)])
        deadline = time.monotonic() + timeout
        while len(at_end) < PARTITIONS:
            if time.monotonic() > deadline:
                positions = {tp.partition: tp.offset for tp in consumer.position(
                    [ck.TopicPartition(topic, p) for p in range(PARTITIONS)])}
                raise AssertionError(f"{topic}: read_committed stopped at {positions}, high watermarks {ends}")
            for msg in consumer.consume(num_messages=10000, timeout=0.05):
                err = msg.error()
                if err is not None:
                    if err.code() == ck.KafkaError._PARTITION_EOF:
                        if msg.offset() >= ends[msg.partition()]:
                            at_end.add(msg.partition())
                        continue
                    raise AssertionError(f"{topic}-{msg.partition()}: client error {err!r}")
                if msg.offset() < ends[msg.partition()]:
                    out[msg.partition()].append(msg.value())
        return out
    finally:
        consumer.close()


def watermarks(bootstrap: str, topic: str, isolation: str) -> dict[int, int]:
    """ListOffsets latest per partition: the high watermark, or the last stable offset under read_committed."""
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": f"wm-{uuid.uuid4().hex[:8]}",
                            "isolation.level": isolation, "socket.timeout.ms": 10000, **QUIET})
    try:
        return {p: consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10, cached=False)[1]
                for p in range(PARTITIONS)}
    finally:
        consumer.close()


def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                            "isolation.level": "read_committed", "socket.timeout.ms": 10000, **QUIET})
    try:
        tps = consumer.committed([ck.TopicPartition(topic, p) for p in range(PARTITIONS)], timeout=15)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        consumer.close()


def verify(bootstrap: str, topics: dict[str, str], group: str, ledger: Ledger, context: str) -> dict:
    """Read both outputs and the input back; compare with the ledger. Returns numbers."""
    problems: list[str] = []
    out = read_committed(bootstrap, topics["out"])
    seen = collections.Counter(v for values in out.values() for v in values)
    dups = [v for v, n in seen.items() if n > 1]
    if dups:
        problems.append(f"out: {len(dups)} values appear more than once, e.g. {dups[:5]}")
    with ledger.lock:
        txns = dict(ledger.txns)
    known = set()
    for name, (outcome, values) in txns.items():
        if name.startswith("transform/"):
            continue
        known.update(values)
        present = [v for v in values if v in seen]
        if outcome == "committed" and len(present) != len(values):
            problems.append(f"committed {name}: {len(values) - len(present)} of {len(values)} records missing")
        elif outcome in ("aborted", "abandoned") and present:
            problems.append(f"{outcome} {name}: {len(present)} records visible to read_committed, e.g. {present[:3]}")
        elif outcome == "unknown" and present and len(present) != len(values):
            problems.append(f"unknown {name}: {len(present)} of {len(values)} records visible (not atomic)")
    strangers = [v for v in seen if v not in known]
    if strangers:
        problems.append(f"out: {len(strangers)} values of no transaction the clients ran, e.g. {strangers[:5]}")

    source = read_committed(bootstrap, topics["in"])
    sink = read_committed(bootstrap, topics["ctp-out"])
    for p in range(PARTITIONS):
        expected = [b"T:" + v for v in source[p]]
        got = sink[p]
        if got != expected[:len(got)] or len(got) != len(expected):
            extra = collections.Counter(got) - collections.Counter(expected)
            missing = collections.Counter(expected) - collections.Counter(got)
            problems.append(f"ctp-out-{p}: {len(got)} records for {len(expected)} inputs; "
                            f"duplicated or foreign {list(extra)[:5]}, missing {list(missing)[:5]}")
    ends = watermarks(bootstrap, topics["in"], "read_uncommitted")
    offsets = committed_offsets(bootstrap, group, topics["in"])
    if offsets != ends:
        problems.append(f"group offsets {offsets} are not the input's end offsets {ends}")
    assert not problems, f"{context}: " + "; ".join(problems[:12])
    return {"out_records": sum(seen.values()), "ctp_records": sum(len(v) for v in sink.values())}


def test_sigkill_loop_under_transactions_commits_exactly_once(fault_broker, tmp_path):
    seed = int(os.environ.get("LOGBROKER_FAULT_SEED", "0")) or random.randrange(1 << 30)
    rng = random.Random(seed)
    config = tmp_path / "broker.toml"
    config.write_text(BROKER_CONFIG)
    broker = fault_broker("--flush", "always", "--config", str(config))
    bootstrap = broker.bootstrap
    topics = {key: unique_topic(f"txn-crash-{key}") for key in ("out", "in", "ctp-out")}
    for name in topics.values():
        create_topic(bootstrap, name, PARTITIONS)
    group = unique_topic("txn-crash-group")
    ledger = Ledger()
    feeder = Feeder(bootstrap, topics["in"], ledger)
    txn_workers = [TxnWorker(bootstrap, topics["out"], f"w{i}", ledger, random.Random(rng.random())) for i in range(2)]
    transform = TransformWorker(bootstrap, topics["in"], topics["ctp-out"], group, ledger)
    abandoner = Abandoner(bootstrap, topics["out"], ledger, random.Random(rng.random()))
    workers = [feeder, *txn_workers, transform, abandoner]
    for w in workers:
        w.start()
    started = time.monotonic()
    try:
        time.sleep(1.0)
        for _ in range(KILLS):
            time.sleep(rng.uniform(0.0, 2.5))
            broker.kill()
            broker.start()
        restarted = time.monotonic()
        loop_seconds = restarted - started
        for w in (abandoner, *txn_workers, feeder):
            w.halt.set()
        for w in (abandoner, *txn_workers, feeder):
            w.join(GIVE_UP_S + 30)
            assert not w.is_alive(), f"{w.name} did not stop"
        # The last stable offset reaches the high watermark: no transaction outlives its timeout.
        limit = TXN_TIMEOUT_MS / 1000 + MARGIN_S

        def stable() -> bool:
            return all(watermarks(bootstrap, topics[k], "read_committed") ==
                       watermarks(bootstrap, topics[k], "read_uncommitted") for k in ("out",))

        wait_until(stable, limit - (time.monotonic() - restarted), interval=0.2,
                   what=f"every last stable offset to reach its high watermark (seed {seed})")
        stable_after = time.monotonic() - restarted
        try:
            wait_until(lambda: transform.idle.is_set() and _transform_done(bootstrap, topics, group), 60,
                       interval=0.2, what="the transform loop to reach the input's end")
        except AssertionError as exc:
            frame = sys._current_frames().get(transform.ident)
            where = "".join(traceback.format_stack(frame)[-6:]) if frame is not None else "(not running)"
            raise AssertionError(
                f"seed {seed}: {exc}; transform error {transform.error!r}, idle {transform.idle.is_set()}, "
                f"group offsets {committed_offsets(bootstrap, group, topics['in'])}, input ends "
                f"{watermarks(bootstrap, topics['in'], 'read_uncommitted')}, outcomes {dict(ledger.outcomes)}, "
                f"replaced {ledger.replaced[-3:]}, retried {transform.txn.retried[-5:] if transform.txn else None}; "
                f"the transform thread is at:\n{where}") from None
        transform.halt.set()
        transform.join(GIVE_UP_S + 30)
        assert not transform.is_alive(), "the transform loop did not stop"
        for w in (*txn_workers, transform):
            assert w.error is None, f"seed {seed}: {w.name} failed: {w.error!r}"
        final = verify(bootstrap, topics, group, ledger, f"seed {seed}, after {KILLS} kills")
        broker.restart(clean=True)
        verify(bootstrap, topics, group, ledger, f"seed {seed}, after a clean restart")
    finally:
        for w in workers:
            w.halt.set()
        abandoner.left.clear()
    assert not ledger.client_errors, f"seed {seed}: clients reported {ledger.client_errors[:10]}"
    assert not feeder.failed and not feeder.left, f"seed {seed}: feeder lost {feeder.failed[:5]}, {feeder.left} left"
    assert ledger.outcomes["committed"] > 0 and ledger.outcomes["aborted"] > 0, ledger.outcomes
    summary("txn_crash_loop", seed=seed, kills=KILLS, seconds=round(time.monotonic() - started, 1),
            loop_seconds=round(loop_seconds, 1), stable_after_last_kill_s=round(stable_after, 1),
            outcomes=dict(ledger.outcomes), producers_replaced=len(ledger.replaced),
            transform_batches=ledger.ctp_batches, replaced=ledger.replaced[:5],
            broker_warnings=[line.strip() for line in broker.all_log_lines if " WARNING " in line][:10], **final)


def _transform_done(bootstrap: str, topics: dict[str, str], group: str) -> bool:
    return committed_offsets(bootstrap, group, topics["in"]) == watermarks(bootstrap, topics["in"], "read_uncommitted")
