"""A JSON file of the data dir (``users.json``, ``acls.json``) that a running
broker re-reads when it changes, and that fails closed when it is broken.

The file is read again when its size, modification time or inode change
(``logbroker users`` and ``logbroker acls`` replace it atomically). A file
that cannot be read or parsed leaves :attr:`WatchedFile.problem` set and
:attr:`WatchedFile.value` at the empty value (no users, no ACLs: nothing is
allowed), until it changes again. The broker's requests use
:meth:`WatchedFile.current`, which logs the problem once per change of the
file, never per request; the CLI uses :meth:`WatchedFile.checked`, which
raises it.

Not thread-safe: the broker uses it from the trio thread only.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Generic, TypeVar

from logbroker.errors import InvalidConfigError

log = logging.getLogger("logbroker.security")

T = TypeVar("T")
_NEVER_READ = ("never read",)


class WatchedFile(Generic[T]):
    """``parse(text) -> T`` raises InvalidConfigError naming what is wrong;
    ``empty()`` is the value of a missing or broken file; ``fails_closed`` says,
    for the log, what the broker does while the file is broken."""

    def __init__(self, path: str | os.PathLike, parse: Callable[[str], T], empty: Callable[[], T],
                 *, fails_closed: str) -> None:
        self.path = Path(path)
        self._parse = parse
        self._empty = empty
        self._fails_closed = fails_closed
        self.value: T = empty()
        self.problem: str | None = None  # why the file is unusable; None when it is fine or missing
        self._stamp: tuple | None = _NEVER_READ
        self._reported = True  # whether current() logged the latest change of problem

    def __repr__(self) -> str:
        return f"WatchedFile({str(self.path)!r}, problem={self.problem!r})"

    def refresh(self) -> None:
        """Re-read the file if it changed since the last call (one ``stat`` otherwise)."""
        try:
            st = self.path.stat()
            stamp: tuple | None = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        except OSError as exc:
            stamp = ("stat failed", exc.errno)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        was = self.problem
        value, problem = self._empty(), None
        if stamp is not None:
            try:
                value = self._parse(self.path.read_text(encoding="utf-8"))
            except OSError as exc:
                problem = f"cannot read it: {exc.strerror or exc}"
            except UnicodeDecodeError:
                problem = "it is not UTF-8 text"
            except InvalidConfigError as exc:
                problem = str(exc)
        self.value = value
        self.problem = problem
        if problem is not None or was is not None:
            self._reported = False

    def current(self) -> T:
        """The value for the broker's requests (empty while the file is broken);
        logs a problem, or its end, once per change of the file."""
        self.refresh()
        if not self._reported:
            self._reported = True
            if self.problem is not None:
                log.error("cannot use %s: %s; %s until it is fixed", self.path, self.problem, self._fails_closed)
            else:
                log.warning("%s is usable again", self.path)
        return self.value

    def checked(self) -> T:
        """The value, for a command that edits or lists the file.

        :raises InvalidConfigError: the file exists but cannot be read or parsed
            (one line naming the file and the problem).
        """
        self.refresh()
        if self.problem is not None:
            raise InvalidConfigError(f"cannot use {self.path}: {self.problem}")
        return self.value

    def saved(self) -> None:
        """The file was just replaced by us: read it again on the next call."""
        self._stamp = _NEVER_READ


def json_entries(text: str, *, key: str, kind: type) -> Any:
    """Parse ``{"version": 1, key: ...}`` and return the ``key`` entry (a ``kind``,
    empty when absent).

    :raises InvalidConfigError: not JSON, not that shape, or an unknown version or field.
    """
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise InvalidConfigError(f"not valid JSON: {exc}") from exc
    except RecursionError:
        raise InvalidConfigError("not valid JSON: nested too deeply") from None
    if not isinstance(raw, dict):
        raise InvalidConfigError(f'expected an object {{"version": 1, "{key}": ...}}, not {describe_type(raw)}')
    unknown = sorted(set(raw) - {"version", key})
    if unknown:
        raise InvalidConfigError(f"unknown top-level field {unknown[0]!r} (known: version, {key})")
    if raw.get("version", 1) != 1:
        raise InvalidConfigError(f"version {raw['version']!r} is not supported (only 1)")
    entries = raw.get(key, kind())
    if not isinstance(entries, kind):
        raise InvalidConfigError(f"{key!r} must be {describe_type(kind())}, not {describe_type(entries)}")
    return entries


def check_fields(where: str, item: object, known: Collection[str], required: Collection[str]) -> dict[str, Any]:
    """``item`` as a dict whose keys are all ``known`` and include every
    ``required`` one; InvalidConfigError naming ``where`` and the first problem."""
    if not isinstance(item, dict):
        raise InvalidConfigError(f"{where} must be an object, not {describe_type(item)}")
    unknown = sorted(set(item) - set(known))
    if unknown:
        raise InvalidConfigError(f"{where} has an unknown field {unknown[0]!r} (known: {', '.join(known)})")
    missing = [name for name in required if name not in item]
    if missing:
        raise InvalidConfigError(f"{where} lacks the field {missing[0]!r}")
    return item


def describe_type(value: object) -> str:
    """JSON's name for the type of ``value``: "an object", "a list", "a string"..."""
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")
