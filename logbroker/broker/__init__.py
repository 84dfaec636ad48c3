"""Broker state and request handling, independent of sockets and trio."""

from logbroker.broker.config import BrokerConfig as BrokerConfig
from logbroker.broker.core import Broker as Broker, ProduceResult as ProduceResult
