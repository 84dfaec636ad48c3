"""Transactions (exactly-once, KIP-98/360/447/890): the transaction coordinator.

The coordinator (:class:`TransactionCoordinator`) is a state machine with
time as a parameter. Each transactional id's metadata
(:class:`TxnMetadata`, states in :class:`TransactionState`) is persisted to,
and replayed from, the internal topic ``__transaction_state``
(:class:`TransactionStateTopic`, Kafka's record format in :mod:`.records`).
Ending a transaction returns the control markers (:class:`TxnMarker`) the
broker appends to the data partitions before calling
:meth:`TransactionCoordinator.markers_written`.
"""

from logbroker.broker.transactions.config import TransactionConfig as TransactionConfig
from logbroker.broker.transactions.coordinator import TransactionCoordinator as TransactionCoordinator
from logbroker.broker.transactions.results import (
    DescribedTransaction as DescribedTransaction,
    EndTxnResult as EndTxnResult,
    InitProducerIdResult as InitProducerIdResult,
    ListedTransaction as ListedTransaction,
    ListTransactionsResult as ListTransactionsResult,
    TxnError as TxnError,
    TxnMarker as TxnMarker,
    TxnResult as TxnResult,
    TxnStatistics as TxnStatistics,
    VerifyResult as VerifyResult,
    Written as Written,
)
from logbroker.broker.transactions.state import (
    MAX_EPOCH as MAX_EPOCH,
    NO_PRODUCER_EPOCH as NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID as NO_PRODUCER_ID,
    IllegalStateTransition as IllegalStateTransition,
    TransactionState as TransactionState,
    TransactionVersion as TransactionVersion,
    TxnMetadata as TxnMetadata,
)
from logbroker.broker.transactions.store import (
    TRANSACTION_STATE_TOPIC as TRANSACTION_STATE_TOPIC,
    TransactionStateTopic as TransactionStateTopic,
)
