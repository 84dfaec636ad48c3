"""The transaction manager of a transactional producer: its state and its coordinator requests.

:class:`TransactionManager` owns everything transactional of one producer, as
the Java client's ``TransactionManager`` does: the state of the current
transaction, the partitions already in it, those waiting for
AddPartitionsToTxn, and the error that made it abortable or the producer
fenced. The producer drives it through methods; the sender asks it whether a
partition may be sent yet (:meth:`ready`) and reports failed batches to it
(:meth:`record_failure`). Producer id and epoch stay with the producer (the
sender stamps them on batches); the manager's requests take them as arguments.

States (Kafka's, minus the ones only a broker-side epoch bump needs)::

    UNINITIALIZED --init_transactions--> READY --begin--> IN_TRANSACTION --commit--> COMMITTING --> READY
                                                             |  |                       |
                                                             |  +--abort--> ABORTING --> READY
                                                             +-- a record fails --> ABORTABLE --abort--^
    any state --PRODUCER_FENCED, INVALID_PRODUCER_EPOCH, TRANSACTIONAL_ID_AUTHORIZATION_FAILED--> FATAL

Coordinator requests go to the transaction coordinator (FindCoordinator key
type 1) on the ``"txn"`` lane; TxnOffsetCommit goes to the group's
coordinator. Retriable answers (CONCURRENT_TRANSACTIONS,
COORDINATOR_LOAD_IN_PROGRESS, NOT_COORDINATOR...) and lost connections are
retried with backoff for at most ``max_block_ms``, then KafkaTimeoutError;
the operation may then be called again.
"""

from __future__ import annotations

import enum
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import trio

from logbroker.errors import (
    CommitFailedError,
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    TransactionAbortableError,
    TransactionStateError,
)
from logbroker.protocol import ApiKey, ErrorCode

from . import _wire
from ._errors import FENCING_CODES, transaction_error
from .cluster import Cluster
from .config import ProducerConfig
from .types import ConsumerGroupMetadata, TopicPartition

__all__ = ["TransactionManager", "TxnState"]

log = logging.getLogger("logbroker.client.producer")

_TXN_KEY = 1  # FindCoordinator key type of transactional ids
_COORDINATOR_MOVED = frozenset({ErrorCode.not_coordinator, ErrorCode.coordinator_not_available})
_GROUP_FENCED = frozenset({ErrorCode.unknown_member_id, ErrorCode.illegal_generation, ErrorCode.fenced_instance_id,
                           ErrorCode.rebalance_in_progress})


class TxnState(enum.Enum):
    UNINITIALIZED = "uninitialized"
    INITIALIZING = "initializing"
    READY = "ready"
    IN_TRANSACTION = "in transaction"
    COMMITTING = "committing"
    ABORTING = "aborting"
    ABORTABLE = "abortable error"
    FATAL = "fatal error"


class _Retry(Exception):
    """Internal: the answer says try again (after backoff)."""

    def __init__(self, error: KafkaError) -> None:
        super().__init__(str(error))
        self.error = error


class TransactionManager:
    """The transactional state of one producer (see the module docstring). One trio loop."""

    def __init__(self, config: ProducerConfig, cluster: Cluster) -> None:
        assert config.transactional_id is not None
        self.transactional_id: str = config.transactional_id
        self._config = config
        self._cluster = cluster
        self.state = TxnState.UNINITIALIZED
        self.partitions: set[tuple[str, int]] = set()  # added to the current transaction
        self.pending: set[tuple[str, int]] = set()  # waiting for AddPartitionsToTxn
        self.adding = False  # an AddPartitionsToTxn is in flight
        self.added = trio.Event()  # set when the AddPartitionsToTxn in flight is answered
        self.added.set()
        self.offsets_added = False  # AddOffsetsToTxn succeeded in this transaction
        self.error: KafkaError | None = None  # why the transaction is abortable, or the producer fatal
        self.bump_epoch = False  # a sent batch failed: its sequence numbers are lost
        self.number = 0  # transactions completed so far
        self.lock = trio.Lock()  # one coordinator operation of the application at a time

    def __repr__(self) -> str:
        return (f"<TransactionManager {self.transactional_id!r} {self.state.value} partitions={len(self.partitions)} "
                f"pending={len(self.pending)} offsets={self.offsets_added}>")

    # -- state ----------------------------------------------------------------------

    def check_fatal(self) -> None:
        """Raise the fencing/authorization error if the producer is unusable."""
        if self.state is TxnState.FATAL:
            assert self.error is not None
            raise self.error

    def require(self, what: str, *states: TxnState) -> None:
        """Raise unless in one of ``states``: the fatal error, the abortable one, or TransactionStateError."""
        self.check_fatal()
        if self.state in states:
            return
        if self.state is TxnState.ABORTABLE and self.error is not None:
            raise TransactionAbortableError(
                f"{what}: the transaction must be aborted first ({self.error})", code=self.error.code)
        raise TransactionStateError(f"{what} is not allowed while the producer is {self.state.value}")

    def check_send(self) -> None:
        """A record may join the current transaction (raises as :meth:`require`)."""
        if self.state is not TxnState.IN_TRANSACTION:
            self.require("send", TxnState.IN_TRANSACTION)

    def begin(self) -> None:
        self.require("begin_transaction", TxnState.READY)
        self.state = TxnState.IN_TRANSACTION

    def ready(self, tp: tuple[str, int]) -> bool:
        """True if batches of ``tp`` may be sent; else it waits for AddPartitionsToTxn
        (queued in :attr:`pending` unless the transaction can no longer take partitions)."""
        if tp in self.partitions:
            return True
        if self.state in (TxnState.IN_TRANSACTION, TxnState.COMMITTING):
            self.pending.add(tp)
        return False

    def record_failure(self, error: BaseException, *, sent: bool) -> None:
        """A batch of the transaction failed: fencing ends the producer, anything else the transaction."""
        if sent:
            self.bump_epoch = True
        if isinstance(error, KafkaError) and error.code in FENCING_CODES:
            self.fail(error)
        elif self.state in (TxnState.IN_TRANSACTION, TxnState.COMMITTING) and isinstance(error, KafkaError):
            self.state = TxnState.ABORTABLE
            self.error = error

    def fail(self, error: KafkaError) -> None:
        """Make the producer unusable: every later call raises ``error``."""
        if self.state is not TxnState.FATAL:
            log.error("transactional producer %r: %s", self.transactional_id, error)
        self.state = TxnState.FATAL
        self.error = error

    def start_adding(self) -> None:
        """The sender starts an AddPartitionsToTxn (one at a time)."""
        self.adding = True
        self.added = trio.Event()

    def done_adding(self) -> None:
        self.adding = False
        self.added.set()

    async def wait_added(self) -> None:
        """Return once no AddPartitionsToTxn is in flight: EndTxn must not overtake one,
        or the coordinator would open a new transaction with those partitions after it."""
        while self.adding:
            await self.added.wait()

    def completed(self) -> None:
        """The transaction ended (committed or aborted): ready for the next."""
        self.state = TxnState.READY
        self.number += 1
        self.partitions.clear()
        self.pending.clear()
        self.offsets_added = False
        self.error = None

    def _classify(self, code: int, context: str) -> KafkaError:
        """The error for ``code``; fencing makes the producer fatal."""
        error = transaction_error(code, context=context)
        if code in FENCING_CODES:
            self.fail(error)
        return error

    # -- requests -----------------------------------------------------------------------

    async def _call(self, api_key: ApiKey, make_body: Callable[[int], Any], check: Callable[[Any], None], *,
                    coordinator_key: str | None = None, key_type: int = _TXN_KEY) -> Any:
        """Send to the coordinator until ``check(answer)`` accepts it (returns) or raises.

        ``check`` raises :class:`_Retry` for answers worth repeating; connection
        failures and moved coordinators are retried here too.
        """
        key = coordinator_key if coordinator_key is not None else self.transactional_id
        deadline = trio.current_time() + self._config.max_block_ms / 1000
        attempt = 0
        while True:
            attempt += 1
            try:
                node = await self._cluster.coordinator(key, key_type)
                conn = await self._cluster.connection(node, "txn")
                version = conn.version(api_key)
                answer = await conn.request(api_key, version, make_body(version))
                check(answer)
                return answer
            except _Retry as retry:
                error = retry.error
                if error.code in _COORDINATOR_MOVED:
                    self._cluster.forget_coordinator(key, key_type)
            except (KafkaConnectionError, KafkaTimeoutError) as exc:
                self._cluster.forget_coordinator(key, key_type)
                error = exc
            except KafkaError as exc:  # FindCoordinator gave up, or an unsupported version
                if not exc.retriable:
                    raise
                error = exc
            pause = self._config.backoff(attempt)
            if trio.current_time() + pause > deadline:
                raise KafkaTimeoutError(f"{api_key.name} for transactional id {self.transactional_id!r} did not "
                                        f"succeed within max_block_ms={self._config.max_block_ms}: {error}") from error
            log.debug("%s for %r: %s; retrying", api_key.name, self.transactional_id, error)
            await trio.sleep(pause)

    def _check_top(self, what: str) -> Callable[[Any], None]:
        def check(answer: Any) -> None:
            code = answer.error_code
            if code == ErrorCode.none:
                return
            error = self._classify(code, f"{what} for transactional id {self.transactional_id!r}")
            if error.retriable:
                raise _Retry(error)
            raise error
        return check

    async def init_producer_id(self, producer_id: int = -1, producer_epoch: int = -1) -> tuple[int, int]:
        """InitProducerId with the transactional id; returns (producer id, epoch).

        Passing the current id and epoch (KIP-360) bumps the epoch instead of
        starting over; a broker too old for that (InitProducerId < v3) starts over.

        :raises ProducerFencedError: a newer producer owns the id.
        :raises KafkaTimeoutError: no answer within ``max_block_ms``.
        """
        answer = await self._call(
            ApiKey.INIT_PRODUCER_ID,
            lambda v: _wire.init_producer_id_request(
                v, transactional_id=self.transactional_id,
                transaction_timeout_ms=self._config.transaction_timeout_ms,
                producer_id=producer_id, producer_epoch=producer_epoch),
            self._check_top("InitProducerId"),
        )
        self.bump_epoch = False
        return answer.producer_id, answer.producer_epoch

    async def add_partitions(self, producer_id: int, producer_epoch: int) -> None:
        """AddPartitionsToTxn for every partition in :attr:`pending`; on success they join
        :attr:`partitions`. A per-partition refusal makes the transaction abortable (raised)."""
        wanted = set(self.pending)
        if not wanted:
            return
        number = self.number
        by_topic: dict[str, list[int]] = defaultdict(list)
        for topic, partition in sorted(wanted):
            by_topic[topic].append(partition)

        def check(answer: Any) -> None:
            codes = _wire.parse_add_partitions_to_txn(answer)
            bad = {tp: code for tp, code in codes.items() if code != ErrorCode.none}
            if not bad:
                return
            # OPERATION_NOT_ATTEMPTED only says another partition failed: report that one.
            code = next((c for c in bad.values() if c != ErrorCode.operation_not_attempted),
                        next(iter(bad.values())))
            tp = next(tp for tp, c in bad.items() if c == code)
            error = self._classify(code, f"AddPartitionsToTxn {tp[0]}[{tp[1]}]")
            if error.retriable or code == ErrorCode.unknown_topic_or_partition:
                raise _Retry(error)
            raise error

        await self._call(
            ApiKey.ADD_PARTITIONS_TO_TXN,
            lambda v: _wire.add_partitions_to_txn_request(
                v, transactional_id=self.transactional_id, producer_id=producer_id,
                producer_epoch=producer_epoch, partitions=by_topic),
            check,
        )
        if self.number == number:  # still the transaction that asked (abort and commit wait for this call)
            self.partitions |= wanted
            self.pending -= wanted

    async def add_offsets(self, producer_id: int, producer_epoch: int, group_id: str) -> None:
        """AddOffsetsToTxn: the group's offsets partition joins the transaction."""
        await self._call(
            ApiKey.ADD_OFFSETS_TO_TXN,
            lambda v: _wire.add_offsets_to_txn_request(
                v, transactional_id=self.transactional_id, producer_id=producer_id,
                producer_epoch=producer_epoch, group_id=group_id),
            self._check_top("AddOffsetsToTxn"),
        )
        self.offsets_added = True

    async def commit_offsets(self, producer_id: int, producer_epoch: int,
                             offsets: Mapping[TopicPartition, int], group: ConsumerGroupMetadata) -> None:
        """TxnOffsetCommit to the group's coordinator, with the member's generation (KIP-447).

        :raises CommitFailedError: the member was evicted or the group moved on
            (the transaction is then abortable).
        """
        by_topic: dict[str, list[tuple[int, int, str | None]]] = defaultdict(list)
        for tp, offset in offsets.items():
            by_topic[tp.topic].append((tp.partition, offset, ""))

        def check(answer: Any) -> None:
            codes = {p.error_code for t in answer.topics for p in t.partitions} - {ErrorCode.none}
            if not codes:
                return
            code = next(iter(codes))
            context = f"TxnOffsetCommit for group {group.group_id!r}"
            if code in _GROUP_FENCED:
                raise CommitFailedError(f"{context}: {_wire.error_name(code)}; the consumer is no longer "
                                        "a member of this generation", code=ErrorCode(code))
            error = self._classify(code, context)
            if error.retriable or code == ErrorCode.unknown_topic_or_partition:
                raise _Retry(error)
            raise error

        await self._call(
            ApiKey.TXN_OFFSET_COMMIT,
            lambda v: _wire.txn_offset_commit_request(
                v, transactional_id=self.transactional_id, group_id=group.group_id, producer_id=producer_id,
                producer_epoch=producer_epoch, generation_id=group.generation_id, member_id=group.member_id,
                group_instance_id=group.group_instance_id, offsets=by_topic),
            check, coordinator_key=group.group_id, key_type=0,
        )

    async def end(self, producer_id: int, producer_epoch: int, *, commit: bool) -> None:
        """EndTxn: the coordinator writes the commit (or abort) markers, then answers."""
        await self._call(
            ApiKey.END_TXN,
            lambda v: _wire.end_txn_request(v, transactional_id=self.transactional_id, producer_id=producer_id,
                                            producer_epoch=producer_epoch, commit=commit),
            self._check_top("EndTxn(commit)" if commit else "EndTxn(abort)"),
        )

