"""Build response objects of any API version from plain Python values.

:func:`build` is the protocol's builder plus neutral values (0, empty, null,
no error) for fields a handler leaves out, so one handler serves all versions.
"""

from __future__ import annotations

import dataclasses
import sys
from functools import cache
from types import ModuleType
from typing import Any

from logbroker.protocol import ErrorCode, build as _protocol_build, to_ms as ms  # noqa: F401

_MISSING = dataclasses.MISSING


@cache
def _fillers(cls: type) -> tuple[tuple[str, Any], ...]:
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not _MISSING or f.default_factory is not _MISSING:
            continue
        kind = f.metadata.get("kafka_type", "")
        type_text = str(f.type)
        filler: Any
        if kind == "error_code":
            filler = ErrorCode.none
        elif kind.startswith("timedelta"):
            filler = 0
        elif "None" in type_text:
            filler = None
        elif "tuple" in type_text:
            filler = ()
        elif kind == "bool":
            filler = False
        elif kind.startswith(("int", "uint")):
            filler = 0
        elif kind == "string":
            filler = ""
        else:
            continue
        out.append((f.name, filler))
    return tuple(out)


def build(cls: type, /, **values: Any) -> Any:
    """Instantiate ``cls``: unknown fields dropped, ints converted, unset fields neutral."""
    for name, filler in _fillers(cls):
        values.setdefault(name, filler)
    return _protocol_build(cls, **values)


def module_of(cls: type) -> ModuleType:
    """The generated module of a response class, to reach its nested classes."""
    return sys.modules[cls.__module__]
