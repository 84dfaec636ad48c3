"""The trio server that speaks the Kafka protocol on top of ``logbroker.broker``."""

from logbroker.server.app import ListenError as ListenError, Server as Server, serve as serve
