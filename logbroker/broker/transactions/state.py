"""One transactional id's metadata: the states, their one transition table,
and the transitions as pure functions on a frozen value.

This follows Kafka's ``TransactionMetadata``: each ``prepare_*`` method
returns the value the transactional id will have once the change is
persisted. Kafka marks the object with a pending state while the append
replicates; here the append is synchronous, so the coordinator persists the
returned value and then swaps it in, and no pending state is needed. The
rules of *when* to call which transition live in
:mod:`logbroker.broker.transactions.coordinator`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
MAX_EPOCH = 32767
"""Producer epochs are int16 on the wire."""


class TransactionVersion(enum.IntEnum):
    """The ``transaction.version`` feature level (KIP-890), as the client used it.

    TV_0: the original protocol (KIP-98). TV_1: only changes the log record
    format (value version 1, flexible). TV_2: the coordinator bumps the epoch
    on every EndTxn and partitions join implicitly on Produce.
    """

    TV_0 = 0
    TV_1 = 1
    TV_2 = 2


def supports_epoch_bump(version: int) -> bool:
    """True for transaction version 2 and later (an epoch bump on every EndTxn)."""
    return version >= TransactionVersion.TV_2


class TransactionState(enum.Enum):
    """Kafka's transaction states; the value is the name DescribeTransactions reports."""

    EMPTY = "Empty"
    ONGOING = "Ongoing"
    PREPARE_COMMIT = "PrepareCommit"
    PREPARE_ABORT = "PrepareAbort"
    COMPLETE_COMMIT = "CompleteCommit"
    COMPLETE_ABORT = "CompleteAbort"
    DEAD = "Dead"
    PREPARE_EPOCH_FENCE = "PrepareEpochFence"

    @property
    def code(self) -> int:
        """The ``TransactionStatus`` byte of the ``__transaction_state`` value."""
        return _CODES[self]

    @classmethod
    def from_code(cls, code: int) -> TransactionState:
        """Raises ValueError for a byte no state has."""
        try:
            return _BY_CODE[code]
        except KeyError:
            raise ValueError(f"unknown transaction status {code}") from None

    @classmethod
    def from_name(cls, name: str) -> TransactionState | None:
        """The state named ``name`` exactly (as ListTransactions filters), or None."""
        try:
            return cls(name)
        except ValueError:
            return None

    @property
    def expiration_allowed(self) -> bool:
        """Whether an idle transactional id in this state may expire."""
        return self in _EXPIRABLE

    @property
    def is_prepared(self) -> bool:
        """PrepareCommit or PrepareAbort: the outcome is decided, markers are due."""
        return self in (TransactionState.PREPARE_COMMIT, TransactionState.PREPARE_ABORT)

    @property
    def is_complete(self) -> bool:
        return self in (TransactionState.COMPLETE_COMMIT, TransactionState.COMPLETE_ABORT)


_S = TransactionState
_CODES = {
    _S.EMPTY: 0, _S.ONGOING: 1, _S.PREPARE_COMMIT: 2, _S.PREPARE_ABORT: 3,
    _S.COMPLETE_COMMIT: 4, _S.COMPLETE_ABORT: 5, _S.DEAD: 6, _S.PREPARE_EPOCH_FENCE: 7,
}
_BY_CODE = {code: state for state, code in _CODES.items()}
_EXPIRABLE = frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT})

#: state -> the states it may be entered from (Kafka's validPreviousStates).
VALID_PREVIOUS: dict[TransactionState, frozenset[TransactionState]] = {
    _S.EMPTY: frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    _S.ONGOING: frozenset({_S.ONGOING, _S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    _S.PREPARE_COMMIT: frozenset({_S.ONGOING}),
    # TV2 lets a client abort from Empty or Complete*: it may not know the state.
    _S.PREPARE_ABORT: frozenset({_S.ONGOING, _S.PREPARE_EPOCH_FENCE, _S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    _S.COMPLETE_COMMIT: frozenset({_S.PREPARE_COMMIT}),
    _S.COMPLETE_ABORT: frozenset({_S.PREPARE_ABORT}),
    _S.DEAD: frozenset({_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT}),
    _S.PREPARE_EPOCH_FENCE: frozenset({_S.ONGOING}),
}


class IllegalStateTransition(RuntimeError):
    """A bug: the coordinator asked for a transition the table (or an invariant) forbids."""


def is_epoch_exhausted(epoch: int) -> bool:
    """Kafka keeps the last epoch in reserve so the coordinator can always fence once more."""
    return epoch >= MAX_EPOCH - 1


TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class TxnMetadata:
    """Everything the coordinator knows about one transactional id.

    ``prev_producer_id``: the producer id before the last transition (it
    differs from ``producer_id`` only right after a new id was handed out).
    ``next_producer_id``: under TV2, the id a Prepare* state will switch to
    on completion because the epoch ran out (-1: none).
    ``last_producer_epoch``: the epoch before the last bump, to recognise a
    retried InitProducerId (KIP-360); like Kafka, it is not persisted.
    ``start_ms``: when the first partition joined (-1 while Empty).
    ``client_version``: the transaction version of the client's last request.
    """

    transactional_id: str
    producer_id: int
    timeout_ms: int
    state: TransactionState
    last_update_ms: int
    prev_producer_id: int = NO_PRODUCER_ID
    next_producer_id: int = NO_PRODUCER_ID
    producer_epoch: int = NO_PRODUCER_EPOCH
    last_producer_epoch: int = NO_PRODUCER_EPOCH
    partitions: frozenset[TopicPartition] = field(default_factory=frozenset)
    start_ms: int = -1
    client_version: int = TransactionVersion.TV_0

    def __repr__(self) -> str:
        return (
            f"TxnMetadata({self.transactional_id!r}, {self.state.value}, pid={self.producer_id}, "
            f"epoch={self.producer_epoch}, partitions={len(self.partitions)}, tv={self.client_version})"
        )

    @property
    def epoch_exhausted(self) -> bool:
        return is_epoch_exhausted(self.producer_epoch)

    def topics(self) -> tuple[tuple[str, tuple[int, ...]], ...]:
        """The partitions grouped by topic, sorted (for records and DescribeTransactions)."""
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(self.partitions):
            by_topic.setdefault(topic, []).append(partition)
        return tuple((topic, tuple(parts)) for topic, parts in by_topic.items())

    # -- transitions (Kafka's prepare* methods) -----------------------------------

    def _to(self, state: TransactionState, **changes: Any) -> TxnMetadata:
        """The next value; like Kafka, every transition records the id it leaves as the previous one."""
        if self.state not in VALID_PREVIOUS[state]:
            raise IllegalStateTransition(f"{self.transactional_id}: {self.state.value} -> {state.value}")
        new = replace(self, state=state, prev_producer_id=self.producer_id, **changes)
        if new.producer_id < 0:
            raise IllegalStateTransition(f"{self.transactional_id}: illegal producer id {new.producer_id}")
        if state is not _S.DEAD and not 0 <= new.producer_epoch <= MAX_EPOCH:
            raise IllegalStateTransition(f"{self.transactional_id}: illegal producer epoch {new.producer_epoch}")
        return new

    def prepare_fence_producer_epoch(self) -> TxnMetadata:
        """Ongoing -> PrepareEpochFence with the epoch bumped (never past MAX_EPOCH).

        Never persisted: the coordinator goes straight on to abort with this epoch.
        """
        epoch = self.producer_epoch if self.producer_epoch == MAX_EPOCH else self.producer_epoch + 1
        return self._to(_S.PREPARE_EPOCH_FENCE, producer_epoch=epoch)

    def prepare_increment_producer_epoch(self, timeout_ms: int, expected_epoch: int | None,
                                         now_ms: int) -> TxnMetadata | None:
        """InitProducerId on an Empty/Complete* id: the next epoch, or None if the
        caller's ``expected_epoch`` (KIP-360) shows it was fenced.

        Without an expected epoch the epoch is bumped and the last epoch
        forgotten; with the current epoch (or a brand-new id) both move on; with
        the last epoch it is a retry of a call that succeeded, answered with the
        current epoch unchanged.
        """
        if self.epoch_exhausted:
            raise IllegalStateTransition(f"{self.transactional_id}: no epochs left for {self.producer_id}")
        bumped = self.producer_epoch + 1
        if expected_epoch is None:
            epoch, last = bumped, NO_PRODUCER_EPOCH
        elif self.producer_epoch == NO_PRODUCER_EPOCH or expected_epoch == self.producer_epoch:
            epoch, last = bumped, self.producer_epoch
        elif expected_epoch == self.last_producer_epoch:
            epoch, last = self.producer_epoch, self.last_producer_epoch
        else:
            return None
        return self._to(
            _S.EMPTY, producer_epoch=epoch, last_producer_epoch=last, timeout_ms=timeout_ms,
            partitions=frozenset(), start_ms=-1, last_update_ms=now_ms,
        )

    def prepare_producer_id_rotation(self, new_producer_id: int, timeout_ms: int, now_ms: int,
                                     record_last_epoch: bool) -> TxnMetadata:
        """InitProducerId when the epoch is exhausted: a new producer id at epoch 0."""
        if self.state in (_S.ONGOING, _S.PREPARE_COMMIT, _S.PREPARE_ABORT):
            raise IllegalStateTransition(f"{self.transactional_id}: rotating ids with a transaction pending")
        return self._to(
            _S.EMPTY, producer_id=new_producer_id, producer_epoch=0,
            last_producer_epoch=self.producer_epoch if record_last_epoch else NO_PRODUCER_EPOCH,
            timeout_ms=timeout_ms, partitions=frozenset(), start_ms=-1, last_update_ms=now_ms,
        )

    def prepare_add_partitions(self, added: frozenset[TopicPartition], now_ms: int,
                               client_version: int) -> TxnMetadata:
        """-> Ongoing with ``added`` joined; the transaction starts now unless it was running."""
        start = now_ms if self.state in (_S.EMPTY, _S.COMPLETE_COMMIT, _S.COMPLETE_ABORT) else self.start_ms
        return self._to(
            _S.ONGOING, partitions=self.partitions | added, start_ms=start, last_update_ms=now_ms,
            client_version=client_version,
        )

    def prepare_abort_or_commit(self, state: TransactionState, client_version: int, next_producer_id: int,
                                now_ms: int, no_partition_added: bool) -> TxnMetadata:
        """-> PrepareCommit/PrepareAbort. TV2 bumps the epoch (except an abort
        already at MAX_EPOCH, so a broken producer can still recover); TV2 may
        abort a transaction that never added a partition, which starts now."""
        if supports_epoch_bump(client_version):
            if self.producer_epoch == MAX_EPOCH and state is _S.PREPARE_ABORT:
                epoch = self.producer_epoch
            else:
                epoch = self.producer_epoch + 1
            last = self.producer_epoch
        else:
            epoch, last = self.producer_epoch, self.last_producer_epoch
        return self._to(
            state, producer_epoch=epoch, last_producer_epoch=last, next_producer_id=next_producer_id,
            start_ms=now_ms if no_partition_added else self.start_ms, last_update_ms=now_ms,
            client_version=client_version,
        )

    def prepare_complete(self, now_ms: int) -> TxnMetadata:
        """PrepareCommit/PrepareAbort -> CompleteCommit/CompleteAbort once the markers are written.

        Under TV2 with a next producer id (the epoch ran out) the id switches to
        it at epoch 0; the last epoch stays the one the client last saw.
        """
        state = _S.COMPLETE_COMMIT if self.state is _S.PREPARE_COMMIT else _S.COMPLETE_ABORT
        if supports_epoch_bump(self.client_version) and self.next_producer_id != NO_PRODUCER_ID:
            producer_id, epoch = self.next_producer_id, 0
        else:
            producer_id, epoch = self.producer_id, self.producer_epoch
        return self._to(
            state, producer_id=producer_id, producer_epoch=epoch, next_producer_id=NO_PRODUCER_ID,
            partitions=frozenset(), last_update_ms=now_ms,
        )

    def prepare_dead(self) -> TxnMetadata:
        """-> Dead: the id expired and is about to be tombstoned."""
        return self._to(_S.DEAD, partitions=frozenset())
