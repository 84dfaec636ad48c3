"""What the transaction coordinator answers: frozen results and the markers to write.

The coordinator speaks no protocol: :class:`TxnError` names each outcome
after the Kafka error code the handlers send (``TxnError.X.value`` is the
name of the ``ErrorCode`` member), so the one mapping lives in the handlers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from logbroker.broker.internal_topic import FlushPoint


class TxnError(enum.Enum):
    NONE = "none"
    INVALID_REQUEST = "invalid_request"
    COORDINATOR_LOAD_IN_PROGRESS = "coordinator_load_in_progress"
    COORDINATOR_NOT_AVAILABLE = "coordinator_not_available"
    NOT_COORDINATOR = "not_coordinator"
    INVALID_TRANSACTION_TIMEOUT = "invalid_transaction_timeout"
    INVALID_PRODUCER_ID_MAPPING = "invalid_producer_id_mapping"
    PRODUCER_FENCED = "producer_fenced"
    CONCURRENT_TRANSACTIONS = "concurrent_transactions"
    INVALID_TXN_STATE = "invalid_txn_state"
    TRANSACTION_ABORTABLE = "transaction_abortable"
    TRANSACTIONAL_ID_NOT_FOUND = "transactional_id_not_found"
    INVALID_REGULAR_EXPRESSION = "invalid_regular_expression"
    UNKNOWN_SERVER_ERROR = "unknown_server_error"


@dataclass(frozen=True, slots=True)
class TxnMarker:
    """One control marker the broker must append (WriteTxnMarkers, done in-process).

    The batch: producer id and epoch as given, transactional and control
    attributes set, one record with key (version int16 0, type int16: 0 abort,
    1 commit) and value (version int16 0, ``coordinator_epoch`` int32).
    ``transaction_version``: the version the transaction ran under (2: the
    epoch was bumped for this marker).
    """

    transactional_id: str
    topic: str
    partition: int
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int
    transaction_version: int


@dataclass(frozen=True, slots=True)
class InitProducerIdResult:
    """``producer_id``/``producer_epoch`` are -1 on error. CONCURRENT_TRANSACTIONS
    with ``markers``: an ongoing transaction was fenced and is being aborted;
    write the markers, call ``markers_written``, and the client retries."""

    error: TxnError
    producer_id: int = -1
    producer_epoch: int = -1
    markers: tuple[TxnMarker, ...] = ()
    flush: FlushPoint | None = None


@dataclass(frozen=True, slots=True)
class TxnResult:
    """AddPartitionsToTxn, AddOffsetsToTxn and ``markers_written``: an error, and
    where to fsync to make the change durable (None: nothing written)."""

    error: TxnError
    flush: FlushPoint | None = None


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """AddPartitionsToTxn with verify_only (v4+): per partition, NONE if it is in
    the transaction, else TRANSACTION_ABORTABLE; one error for all on failure."""

    partitions: dict[tuple[str, int], TxnError]


@dataclass(frozen=True, slots=True)
class EndTxnResult:
    """EndTxn. ``producer_id``/``producer_epoch``: what EndTxn v5+ answers under
    TV2 (the bumped epoch, or a new id at epoch 0 when the epoch ran out); -1
    otherwise. ``markers``: the control markers to write before
    ``markers_written`` completes the transaction (empty when it completed at
    once because no partition joined)."""

    error: TxnError
    producer_id: int = -1
    producer_epoch: int = -1
    markers: tuple[TxnMarker, ...] = ()
    flush: FlushPoint | None = None


@dataclass(frozen=True, slots=True)
class Written:
    """What :meth:`fire_deadlines` did: aborts of timed-out transactions (their
    markers to write) and expired ids (tombstones)."""

    markers: tuple[TxnMarker, ...] = ()
    aborted: tuple[str, ...] = ()
    expired: tuple[str, ...] = ()
    flush: FlushPoint | None = None


@dataclass(frozen=True, slots=True)
class DescribedTransaction:
    """DescribeTransactions' view of one id (only ``error`` is meaningful on error)."""

    transactional_id: str
    error: TxnError
    state: str = ""
    producer_id: int = -1
    producer_epoch: int = -1
    timeout_ms: int = 0
    start_ms: int = -1
    topics: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True, slots=True)
class ListedTransaction:
    transactional_id: str
    producer_id: int
    state: str


@dataclass(frozen=True, slots=True)
class ListTransactionsResult:
    error: TxnError
    unknown_state_filters: tuple[str, ...] = ()
    transactions: tuple[ListedTransaction, ...] = ()


@dataclass(frozen=True, slots=True)
class TxnStatistics:
    transactional_ids: int
    ongoing: int
    awaiting_markers: int
    log_records: int
