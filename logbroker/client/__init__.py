"""The native async Kafka client of logbroker (trio), with a sync facade.

Async (trio): :class:`Producer`, :class:`Consumer`, :class:`Admin`, :func:`replay`,
:class:`QueueConsumer` (share groups), :class:`Requester` and :class:`Responder`
(request-reply). Blocking (a trio loop in a background thread):
:class:`SyncProducer`, :class:`SyncConsumer`, :class:`SyncAdmin`,
:class:`SyncQueueConsumer`. Errors are the
:class:`~logbroker.errors.ClientError` family of :mod:`logbroker.errors`.
"""

from logbroker.client._batches import Delivery as Delivery
from logbroker.client._errors import kafka_error as kafka_error
from logbroker.client.admin import Admin as Admin
from logbroker.client.assignors import Assignment as Assignment
from logbroker.client.assignors import Subscription as Subscription
from logbroker.client.config import AdminConfig as AdminConfig
from logbroker.client.config import ClientConfig as ClientConfig
from logbroker.client.config import ConsumerConfig as ConsumerConfig
from logbroker.client.config import ProducerConfig as ProducerConfig
from logbroker.client.columns import ConsumerBatch as ConsumerBatch
from logbroker.client.columns import PartitionColumns as PartitionColumns
from logbroker.client.consumer import Consumer as Consumer
from logbroker.client.partitioner import crc32_partition as crc32_partition
from logbroker.client.partitioner import murmur2 as murmur2
from logbroker.client.partitioner import murmur2_partition as murmur2_partition
from logbroker.client.partitioner import xxhash_partition as xxhash_partition
from logbroker.client.producer import BulkDelivery as BulkDelivery
from logbroker.client.producer import PartitionRange as PartitionRange
from logbroker.client.producer import SendManyResult as SendManyResult
from logbroker.client.producer import Producer as Producer
from logbroker.client.producer import ProducerStatistics as ProducerStatistics
from logbroker.client.queue import QueueConsumer as QueueConsumer
from logbroker.client.queue import QueueMessage as QueueMessage
from logbroker.client.queue import SyncQueueConsumer as SyncQueueConsumer
from logbroker.client.replay import Replay as Replay
from logbroker.client.reply import RemoteHandlerError as RemoteHandlerError
from logbroker.client.reply import Requester as Requester
from logbroker.client.reply import RequestTimeoutError as RequestTimeoutError
from logbroker.client.reply import Responder as Responder
from logbroker.client.replay import replay as replay
from logbroker.client.sync import SyncAdmin as SyncAdmin
from logbroker.client.sync import SyncConsumer as SyncConsumer
from logbroker.client.sync import SyncDelivery as SyncDelivery
from logbroker.client.sync import SyncProducer as SyncProducer
from logbroker.client.types import ConsumerGroupDescription as ConsumerGroupDescription
from logbroker.client.types import ConsumerGroupMemberDescription as ConsumerGroupMemberDescription
from logbroker.client.types import ConsumerGroupMetadata as ConsumerGroupMetadata
from logbroker.client.types import ConsumerRecord as ConsumerRecord
from logbroker.client.types import GroupDescription as GroupDescription
from logbroker.client.types import GroupListing as GroupListing
from logbroker.client.types import LogDirDescription as LogDirDescription
from logbroker.client.types import MemberDescription as MemberDescription
from logbroker.client.types import NewTopic as NewTopic
from logbroker.client.types import OffsetAndTimestamp as OffsetAndTimestamp
from logbroker.client.types import PartitionInfo as PartitionInfo
from logbroker.client.types import ProducerDescription as ProducerDescription
from logbroker.client.types import RecordMetadata as RecordMetadata
from logbroker.client.types import SharePartitionProgress as SharePartitionProgress
from logbroker.client.types import TopicDescription as TopicDescription
from logbroker.client.types import TopicPartition as TopicPartition
from logbroker.client.types import TransactionDescription as TransactionDescription
from logbroker.client.types import TransactionListing as TransactionListing
