"""The native async Kafka client of logbroker (trio), with a sync facade."""

from logbroker.client._batches import Delivery as Delivery
from logbroker.client.config import ClientConfig as ClientConfig
from logbroker.client.config import ProducerConfig as ProducerConfig
from logbroker.client.producer import Producer as Producer
from logbroker.client.types import RecordMetadata as RecordMetadata
from logbroker.client.types import TopicPartition as TopicPartition
