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
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from logbroker.broker.security.watched import WatchedFile, check_fields, describe_type, json_entries
from logbroker.errors import InvalidConfigError
from logbroker.storage import DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, write_atomically

ACLS_FILE = "acls.json"
RESOURCE_TYPES = ("topic", "group", "cluster", "transactional_id")
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
    "transactional_id": ("write", "describe"),
}
"""What Kafka reports per resource type in ``authorized_operations`` (KIP-430)."""


def authorized_operations(allowed: Callable[..., bool], resource_type: str) -> int:
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

    def covers(self, other: Acl) -> bool:
        """Whether this (DENY) rule's pattern matches every name ``other``'s pattern does."""
        if self.pattern == "literal":
            return self.name == "*" or (other.pattern == "literal" and other.name == self.name)
        if not self.name:
            return True
        return other.name.startswith(self.name) and (other.pattern == "prefixed" or other.name != "*")

    def __str__(self) -> str:
        return (f"{self.permission.upper()} {self.principal} {self.operation.upper()} "
                f"{self.resource_type}:{self.name}{'*' if self.pattern == 'prefixed' else ''}")


@dataclass(frozen=True, slots=True)
class AclFilter:
    """Which rules a DescribeAcls or DeleteAcls filter selects (Kafka's
    ``AclBindingFilter``). None is "any" for every field. ``pattern`` is
    ``literal`` or ``prefixed`` (rules of that type named exactly ``name``),
    ``any`` (rules of either type named exactly ``name``) or ``match`` (rules
    that would apply to resource ``name``: itself, ``*`` or a prefix of it).
    Rules have no host: they apply to every host (``*``), so a filter for
    another host selects nothing."""

    resource_type: str | None = None
    name: str | None = None
    pattern: str = "any"
    principal: str | None = None
    host: str | None = None
    operation: str | None = None
    permission: str | None = None

    def matches(self, acl: Acl) -> bool:
        if self.resource_type is not None and acl.resource_type != self.resource_type:
            return False
        if self.pattern not in ("any", "match") and acl.pattern != self.pattern:
            return False
        if self.name is not None:
            if self.pattern != "match":
                if acl.name != self.name:
                    return False
            elif acl.pattern == "prefixed":
                if not self.name.startswith(acl.name):
                    return False
            elif acl.name not in (self.name, "*"):
                return False
        return (
            (self.principal is None or acl.principal == self.principal)
            and (self.host is None or self.host == "*")
            and (self.operation is None or acl.operation == self.operation)
            and (self.permission is None or acl.permission == self.permission)
        )


def parse_acls(text: str) -> list[Acl]:
    """The rules of an ``acls.json`` text.

    :raises InvalidConfigError: naming the first problem: not JSON, an unknown
        or missing field, a value that is not a string or not allowed.
    """
    names = [f.name for f in fields(Acl)]
    required = [f.name for f in fields(Acl) if f.default is MISSING]
    out = []
    for number, item in enumerate(json_entries(text, key="acls", kind=list), 1):
        where = f"ACL #{number}"
        check_fields(where, item, names, required)
        for name, value in item.items():
            if not isinstance(value, str):
                raise InvalidConfigError(f"{where}: {name} must be a string, not {describe_type(value)}")
        try:
            out.append(Acl(**item))
        except InvalidConfigError as exc:
            raise InvalidConfigError(f"{where}: {exc}") from exc
    return out


class Authorizer:
    """Answers ``allowed(principal, operation, resource_type, name)`` from acls.json.

    A broken acls.json fails closed: only super users pass until it is fixed
    (logged once per change of the file); :meth:`acls`, :meth:`add` and
    :meth:`remove` raise InvalidConfigError instead.
    """

    def __init__(self, data_dir: str | os.PathLike, *, super_users: tuple[str, ...] = (),
                 file_mode: int = DEFAULT_FILE_MODE) -> None:
        self.path = Path(data_dir) / ACLS_FILE
        self._file_mode = file_mode  # permission bits of acls.json
        self.super_users = frozenset(super_users)
        self._file: WatchedFile[list[Acl]] = WatchedFile(self.path, parse_acls, list,
                                 fails_closed="every request is denied (super users excepted)")

    def __repr__(self) -> str:
        return f"Authorizer({str(self.path)!r}, acls={len(self._file.value)}, problem={self._file.problem!r})"

    def check(self) -> str | None:
        """Read acls.json if it changed (at start-up: now) and return why it is
        unusable, logged once; None when it is fine or absent."""
        self._file.current()
        return self._file.problem

    def acls(self) -> list[Acl]:
        """Every rule. :raises InvalidConfigError: acls.json is broken."""
        return list(self._file.checked())

    def allowed(self, principal: str, operation: str, resource_type: str, name: str) -> bool:
        """May ``principal`` do ``operation`` on the named resource?"""
        if principal in self.super_users:
            return True
        allow = False
        for acl in self._file.current():
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
        rules = [a for a in self._file.current()
                 if a.principal in (principal, "User:*") and a.resource_type == resource_type
                 and a.operation in (operation, "all")]
        denies = [a for a in rules if a.permission == "deny"]
        return any(
            not any(d.covers(a) for d in denies) for a in rules if a.permission == "allow"
        )

    def add(self, acl: Acl) -> None:
        """Add ``acl`` unless present. :raises InvalidConfigError: acls.json is broken."""
        acls = self.acls()
        if acl not in acls:
            acls.append(acl)
            self._save(acls)

    def remove(self, acl: Acl) -> bool:
        """Remove ``acl``; False if absent. :raises InvalidConfigError: acls.json is broken."""
        acls = self.acls()
        if acl not in acls:
            return False
        acls.remove(acl)
        self._save(acls)
        return True

    def update(self, added: Iterable[Acl] = (), removed: Iterable[Acl] = ()) -> None:
        """Add the rules of ``added`` that are absent and drop those of
        ``removed``, in one write of acls.json; in force for the next check.

        :raises InvalidConfigError: acls.json is broken.
        """
        gone = set(removed)
        acls = [a for a in self.acls() if a not in gone]
        for acl in added:
            if acl not in acls:
                acls.append(acl)
        self._save(acls)

    def _save(self, acls: list[Acl]) -> None:
        self.path.parent.mkdir(mode=DEFAULT_DIR_MODE, parents=True, exist_ok=True)
        data = json.dumps({"version": 1, "acls": [asdict(a) for a in acls]}, indent=1)
        write_atomically(self.path, data.encode(), self._file_mode)
        self._file.saved()
