"""Users and their salted SCRAM credentials, kept in ``users.json`` of the data dir.

The CLI (``logbroker users``) edits the file; a running broker re-reads it
when it changes, so users can be added without a restart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from logbroker.broker.security.scram import SCRAM_MECHANISMS, ScramCredential
from logbroker.errors import InvalidConfigError, StorageError

USERS_FILE = "users.json"


class UserStore:
    """Read-mostly map user -> mechanism -> ScramCredential, reloaded on change."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.path = Path(data_dir) / USERS_FILE
        self._users: dict[str, dict[str, ScramCredential]] = {}
        self._stamp: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"UserStore({str(self.path)!r}, users={len(self.users())})"

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._users, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self.path.read_text())
            self._users = {
                user: {mech: ScramCredential.from_json(c) for mech, c in mechs.items()}
                for user, mechs in raw.get("users", {}).items()
            }
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        self._stamp = stamp

    def users(self) -> dict[str, tuple[str, ...]]:
        """user -> mechanisms with a credential."""
        self._reload()
        return {u: tuple(sorted(m)) for u, m in sorted(self._users.items())}

    def credential(self, user: str, mechanism: str) -> ScramCredential | None:
        self._reload()
        return self._users.get(user, {}).get(mechanism)

    def add(self, user: str, password: str, *, iterations: int = 4096) -> None:
        """Create or replace the user's credentials for every SCRAM mechanism."""
        if not user or any(c in user for c in ",="):
            raise InvalidConfigError(f"user name {user!r} must be non-empty without ',' or '='")
        if len(password) < 1:
            raise InvalidConfigError("password must not be empty")
        self._reload()
        self._users[user] = {
            mech: ScramCredential.create(password, mech, iterations=iterations) for mech in SCRAM_MECHANISMS
        }
        self._save()

    def delete(self, user: str) -> bool:
        self._reload()
        if self._users.pop(user, None) is None:
            return False
        self._save()
        return True

    def _save(self) -> None:
        data = {"version": 1, "users": {
            u: {m: c.to_json() for m, c in mechs.items()} for u, mechs in self._users.items()
        }}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)
        self._stamp = None
