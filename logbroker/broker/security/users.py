"""Users and their salted SCRAM credentials, kept in ``users.json`` of the data dir.

The CLI (``logbroker users``) edits the file; a running broker re-reads it
when it changes, so users can be added without a restart.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from logbroker.broker.security.scram import SCRAM_MECHANISMS, ScramCredential
from logbroker.broker.security.watched import WatchedFile, check_fields, describe_type, json_entries
from logbroker.errors import InvalidConfigError
from logbroker.storage import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, write_atomically

USERS_FILE = "users.json"
_CREDENTIAL_FIELDS = ("salt", "iterations", "stored_key", "server_key")


def parse_users(text: str) -> dict[str, dict[str, ScramCredential]]:
    """user -> mechanism -> credential, from a ``users.json`` text.

    :raises InvalidConfigError: naming the first problem: not JSON, an unknown
        mechanism or field, a missing field, a key that is not base64 or not
        the mechanism's digest size, iterations that are not a positive integer.
    """
    users: dict[str, dict[str, ScramCredential]] = {}
    for user, mechanisms in json_entries(text, key="users", kind=dict).items():
        if not user:
            raise InvalidConfigError("a user has an empty name")
        if not isinstance(mechanisms, dict):
            raise InvalidConfigError(f"user {user!r} must map mechanisms to credentials, "
                                     f"not be {describe_type(mechanisms)}")
        users[user] = {}
        for mechanism, data in mechanisms.items():
            where = f"user {user!r}, {mechanism}"
            if mechanism not in SCRAM_MECHANISMS:
                raise InvalidConfigError(f"user {user!r} has an unknown mechanism {mechanism!r} "
                                         f"(known: {', '.join(SCRAM_MECHANISMS)})")
            users[user][mechanism] = _credential(where, data, hashlib.new(SCRAM_MECHANISMS[mechanism]).digest_size)
    return users


def _credential(where: str, data: dict[str, object], digest_size: int) -> ScramCredential:
    check_fields(f"{where}: the credential", data, _CREDENTIAL_FIELDS, _CREDENTIAL_FIELDS)
    iterations = data["iterations"]
    if not isinstance(iterations, int) or isinstance(iterations, bool) or iterations < 1:
        raise InvalidConfigError(f"{where}: iterations must be a positive integer, not {iterations!r}")
    decoded = {}
    for name in ("salt", "stored_key", "server_key"):
        value = data[name]
        try:
            if not isinstance(value, str):
                raise ValueError
            decoded[name] = base64.b64decode(value, validate=True)
        except (ValueError, binascii.Error):
            raise InvalidConfigError(f"{where}: {name} is not a base64 string") from None
        if name != "salt" and len(decoded[name]) != digest_size:
            raise InvalidConfigError(f"{where}: {name} has {len(decoded[name])} bytes, not {digest_size}")
    return ScramCredential(iterations=iterations, **decoded)


class UserStore:
    """Read-mostly map user -> mechanism -> ScramCredential, reloaded on change.

    A broken users.json fails closed: :meth:`credential` finds no one (nobody
    can log in; connections already authenticated stay) until it is fixed,
    logged once per change of the file; :meth:`users`, :meth:`add` and
    :meth:`delete` raise InvalidConfigError instead.
    """

    def __init__(self, data_dir: str | os.PathLike, *, file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.path = Path(data_dir) / USERS_FILE
        self._file_mode = file_mode  # permission bits of users.json
        self._file: WatchedFile[dict[str, dict[str, ScramCredential]]] = WatchedFile(
            self.path, parse_users, dict, fails_closed="every login fails")

    def __repr__(self) -> str:
        return f"UserStore({str(self.path)!r}, users={len(self._file.value)}, problem={self._file.problem!r})"

    def check(self) -> str | None:
        """Read users.json if it changed (at start-up: now) and return why it is
        unusable, logged once; None when it is fine or absent."""
        self._file.current()
        return self._file.problem

    def users(self) -> dict[str, tuple[str, ...]]:
        """user -> mechanisms with a credential. :raises InvalidConfigError: users.json is broken."""
        return {u: tuple(sorted(m)) for u, m in sorted(self._file.checked().items())}

    def credential(self, user: str, mechanism: str) -> ScramCredential | None:
        """The user's credential for ``mechanism``; None if there is none or users.json is broken."""
        return self._file.current().get(user, {}).get(mechanism)

    def add(self, user: str, password: str, *, iterations: int = 4096) -> None:
        """Create or replace the user's credentials for every SCRAM mechanism.

        :raises InvalidConfigError: a bad name or password, or users.json is broken.
        """
        if not user or any(c in user for c in ",="):
            raise InvalidConfigError(f"user name {user!r} must be non-empty without ',' or '='")
        if len(password) < 1:
            raise InvalidConfigError("password must not be empty")
        users = dict(self._file.checked())
        users[user] = {
            mech: ScramCredential.create(password, mech, iterations=iterations) for mech in SCRAM_MECHANISMS
        }
        self._save(users)

    def iterations(self) -> dict[str, dict[str, int]]:
        """user -> mechanism -> iterations of its credential (what
        DescribeUserScramCredentials reports). :raises InvalidConfigError: users.json is broken."""
        return {u: {m: c.iterations for m, c in sorted(mechs.items())}
                for u, mechs in sorted(self._file.checked().items())}

    def alter(self, upserts: Mapping[tuple[str, str], ScramCredential],
              deletions: Iterable[tuple[str, str]] = ()) -> None:
        """Set the (user, mechanism) credentials of ``upserts`` and remove those of
        ``deletions`` (absent ones are ignored), in one write; a user left without
        a credential is removed. Names are not checked here (the admin API
        accepts any non-empty name, as Kafka does).

        :raises InvalidConfigError: users.json is broken.
        """
        users = {u: dict(m) for u, m in self._file.checked().items()}
        for user, mechanism in deletions:
            users.get(user, {}).pop(mechanism, None)
        for (user, mechanism), credential in upserts.items():
            users.setdefault(user, {})[mechanism] = credential
        self._save({u: m for u, m in users.items() if m})

    def delete(self, user: str) -> bool:
        """Remove ``user``; False if absent. :raises InvalidConfigError: users.json is broken."""
        users = dict(self._file.checked())
        if users.pop(user, None) is None:
            return False
        self._save(users)
        return True

    def _save(self, users: dict[str, dict[str, ScramCredential]]) -> None:
        data = {"version": 1, "users": {
            u: {m: c.to_json() for m, c in mechs.items()} for u, mechs in users.items()
        }}
        self.path.parent.mkdir(mode=DEFAULT_DIR_MODE, parents=True, exist_ok=True)
        write_atomically(self.path, json.dumps(data, indent=1).encode(), self._file_mode)
        self._file.saved()
