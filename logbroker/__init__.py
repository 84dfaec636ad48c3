"""logbroker: a Kafka-compatible partitioned commit-log broker."""

from logbroker.errors import LogbrokerError as LogbrokerError

__version__ = "0.1.0"
