"""The transaction coordinator (KIP-98, KIP-360, KIP-890) as a state machine.

Every command takes ``now_ms``, appends the transactional id's new metadata
to ``__transaction_state`` through :class:`TransactionStateTopic`, and only
then changes memory; its result says where to fsync (``flush``). Nothing
here sleeps or does other I/O: the control markers that end a transaction
are *returned* (:class:`TxnMarker`) for the broker to append to the data
partitions, after which it calls :meth:`TransactionCoordinator.markers_written`
to move PrepareCommit/PrepareAbort to CompleteCommit/CompleteAbort. After a
restart, :meth:`TransactionCoordinator.pending_markers` lists the markers of
every transaction left in a Prepare* state so the broker finishes them.

The rules (which checks, in which order, answering which error) follow
Kafka's ``TransactionCoordinator``; the transitions themselves are
:class:`~logbroker.broker.transactions.state.TxnMetadata` methods. Two
deadlines sit in one heap with lazily dropped stale entries: each Ongoing
transaction's timeout (it is aborted with its epoch bumped, so the zombie
producer is fenced) and the periodic expiry of idle transactional ids. The
broker polls :meth:`next_deadline_ms` and calls :meth:`fire_deadlines`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import replace

from logbroker.broker.groups import OFFSETS_TOPIC
from logbroker.broker.internal_topic import FlushPoint
from logbroker.broker.transactions.config import TransactionConfig
from logbroker.broker.transactions.transaction_log_format import (
    RecordFormatError,
    decode_key,
    decode_value,
    encode_key,
    encode_value,
)
from logbroker.broker.transactions.results import (
    DescribedTransaction,
    EndTxnResult,
    InitProducerIdResult,
    ListedTransaction,
    ListTransactionsResult,
    TxnError,
    TxnMarker,
    TxnResult,
    TxnStatistics,
    VerifyResult,
    Written,
)
from logbroker.broker.transactions.state import (
    MAX_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    TransactionState,
    TransactionVersion,
    TxnMetadata,
    is_epoch_exhausted,
    supports_epoch_bump,
)
from logbroker.broker.transactions.store import TransactionStateTopic
from logbroker.errors import BatchTooLargeError, LogbrokerError, StorageError

log = logging.getLogger("logbroker.transactions")

E = TxnError
S = TransactionState
_TIMEOUT, _CHECK = "timeout", "check"
TopicPartition = tuple[str, int]


class TransactionCoordinator:
    """Every transactional id of this broker. Not thread-safe: one thread drives it.

    ``allocate_producer_id()`` hands out a producer id never used before
    (the broker's; it may raise LogbrokerError or OSError).
    ``offsets_partition_for(group_id)``: the ``__consumer_offsets`` partition
    holding a group's offsets (AddOffsetsToTxn adds it to the transaction).
    Create it, then call :meth:`load`; until then commands answer
    COORDINATOR_LOAD_IN_PROGRESS.
    """

    def __init__(
        self, config: TransactionConfig, store: TransactionStateTopic, allocate_producer_id: Callable[[], int],
        *, offsets_partition_for: Callable[[str], int] = lambda group_id: 0,
    ) -> None:
        self.config = config
        self._store = store
        self._allocate = allocate_producer_id
        self._offsets_partition_for = offsets_partition_for
        self._txns: dict[str, TxnMetadata] = {}
        self._timeouts: dict[str, int] = {}  # transactional id -> when its Ongoing transaction is aborted
        self._heap: list[tuple[int, int, str, str]] = []
        self._seq = itertools.count()
        self._next_check: int | None = None
        self.loading = True

    def __repr__(self) -> str:
        state = "loading" if self.loading else "active"
        return f"TransactionCoordinator({state}, ids={len(self._txns)}, ongoing={len(self._timeouts)})"

    def transaction(self, transactional_id: str) -> TxnMetadata | None:
        """The id's current metadata (a frozen value), or None."""
        return self._txns.get(transactional_id)

    # -- persistence -----------------------------------------------------------

    def load(self, now_ms: int) -> None:
        """Replay the internal topic. Unreadable records are skipped with a warning.

        Transactions left in PrepareCommit/PrepareAbort still need their
        markers: see :meth:`pending_markers`. Ongoing ones get their timeout
        deadline back.
        """
        skipped = 0
        for raw_key, raw_value in self._store.replay():
            try:
                transactional_id = decode_key(raw_key)
                meta = decode_value(transactional_id, raw_value) if transactional_id is not None else None
            except RecordFormatError:
                skipped += 1
                continue
            if transactional_id is None or (meta is None and raw_value is not None):
                skipped += 1  # a newer format than this broker knows
                continue
            if meta is None:
                self._txns.pop(transactional_id, None)
            else:
                self._txns[transactional_id] = meta
        if skipped:
            log.warning("skipped %d unreadable records in %s", skipped, self._store.NAME)
        for meta in self._txns.values():
            self._track(meta)
        self.loading = False
        self._next_check = now_ms + self.config.remove_expired_interval_ms
        self._push(self._next_check, _CHECK, "")
        log.info(
            "loaded %d transactional ids (%d awaiting markers) from %d records",
            len(self._txns), sum(m.state.is_prepared for m in self._txns.values()), self._store.record_count,
        )
        self._store.compact_if_superseded(self._live_records, now_ms, self.config.compact_min_records)

    def _live_records(self) -> list[tuple[bytes, bytes | None]]:
        version = self.config.log_value_version
        return [(encode_key(m.transactional_id), encode_value(m, version)) for m in self._txns.values()]

    def _write(self, metas: list[TxnMetadata], now_ms: int) -> tuple[FlushPoint | None, TxnError | None]:
        """Append ``metas`` (in order, one batch) and make them current; (flush, None) or (None, error).

        The errors are those Kafka's coordinator answers for a failed append.
        """
        version = self.config.log_value_version
        records = [(encode_key(m.transactional_id), encode_value(m, version)) for m in metas]
        try:
            flush = self._store.append(records, now_ms)
        except BatchTooLargeError as exc:
            log.warning("%s refused %d records: %s", self._store.NAME, len(records), exc)
            return None, E.UNKNOWN_SERVER_ERROR
        except StorageError as exc:
            log.warning("cannot write to %s: %s", self._store.NAME, exc)
            return None, E.NOT_COORDINATOR
        except LogbrokerError as exc:
            log.warning("cannot write to %s: %s", self._store.NAME, exc)
            return None, E.COORDINATOR_NOT_AVAILABLE
        for meta in metas:
            self._txns[meta.transactional_id] = meta
        self._track(metas[-1])
        self._store.compact_if_superseded(self._live_records, now_ms, self.config.compact_min_records)
        return flush, None

    def _new_producer_id(self) -> int | None:
        try:
            return self._allocate()
        except (LogbrokerError, OSError) as exc:
            log.warning("cannot allocate a producer id: %s", exc)
            return None

    # -- timers ----------------------------------------------------------------

    def _push(self, deadline: int, kind: str, transactional_id: str) -> None:
        heapq.heappush(self._heap, (deadline, next(self._seq), kind, transactional_id))
        if len(self._heap) > 2 * len(self._timeouts) + 1024:
            self._heap = [(d, next(self._seq), _TIMEOUT, t) for t, d in self._timeouts.items()]
            if self._next_check is not None:
                self._heap.append((self._next_check, next(self._seq), _CHECK, ""))
            heapq.heapify(self._heap)

    def _track(self, meta: TxnMetadata) -> None:
        """Keep the timeout deadline of an Ongoing transaction (Kafka aborts once start + timeout < now)."""
        if meta.state is not S.ONGOING:
            self._timeouts.pop(meta.transactional_id, None)
            return
        deadline = meta.start_ms + meta.timeout_ms + 1
        if self._timeouts.get(meta.transactional_id) != deadline:
            self._timeouts[meta.transactional_id] = deadline
            self._push(deadline, _TIMEOUT, meta.transactional_id)

    def _live(self, entry: tuple[int, int, str, str]) -> bool:
        deadline, _, kind, transactional_id = entry
        if kind == _CHECK:
            return self._next_check == deadline
        return self._timeouts.get(transactional_id) == deadline

    def next_deadline_ms(self) -> int | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap and not self._live(heap[0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def fire_deadlines(self, now_ms: int) -> Written:
        """Abort every transaction past its timeout and, when due, expire idle ids.

        Returns the markers of the aborts (write them, then call
        :meth:`markers_written` per transactional id) and the last flush point.
        """
        markers: list[TxnMarker] = []
        aborted: list[str] = []
        expired: tuple[str, ...] = ()
        flush = None
        # self._heap, not a local: a push below may rebuild the heap.
        while self._heap and self._heap[0][0] <= now_ms:
            entry = heapq.heappop(self._heap)
            if not self._live(entry):
                continue
            _, _, kind, transactional_id = entry
            if kind == _CHECK:
                self._next_check = now_ms + self.config.remove_expired_interval_ms
                self._push(self._next_check, _CHECK, "")
                expired, written = self._expire(now_ms)
                flush = written or flush
                continue
            del self._timeouts[transactional_id]
            meta = self._txns.get(transactional_id)
            if meta is None or meta.state is not S.ONGOING:
                continue
            log.info("transaction %s timed out after %d ms; aborting it", transactional_id, meta.timeout_ms)
            metas, new_markers = self._fence_and_abort(meta, now_ms)
            written, error = self._write(metas, now_ms)
            if error is not None:
                retry = now_ms + self.config.abort_retry_interval_ms
                self._timeouts[transactional_id] = retry
                self._push(retry, _TIMEOUT, transactional_id)
                continue
            flush = written
            markers += new_markers
            aborted.append(transactional_id)
        return Written(tuple(markers), tuple(aborted), expired, flush)

    def _expire(self, now_ms: int) -> tuple[tuple[str, ...], FlushPoint | None]:
        """Tombstone ids idle for ``transactional_id_expiration_ms`` outside a transaction."""
        cutoff = now_ms - self.config.transactional_id_expiration_ms
        doomed = [
            m for m in self._txns.values() if m.state.expiration_allowed and m.last_update_ms <= cutoff
        ]
        if not doomed:
            return (), None
        for meta in doomed:
            meta.prepare_dead()  # checks the transition
        try:
            flush = self._store.append([(encode_key(m.transactional_id), None) for m in doomed], now_ms)
        except LogbrokerError as exc:
            log.warning("cannot expire %d transactional ids: %s", len(doomed), exc)
            return (), None
        for meta in doomed:
            del self._txns[meta.transactional_id]
        log.info("expired %d idle transactional ids", len(doomed))
        return tuple(m.transactional_id for m in doomed), flush

    # -- markers ---------------------------------------------------------------

    def _markers(self, meta: TxnMetadata) -> tuple[TxnMarker, ...]:
        commit = meta.state is S.PREPARE_COMMIT
        return tuple(
            TxnMarker(
                meta.transactional_id, topic, partition, meta.producer_id, meta.producer_epoch, commit,
                self.config.coordinator_epoch, meta.client_version,
            )
            for topic, partition in sorted(meta.partitions)
        )

    def pending_markers(self) -> tuple[TxnMarker, ...]:
        """The markers of every transaction in PrepareCommit/PrepareAbort (after a
        restart, or a ``markers_written`` that failed): write them, then call
        :meth:`markers_written`."""
        out: list[TxnMarker] = []
        for meta in self._txns.values():
            if meta.state.is_prepared:
                out += self._markers(meta)
        return tuple(out)

    def _prepared(self, prepared: TxnMetadata, now_ms: int) -> tuple[list[TxnMetadata], tuple[TxnMarker, ...]]:
        """What to write for a new Prepare* state: with no partitions there are no
        markers to wait for, so the completion is written with it."""
        if prepared.partitions:
            return [prepared], self._markers(prepared)
        return [prepared, prepared.prepare_complete(now_ms)], ()

    def markers_written(self, transactional_id: str, now_ms: int) -> TxnResult:
        """Every marker of the transaction is appended: PrepareCommit/PrepareAbort ->
        CompleteCommit/CompleteAbort. INVALID_TXN_STATE if it was not in a Prepare* state."""
        if self.loading:
            return TxnResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        meta = self._txns.get(transactional_id)
        if meta is None:
            return TxnResult(E.INVALID_PRODUCER_ID_MAPPING)
        if not meta.state.is_prepared:
            return TxnResult(E.INVALID_TXN_STATE)
        flush, error = self._write([meta.prepare_complete(now_ms)], now_ms)
        return TxnResult(error or E.NONE, flush)

    # -- InitProducerId --------------------------------------------------------

    def init_producer_id(
        self, transactional_id: str | None, timeout_ms: int, now_ms: int, *,
        producer_id: int = NO_PRODUCER_ID, producer_epoch: int = NO_PRODUCER_EPOCH,
    ) -> InitProducerIdResult:
        """InitProducerId. ``producer_id``/``producer_epoch`` (v3+, KIP-360): the
        producer's current ones when it recovers from an error, else -1.

        A null id gets a fresh producer id at epoch 0 (an idempotent producer).
        An Ongoing transaction is fenced (epoch bump) and aborted first: the
        answer is CONCURRENT_TRANSACTIONS with the abort's markers, and the
        client's retry then bumps the epoch again. An exhausted epoch gets a
        new producer id.
        """
        if (producer_id == NO_PRODUCER_ID) != (producer_epoch == NO_PRODUCER_EPOCH):
            return InitProducerIdResult(E.INVALID_REQUEST)
        expected = None if producer_id == NO_PRODUCER_ID else (producer_id, producer_epoch)
        if transactional_id is None:
            new_id = self._new_producer_id()
            if new_id is None:
                return InitProducerIdResult(E.COORDINATOR_NOT_AVAILABLE)
            return InitProducerIdResult(E.NONE, new_id, 0)
        if not transactional_id:
            return InitProducerIdResult(E.INVALID_REQUEST)
        if not 0 < timeout_ms <= self.config.max_timeout_ms:
            return InitProducerIdResult(E.INVALID_TRANSACTION_TIMEOUT)
        if self.loading:
            return InitProducerIdResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        meta = self._txns.get(transactional_id)
        if meta is None:
            new_id = self._new_producer_id()
            if new_id is None:
                return InitProducerIdResult(E.COORDINATOR_NOT_AVAILABLE)
            meta = TxnMetadata(transactional_id, new_id, timeout_ms, S.EMPTY, now_ms)
        if expected is not None and not _is_valid_producer_id(meta, *expected):
            return InitProducerIdResult(E.PRODUCER_FENCED)
        if meta.state.is_prepared:
            return InitProducerIdResult(E.CONCURRENT_TRANSACTIONS)
        if meta.state is S.ONGOING:
            log.info("transactional id %s re-initialised: aborting its ongoing transaction", transactional_id)
            metas, markers = self._fence_and_abort(meta, now_ms)
            flush, error = self._write(metas, now_ms)
            if error is not None:
                return InitProducerIdResult(error)
            return InitProducerIdResult(E.CONCURRENT_TRANSACTIONS, markers=markers, flush=flush)
        if meta.epoch_exhausted and (expected is None or expected[1] == meta.producer_epoch):
            new_id = self._new_producer_id()
            if new_id is None:
                return InitProducerIdResult(E.COORDINATOR_NOT_AVAILABLE)
            new = meta.prepare_producer_id_rotation(new_id, timeout_ms, now_ms, expected is not None)
        elif meta.epoch_exhausted:
            # Kafka's epoch increment refuses an exhausted epoch with an
            # unexpected server error; so do we.
            return InitProducerIdResult(E.UNKNOWN_SERVER_ERROR)
        else:
            bumped = meta.prepare_increment_producer_epoch(
                timeout_ms, expected[1] if expected is not None else None, now_ms
            )
            if bumped is None:
                return InitProducerIdResult(E.PRODUCER_FENCED)
            new = bumped
        flush, error = self._write([new], now_ms)
        if error is not None:
            return InitProducerIdResult(error)
        log.info("transactional id %s: producer id %d epoch %d", transactional_id, new.producer_id, new.producer_epoch)
        return InitProducerIdResult(E.NONE, new.producer_id, new.producer_epoch, flush=flush)

    def _fence_and_abort(self, meta: TxnMetadata, now_ms: int) -> tuple[list[TxnMetadata], tuple[TxnMarker, ...]]:
        """Ongoing -> PrepareAbort with the epoch bumped past the producer's (Kafka's
        PrepareEpochFence followed by an abort not from the client, at the
        broker's transaction version: TV2 bumps once more)."""
        fenced = meta.prepare_fence_producer_epoch()
        version = self.config.transaction_version
        version = version if supports_epoch_bump(version) else TransactionVersion.TV_0
        base = replace(meta, producer_epoch=fenced.producer_epoch, last_producer_epoch=NO_PRODUCER_EPOCH)
        prepared = base.prepare_abort_or_commit(S.PREPARE_ABORT, version, NO_PRODUCER_ID, now_ms, False)
        return self._prepared(prepared, now_ms)

    # -- AddPartitionsToTxn / AddOffsetsToTxn --------------------------------------

    def _check_producer(
        self, transactional_id: str, producer_id: int, producer_epoch: int,
    ) -> tuple[TxnMetadata, None] | tuple[None, TxnError]:
        """The checks AddPartitionsToTxn and its verify-only form share, in Kafka's
        order; (metadata, None) or (None, error)."""
        if not transactional_id:
            return None, E.INVALID_REQUEST
        if self.loading:
            return None, E.COORDINATOR_LOAD_IN_PROGRESS
        meta = self._txns.get(transactional_id)
        if meta is None or meta.producer_id != producer_id:
            return None, E.INVALID_PRODUCER_ID_MAPPING
        if meta.producer_epoch != producer_epoch:
            return None, E.PRODUCER_FENCED
        if meta.state.is_prepared:
            return None, E.CONCURRENT_TRANSACTIONS
        return meta, None

    def add_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: Iterable[TopicPartition],
        now_ms: int, *, client_version: int = TransactionVersion.TV_0,
    ) -> TxnResult:
        """AddPartitionsToTxn (v0-v3, or v4+ without verify_only); also how a TV2
        Produce or TxnOffsetCommit v5 joins its partition (``client_version`` 2).

        Partitions already in an Ongoing transaction answer NONE without a write.
        """
        meta, error = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return TxnResult(error or E.INVALID_REQUEST)
        added = frozenset(partitions)
        if meta.state is S.ONGOING and added <= meta.partitions:
            return TxnResult(E.NONE)
        flush, error = self._write([meta.prepare_add_partitions(added, now_ms, client_version)], now_ms)
        return TxnResult(error or E.NONE, flush)

    def verify_partitions(
        self, transactional_id: str, producer_id: int, producer_epoch: int, partitions: Iterable[TopicPartition],
    ) -> VerifyResult:
        """AddPartitionsToTxn v4+ with verify_only (KIP-890 part 1): which partitions
        are in the transaction (NONE) and which are not (TRANSACTION_ABORTABLE).
        The check a TV1 transactional Produce or TxnOffsetCommit makes before it appends."""
        wanted = list(partitions)
        meta, error = self._check_producer(transactional_id, producer_id, producer_epoch)
        if meta is None:
            return VerifyResult({tp: error or E.INVALID_REQUEST for tp in wanted})
        return VerifyResult({tp: E.NONE if tp in meta.partitions else E.TRANSACTION_ABORTABLE for tp in wanted})

    def add_offsets(self, transactional_id: str, producer_id: int, producer_epoch: int, group_id: str,
                    now_ms: int) -> TxnResult:
        """AddOffsetsToTxn: the group's ``__consumer_offsets`` partition joins the
        transaction (a TV1 request: TV2 clients skip it)."""
        partition = (OFFSETS_TOPIC, self._offsets_partition_for(group_id))
        return self.add_partitions(transactional_id, producer_id, producer_epoch, (partition,), now_ms)

    # -- EndTxn ----------------------------------------------------------------

    def end_txn(
        self, transactional_id: str, producer_id: int, producer_epoch: int, commit: bool, now_ms: int, *,
        client_version: int = TransactionVersion.TV_0,
    ) -> EndTxnResult:
        """EndTxn: Ongoing -> PrepareCommit/PrepareAbort, with the markers to write.

        ``client_version``: 2 for EndTxn v5+ (the epoch is bumped on every end,
        and the answer carries the producer id and epoch to use next), else 0.
        A retry of an end that already completed answers NONE without a write.
        """
        if not transactional_id:
            return EndTxnResult(E.INVALID_REQUEST)
        if self.loading:
            return EndTxnResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        meta = self._txns.get(transactional_id)
        if meta is None:
            return EndTxnResult(E.INVALID_PRODUCER_ID_MAPPING)
        if supports_epoch_bump(client_version):
            return self._end_v2(meta, producer_id, producer_epoch, commit, now_ms, client_version)
        return self._end_v1(meta, producer_id, producer_epoch, commit, now_ms)

    def _end_v1(self, meta: TxnMetadata, producer_id: int, epoch: int, commit: bool, now_ms: int) -> EndTxnResult:
        if meta.producer_id != producer_id:
            return EndTxnResult(E.INVALID_PRODUCER_ID_MAPPING)
        if epoch != meta.producer_epoch:
            return EndTxnResult(E.PRODUCER_FENCED)
        prepare, complete = _targets(commit)
        if meta.state is S.ONGOING:
            prepared = meta.prepare_abort_or_commit(prepare, TransactionVersion.TV_0, NO_PRODUCER_ID, now_ms, False)
            metas, markers = self._prepared(prepared, now_ms)
            flush, error = self._write(metas, now_ms)
            if error is not None:
                return EndTxnResult(error)
            return EndTxnResult(E.NONE, markers=markers, flush=flush)
        if meta.state is complete:
            return EndTxnResult(E.NONE)
        if meta.state is prepare:
            return EndTxnResult(E.CONCURRENT_TRANSACTIONS)
        return self._invalid_state(meta, commit)

    def _end_v2(self, meta: TxnMetadata, producer_id: int, epoch: int, commit: bool, now_ms: int,
                client_version: int) -> EndTxnResult:
        # Under TV2 the same epoch means the *next* end, so a retry is recognised
        # by the epoch it bumped (or, across an exhausted epoch, the old id).
        retry_on_overflow = (
            meta.prev_producer_id == producer_id and epoch == MAX_EPOCH - 1 and meta.producer_epoch == 0
        )
        retry_on_bump = meta.producer_epoch == epoch + 1
        if meta.state in (S.ONGOING, S.EMPTY):
            valid_epoch = epoch == meta.producer_epoch
        elif meta.state.is_prepared:
            valid_epoch = retry_on_bump
        else:
            valid_epoch = retry_on_bump or retry_on_overflow or epoch == meta.producer_epoch
        is_retry = retry_on_bump or retry_on_overflow
        if meta.producer_id != producer_id and not retry_on_overflow:
            return EndTxnResult(E.INVALID_PRODUCER_ID_MAPPING)
        if not valid_epoch:
            return EndTxnResult(E.PRODUCER_FENCED)
        prepare, _ = _targets(commit)
        state = meta.state
        if state is S.ONGOING:
            return self._complete_v2(meta, prepare, client_version, now_ms, no_partition_added=False)
        # Kafka's table for the completed states: a retry (the bumped epoch)
        # of the same outcome answers NONE; an abort with the current epoch
        # starts and aborts an empty transaction; anything else is invalid.
        if state is S.COMPLETE_COMMIT:
            if commit:
                return self._retried(meta) if is_retry else self._invalid_state(meta, commit)
            return self._invalid_state(meta, commit) if is_retry else self._abort_v2(meta, client_version, now_ms)
        if state is S.COMPLETE_ABORT:
            if commit:
                return self._invalid_state(meta, commit)
            return self._retried(meta) if is_retry else self._abort_v2(meta, client_version, now_ms)
        if state.is_prepared:
            return EndTxnResult(E.CONCURRENT_TRANSACTIONS) if state is prepare else self._invalid_state(meta, commit)
        if state is S.EMPTY and not commit:
            return self._abort_v2(meta, client_version, now_ms)
        return self._invalid_state(meta, commit)

    def _abort_v2(self, meta: TxnMetadata, client_version: int, now_ms: int) -> EndTxnResult:
        """TV2 lets a client abort when no partition joined (it may not know the state)."""
        return self._complete_v2(meta, S.PREPARE_ABORT, client_version, now_ms, no_partition_added=True)

    def _complete_v2(self, meta: TxnMetadata, prepare: TransactionState, client_version: int, now_ms: int,
                     *, no_partition_added: bool) -> EndTxnResult:
        next_id = NO_PRODUCER_ID
        if meta.epoch_exhausted:
            allocated = self._new_producer_id()
            if allocated is None:
                return EndTxnResult(E.COORDINATOR_NOT_AVAILABLE)
            next_id = allocated
        prepared = meta.prepare_abort_or_commit(prepare, client_version, next_id, now_ms, no_partition_added)
        metas, markers = self._prepared(prepared, now_ms)
        flush, error = self._write(metas, now_ms)
        if error is not None:
            return EndTxnResult(error)
        done = prepared.prepare_complete(now_ms)
        return EndTxnResult(E.NONE, done.producer_id, done.producer_epoch, markers, flush)

    @staticmethod
    def _retried(meta: TxnMetadata) -> EndTxnResult:
        """A retried end that already completed: the id and epoch to use next."""
        return EndTxnResult(E.NONE, meta.producer_id, meta.producer_epoch)

    @staticmethod
    def _invalid_state(meta: TxnMetadata, commit: bool) -> EndTxnResult:
        log.warning(
            "transactional id %s is %s but was asked to %s", meta.transactional_id, meta.state.value,
            "commit" if commit else "abort",
        )
        return EndTxnResult(E.INVALID_TXN_STATE)

    # -- DescribeTransactions / ListTransactions ------------------------------------

    def describe_transactions(self, transactional_ids: Iterable[str]) -> list[DescribedTransaction]:
        """DescribeTransactions, one answer per id in request order."""
        out = []
        for transactional_id in transactional_ids:
            meta = self._txns.get(transactional_id)
            if not transactional_id:
                out.append(DescribedTransaction(transactional_id, E.INVALID_REQUEST))
            elif self.loading:
                out.append(DescribedTransaction(transactional_id, E.COORDINATOR_LOAD_IN_PROGRESS))
            elif meta is None:
                out.append(DescribedTransaction(transactional_id, E.TRANSACTIONAL_ID_NOT_FOUND))
            else:
                out.append(DescribedTransaction(
                    transactional_id, E.NONE, meta.state.value, meta.producer_id, meta.producer_epoch,
                    meta.timeout_ms, meta.start_ms, meta.topics(),
                ))
        return out

    def list_transactions(
        self, now_ms: int, *, states: Iterable[str] = (), producer_ids: Iterable[int] = (),
        duration_ms: int = -1, transactional_id_pattern: str | None = None,
    ) -> ListTransactionsResult:
        """ListTransactions. Filters (each ignored when empty or negative): state
        names (unknown ones are reported back), producer ids, "running longer
        than ``duration_ms``" (v1+), and a regular expression the whole
        transactional id must match (v2+)."""
        if self.loading:
            return ListTransactionsResult(E.COORDINATOR_LOAD_IN_PROGRESS)
        names = list(states)
        wanted = {s for name in names if (s := S.from_name(name)) is not None}
        unknown = tuple(name for name in names if S.from_name(name) is None)
        pids = set(producer_ids)
        pattern = None
        if transactional_id_pattern:
            try:
                pattern = re.compile(transactional_id_pattern)
            except re.error:
                return ListTransactionsResult(E.INVALID_REGULAR_EXPRESSION)
        listed = tuple(
            ListedTransaction(m.transactional_id, m.producer_id, m.state.value)
            for m in self._txns.values()
            if (not pids or m.producer_id in pids)
            and (not names or m.state in wanted)
            and (duration_ms < 0 or now_ms - m.start_ms > duration_ms)
            and (pattern is None or pattern.fullmatch(m.transactional_id))
        )
        return ListTransactionsResult(E.NONE, unknown, listed)

    def statistics(self) -> TxnStatistics:
        return TxnStatistics(
            transactional_ids=len(self._txns),
            ongoing=len(self._timeouts),
            awaiting_markers=sum(m.state.is_prepared for m in self._txns.values()),
            log_records=self._store.record_count,
        )


def _targets(commit: bool) -> tuple[TransactionState, TransactionState]:
    if commit:
        return S.PREPARE_COMMIT, S.COMPLETE_COMMIT
    return S.PREPARE_ABORT, S.COMPLETE_ABORT


def _is_valid_producer_id(meta: TxnMetadata, producer_id: int, epoch: int) -> bool:
    """KIP-360: a producer that names its id and epoch is fenced unless the id is
    brand new here, is the current one (the epoch is checked when bumping), or is
    the previous one with an exhausted epoch (a retry of the call that replaced it)."""
    return (
        meta.producer_epoch == NO_PRODUCER_EPOCH
        or producer_id == meta.producer_id
        or (producer_id == meta.prev_producer_id and is_epoch_exhausted(epoch))
    )
