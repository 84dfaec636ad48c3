"""Permissions: who may do what to which topic, group or the cluster.

ACLs live in ``acls.json`` of the data dir (edited by ``logbroker acls``,
re-read by a running broker when it changes). Rules follow Kafka's
authorizer: a DENY that matches wins; otherwise an ALLOW must match; READ,
WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies
DESCRIBE_CONFIGS (for ALLOW rules only); ALL matches every operation;
principal ``User:*`` matches everyone; a pattern is a literal name, ``*``, or
a prefix (``pattern=prefixed``). Super users pass every check.

Which request needs which operation on which resource is the handlers'
business (the table is in docs/reliability.md); this module only answers.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from logbroker.errors import InvalidConfigError, StorageError

ACLS_FILE = "acls.json"
RESOURCE_TYPES = ("topic", "group", "cluster")
OPERATIONS = (
    "read", "write", "create", "delete", "describe", "alter",
    "describe_configs", "alter_configs", "idempotent_write", "all",
)
PERMISSIONS = ("allow", "deny")
PATTERNS = ("literal", "prefixed")
CLUSTER = "kafka-cluster"
"""The name of the one cluster resource (Kafka's ``kafka-cluster``)."""

_IMPLIED_BY = {
    "describe": frozenset({"read", "write", "delete", "alter"}),
    "describe_configs": frozenset({"alter_configs"}),
}
"""Operations an ALLOW of another operation grants as well (Kafka's rule)."""

OPERATION_CODES = {
    "all": 2, "read": 3, "write": 4, "create": 5, "delete": 6, "alter": 7, "describe": 8,
    "cluster_action": 9, "describe_configs": 10, "alter_configs": 11, "idempotent_write": 12,
}
"""Kafka's AclOperation codes: bit positions of an ``authorized_operations`` field."""

SUPPORTED_OPERATIONS = {
    "topic": ("read", "write", "create", "describe", "delete", "alter", "describe_configs", "alter_configs"),
    "group": ("read", "describe", "delete", "describe_configs", "alter_configs"),
    "cluster": ("create", "cluster_action", "describe_configs", "alter_configs", "idempotent_write", "alter",
                "describe"),
}
"""What Kafka reports per resource type in ``authorized_operations`` (KIP-430)."""


def authorized_operations(allowed, resource_type: str) -> int:
    """The KIP-430 bit field: bit ``OPERATION_CODES[op]`` is set for every
    supported operation ``op`` on ``resource_type`` for which ``allowed(op)``
    is true (``allowed`` is e.g. ``lambda op: broker.allowed(op, "group", name)``)."""
    bits = 0
    for op in SUPPORTED_OPERATIONS[resource_type]:
        if allowed(op):
            bits |= 1 << OPERATION_CODES[op]
    return bits


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
        return self.permission == "allow" and self.operation in _IMPLIED_BY.get(operation, ())

    def _covers(self, other: Acl) -> bool:
        """Whether this (DENY) rule's pattern matches every name ``other``'s pattern does."""
        if self.pattern == "literal":
            return self.name == "*" or (other.pattern == "literal" and other.name == self.name)
        if not self.name:
            return True
        return other.name.startswith(self.name) and (other.pattern == "prefixed" or other.name != "*")

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
        """May ``principal`` do ``operation`` on the named resource?"""
        if principal in self.super_users:
            return True
        self._reload()
        allow = False
        for acl in self._acls:
            if acl.matches(principal, resource_type, name, operation):
                if acl.permission == "deny":
                    return False
                allow = True
        return allow

    def allowed_on_any(self, principal: str, operation: str, resource_type: str) -> bool:
        """May ``principal`` do ``operation`` on at least one resource of the type?

        Kafka's ``authorizeByResourceType`` (used by InitProducerId: WRITE on
        any topic): true when some ALLOW rule for the operation (or ALL) is
        not wholly covered by a DENY rule (a DENY of ``*``, a DENY prefix that
        the allowed name or prefix starts with, or a DENY of the same literal name).
        """
        if principal in self.super_users:
            return True
        self._reload()
        rules = [a for a in self._acls
                 if a.principal in (principal, "User:*") and a.resource_type == resource_type
                 and a.operation in (operation, "all")]
        denies = [a for a in rules if a.permission == "deny"]
        return any(
            not any(d._covers(a) for d in denies) for a in rules if a.permission == "allow"
        )

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
