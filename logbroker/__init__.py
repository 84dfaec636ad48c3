"""logbroker: a Kafka-compatible partitioned commit-log broker.

Public names are loaded on first use, so ``import logbroker`` (and the pytest
plugin that ships with it) stays cheap and imports neither trio nor kio.
"""

from typing import Any

from logbroker.errors import LogbrokerError as LogbrokerError

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "embedded": "logbroker._embedded",
    "EmbeddedBroker": "logbroker._embedded",
    # the client (logbroker.client) and its errors
    "Admin": "logbroker.client",
    "AdminConfig": "logbroker.client",
    "ClientConfig": "logbroker.client",
    "Consumer": "logbroker.client",
    "ConsumerConfig": "logbroker.client",
    "ConsumerRecord": "logbroker.client",
    "ConsumerGroupMetadata": "logbroker.client",
    "Delivery": "logbroker.client",
    "GroupDescription": "logbroker.client",
    "GroupListing": "logbroker.client",
    "MemberDescription": "logbroker.client",
    "NewTopic": "logbroker.client",
    "OffsetAndTimestamp": "logbroker.client",
    "PartitionInfo": "logbroker.client",
    "Producer": "logbroker.client",
    "ProducerConfig": "logbroker.client",
    "ProducerStatistics": "logbroker.client",
    "QueueConsumer": "logbroker.client",
    "QueueMessage": "logbroker.client",
    "RecordMetadata": "logbroker.client",
    "RemoteHandlerError": "logbroker.client",
    "Requester": "logbroker.client",
    "RequestTimeoutError": "logbroker.client",
    "Responder": "logbroker.client",
    "SharePartitionProgress": "logbroker.client",
    "SyncQueueConsumer": "logbroker.client",
    "Replay": "logbroker.client",
    "SyncAdmin": "logbroker.client",
    "SyncConsumer": "logbroker.client",
    "SyncDelivery": "logbroker.client",
    "SyncProducer": "logbroker.client",
    "TopicDescription": "logbroker.client",
    "TransactionDescription": "logbroker.client",
    "TransactionListing": "logbroker.client",
    "ProducerDescription": "logbroker.client",
    "TopicPartition": "logbroker.client",
    "crc32_partition": "logbroker.client",
    "murmur2_partition": "logbroker.client",
    "replay": "logbroker.client",
    "xxhash_partition": "logbroker.client",
    "ClientClosedError": "logbroker.errors",
    "ClientError": "logbroker.errors",
    "CommitFailedError": "logbroker.errors",
    "CorruptRecordError": "logbroker.errors",
    "FetchOffsetOutOfRangeError": "logbroker.errors",
    "GroupError": "logbroker.errors",
    "KafkaConnectionError": "logbroker.errors",
    "KafkaError": "logbroker.errors",
    "KafkaTimeoutError": "logbroker.errors",
    "NoOffsetError": "logbroker.errors",
    "NotLeaderError": "logbroker.errors",
    "RecordTooLargeError": "logbroker.errors",
    "TopicAlreadyExistsError": "logbroker.errors",
    "ProducerFencedError": "logbroker.errors",
    "TransactionAbortableError": "logbroker.errors",
    "TransactionAbortedError": "logbroker.errors",
    "TransactionError": "logbroker.errors",
    "TransactionStateError": "logbroker.errors",
    "TransactionalIdAuthorizationError": "logbroker.errors",
    "UnknownTopicOrPartitionError": "logbroker.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'logbroker' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
