"""Build kio response objects of any version from plain Python values.

kio has one class per API version, with phantom int types, ``timedelta`` for
durations and ``datetime`` for timestamps. Handlers write one function for all
versions: :func:`build` keeps only the fields the version has, turns plain ints
into the types kio's writers expect and fills unset fields with neutral values.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
from functools import cache
from types import ModuleType
from typing import Any

from logbroker.protocol import ErrorCode

_UTC = datetime.timezone.utc
_MISSING = dataclasses.MISSING


@cache
def _plan(cls: type) -> tuple[frozenset[str], tuple[tuple[str, str, Any], ...], dict[str, str]]:
    names = []
    fillers = []
    kinds = {}
    for f in dataclasses.fields(cls):
        names.append(f.name)
        kind = f.metadata.get("kafka_type", "")
        kinds[f.name] = kind
        if f.default is not _MISSING or f.default_factory is not _MISSING:
            continue
        type_text = str(f.type)
        if kind == "error_code":
            filler = ErrorCode.none
        elif kind.startswith("timedelta"):
            filler = datetime.timedelta(0)
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
        fillers.append((f.name, kind, filler))
    return frozenset(names), tuple(fillers), kinds


def build(cls: type, /, **values: Any) -> Any:
    """Instantiate ``cls`` with the given values, dropping those it lacks.

    Durations may be given as int milliseconds, timestamps as int epoch
    milliseconds (-1 = null), error codes as ints.
    """
    names, fillers, kinds = _plan(cls)
    kwargs = {}
    for name, value in values.items():
        if name not in names:
            continue
        kind = kinds[name]
        if isinstance(value, int) and not isinstance(value, bool):
            if kind.startswith("timedelta"):
                value = datetime.timedelta(milliseconds=value)
            elif kind.startswith("datetime"):
                value = None if value < 0 else datetime.datetime.fromtimestamp(value / 1000, _UTC)
            elif kind == "error_code" and not isinstance(value, ErrorCode):
                value = ErrorCode(value)
        kwargs[name] = value
    for name, _kind, filler in fillers:
        if name not in kwargs:
            kwargs[name] = filler
    return cls(**kwargs)


def module_of(cls: type) -> ModuleType:
    """The generated module of a response class, to reach its nested classes."""
    return sys.modules[cls.__module__]


def ms(value: datetime.timedelta | int) -> int:
    """A kio duration (timedelta) as int milliseconds."""
    if isinstance(value, datetime.timedelta):
        return round(value.total_seconds() * 1000)
    return int(value)
