"""Permissions: who may do what to which topic, group or the cluster.

ACLs live in ``acls.json`` of the data dir (edited by ``logbroker acls``,
re-read by a running broker when it changes). Rules follow Kafka's
authorizer: a DENY that matches wins; otherwise an ALLOW must match; READ,
WRITE, DELETE and ALTER imply DESCRIBE; ALL matches every operation;
principal ``User:*`` matches everyone; a pattern is a literal name, ``*``, or
a prefix (``pattern=prefixed``). Super users pass every check.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from logbroker.errors import InvalidConfigError, StorageError

ACLS_FILE = "acls.json"
RESOURCE_TYPES = ("topic", "group", "cluster")
OPERATIONS = ("read", "write", "create", "delete", "describe", "alter", "all")
PERMISSIONS = ("allow", "deny")
PATTERNS = ("literal", "prefixed")
_IMPLIES_DESCRIBE = {"read", "write", "delete", "alter"}


@dataclass(frozen=True, slots=True)
class Acl:
    """One rule. ``principal`` is ``User:<name>`` or ``User:*``."""

    principal: str
    resource_type: str
    name: str
    operation: str
    permission: str = "allow"
    pattern: str = "literal"

    def __post_init__(self) -> None:
        if not self.principal.startswith("User:") or len(self.principal) <= 5:
            raise InvalidConfigError(f"principal must look like User:alice or User:*, not {self.principal!r}")
        for value, allowed, what in (
            (self.resource_type, RESOURCE_TYPES, "resource type"),
            (self.operation, OPERATIONS, "operation"),
            (self.permission, PERMISSIONS, "permission"),
            (self.pattern, PATTERNS, "pattern"),
        ):
            if value not in allowed:
                raise InvalidConfigError(f"{what} must be one of {', '.join(allowed)}, not {value!r}")

    def matches(self, principal: str, resource_type: str, name: str, operation: str) -> bool:
        if self.principal not in (principal, "User:*") or self.resource_type != resource_type:
            return False
        if self.pattern == "prefixed":
            if not name.startswith(self.name):
                return False
        elif self.name not in (name, "*"):
            return False
        if self.operation == "all" or self.operation == operation:
            return True
        return operation == "describe" and self.permission == "allow" and self.operation in _IMPLIES_DESCRIBE

    def __str__(self) -> str:
        return (f"{self.permission.upper()} {self.principal} {self.operation.upper()} "
                f"{self.resource_type}:{self.name}{'*' if self.pattern == 'prefixed' else ''}")


class Authorizer:
    """Answers ``allowed(principal, operation, resource_type, name)`` from acls.json."""

    def __init__(self, data_dir: str | os.PathLike, *, super_users: tuple[str, ...] = ()) -> None:
        self.path = Path(data_dir) / ACLS_FILE
        self.super_users = frozenset(super_users)
        self._acls: list[Acl] = []
        self._stamp: tuple[int, int] | None = None

    def __repr__(self) -> str:
        return f"Authorizer({str(self.path)!r}, acls={len(self.acls())})"

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._acls, self._stamp = [], None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self.path.read_text())
            self._acls = [Acl(**item) for item in raw.get("acls", [])]
        except (OSError, ValueError, TypeError, InvalidConfigError) as exc:
            raise StorageError(f"cannot read {self.path}: {exc}") from exc
        self._stamp = stamp

    def acls(self) -> list[Acl]:
        self._reload()
        return list(self._acls)

    def allowed(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        if principal in self.super_users:
            return True
        matching = [a for a in self.acls() if a.matches(principal, resource_type, name, operation)]
        if any(a.permission == "deny" for a in matching):
            return False
        return any(a.permission == "allow" for a in matching)

    def add(self, acl: Acl) -> None:
        acls = self.acls()
        if acl not in acls:
            acls.append(acl)
            self._save(acls)

    def remove(self, acl: Acl) -> bool:
        acls = self.acls()
        if acl not in acls:
            return False
        acls.remove(acl)
        self._save(acls)
        return True

    def _save(self, acls: list[Acl]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            json.dump({"version": 1, "acls": [asdict(a) for a in acls]}, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._stamp = None
