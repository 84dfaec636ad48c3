"""logbroker: a Kafka-compatible partitioned commit-log broker.

Public names are loaded on first use, so ``import logbroker`` (and the pytest
plugin that ships with it) stays cheap and imports neither trio nor kio.
"""

from logbroker.errors import LogbrokerError as LogbrokerError

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "embedded": "logbroker._embedded",
    "EmbeddedBroker": "logbroker._embedded",
}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'logbroker' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
