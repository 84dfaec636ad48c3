"""CreateAcls, DescribeAcls, DeleteAcls, DescribeUserScramCredentials and
AlterUserScramCredentials: the admin APIs over the same acls.json and
users.json that ``logbroker acls`` and ``logbroker users`` edit.

As Kafka: creating or deleting ACLs and altering credentials needs ALTER on
the cluster, describing them DESCRIBE on the cluster
(CLUSTER_AUTHORIZATION_FAILED otherwise). Without ``authorizer.enable`` the
ACL APIs answer SECURITY_DISABLED, as a Kafka broker without an authorizer
does: rules written then would not be enforced, and a client should be told
so (``logbroker acls`` still edits the file offline, to stage rules). The
SCRAM APIs work either way, as in Kafka.

A change is saved (fsynced, atomically replaced) before the answer and is in
force for the next request. logbroker's rules have no host: a rule applies to
every host, so a creation for a host other than ``*`` is refused with
INVALID_REQUEST, as are resource types and operations the store cannot hold
(delegation tokens, users, CLUSTER_ACTION and the token operations).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._build import build, module_of
from logbroker.broker.security.acls import (
    CLUSTER,
    OPERATION_CODES,
    OPERATIONS,
    RESOURCE_TYPES,
    Acl,
    AclFilter,
)
from logbroker.broker.security.scram import ScramCredential
from logbroker.errors import InvalidConfigError, StorageError
from logbroker.protocol import ErrorCode

if TYPE_CHECKING:
    from logbroker.broker.core import Broker
    from logbroker.protocol import Request

CLUSTER_DENIED = ErrorCode.cluster_authorization_failed

# Kafka's codes (ResourceType, PatternType, AclOperation, AclPermissionType):
# 0 is UNKNOWN and 1 ANY in each; the names are logbroker's (acls.py).
RESOURCE_CODES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5, "delegation_token": 6, "user": 7}
PATTERN_CODES = {"match": 2, "literal": 3, "prefixed": 4}
PERMISSION_CODES = {"deny": 2, "allow": 3}
OPERATION_NAMES = {code: op for op, code in OPERATION_CODES.items()} | {
    13: "create_tokens", 14: "describe_tokens", 15: "two_phase_commit",
}
_RESOURCE_NAMES = {code: name for name, code in RESOURCE_CODES.items()}
_PATTERN_NAMES = {code: name for name, code in PATTERN_CODES.items()}
_PERMISSION_NAMES = {code: name for name, code in PERMISSION_CODES.items()}
_ANY = 1

SCRAM_CODES = {"SCRAM-SHA-256": 1, "SCRAM-SHA-512": 2}
_SCRAM_NAMES = {code: name for name, code in SCRAM_CODES.items()}
MIN_ITERATIONS, MAX_ITERATIONS = 4096, 16384
"""Kafka's bounds for SCRAM iterations (ScramMechanism.minIterations, ScramControlManager)."""


class _Refused(Exception):
    """A request item Kafka refuses: its error code and message."""

    def __init__(self, code: ErrorCode, message: str | None) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# -- ACLs ---------------------------------------------------------------------------------


def _acl_filter(item: Any) -> AclFilter:
    """The store filter of a DescribeAcls body or a DeleteAcls filter.

    :raises _Refused: INVALID_REQUEST for UNKNOWN or unrecognised codes, as Kafka.
    """
    rtype, pattern = int(item.resource_type_filter), int(getattr(item, "pattern_type_filter", 3))
    if (rtype != _ANY and rtype not in _RESOURCE_NAMES) or (pattern != _ANY and pattern not in _PATTERN_NAMES):
        raise _Refused(ErrorCode.invalid_request, "Unknown patternFilter.")
    operation, permission = int(item.operation), int(item.permission_type)
    if (operation != _ANY and operation not in OPERATION_NAMES) or (
            permission != _ANY and permission not in _PERMISSION_NAMES):
        raise _Refused(ErrorCode.invalid_request, "Unknown entryFilter.")
    return AclFilter(
        resource_type=None if rtype == _ANY else _RESOURCE_NAMES[rtype],
        name=item.resource_name_filter,
        pattern="any" if pattern == _ANY else _PATTERN_NAMES[pattern],
        principal=item.principal_filter,
        host=item.host_filter,
        operation=None if operation == _ANY else OPERATION_NAMES[operation],
        permission=None if permission == _ANY else _PERMISSION_NAMES[permission],
    )


def _new_acl(creation: Any) -> Acl:
    """The rule a CreateAcls creation asks for.

    :raises _Refused: INVALID_REQUEST with Kafka's message for what Kafka
        refuses, and with logbroker's for what its store cannot hold.
    """
    invalid = ErrorCode.invalid_request
    rtype = _RESOURCE_NAMES.get(int(creation.resource_type))
    if rtype is None:
        raise _Refused(invalid, f"Invalid resourceType {int(creation.resource_type)}")
    pattern = _PATTERN_NAMES.get(int(creation.resource_pattern_type))
    if pattern not in ("literal", "prefixed"):
        raise _Refused(invalid, f"Invalid patternType {int(creation.resource_pattern_type)}")
    operation = OPERATION_NAMES.get(int(creation.operation))
    if operation is None:
        raise _Refused(invalid, f"Invalid operation {int(creation.operation)}")
    permission = _PERMISSION_NAMES.get(int(creation.permission_type))
    if permission is None:
        raise _Refused(invalid, f"Invalid permissionType {int(creation.permission_type)}")
    if not creation.resource_name:
        raise _Refused(invalid, "Invalid empty resource name")
    if rtype == "cluster" and creation.resource_name != CLUSTER:
        raise _Refused(invalid, f"The only valid name for the CLUSTER resource is {CLUSTER}")
    if ":" not in creation.principal:
        raise _Refused(invalid, f"Could not parse principal from `{creation.principal}` (no colon is present "
                                "separating the principal type from the principal name)")
    if rtype not in RESOURCE_TYPES:
        raise _Refused(invalid, f"logbroker keeps no ACLs for resource type {rtype}")
    if operation not in OPERATIONS:
        raise _Refused(invalid, f"logbroker keeps no ACLs for operation {operation}")
    if creation.host != "*":
        raise _Refused(invalid, "logbroker ACLs apply to every host: the host must be *")
    try:
        return Acl(creation.principal, rtype, creation.resource_name, operation, permission, pattern)
    except InvalidConfigError as exc:
        raise _Refused(invalid, str(exc)) from exc


def _acl_fields(acl: Acl) -> dict[str, Any]:
    """The wire fields of one rule (resource and entry)."""
    return dict(
        resource_type=RESOURCE_CODES[acl.resource_type], resource_name=acl.name,
        pattern_type=PATTERN_CODES[acl.pattern], principal=acl.principal, host="*",
        operation=OPERATION_CODES[acl.operation], permission_type=PERMISSION_CODES[acl.permission],
    )


def _acl_gate(broker: Broker, ctx: RequestContext, operation: str) -> _Refused | None:
    """Why an ACL request is refused as a whole: no cluster permission, or no authorizer."""
    if not broker.allowed(ctx, operation, "cluster", CLUSTER):
        return _Refused(CLUSTER_DENIED, None)
    if broker.authorizer is None:
        return _Refused(ErrorCode.security_disabled, "No Authorizer is configured.")
    return None


def handle_create_acls(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    creations = request.body.creations
    refused = _acl_gate(broker, ctx, "alter")
    outcomes: list[Acl | _Refused] = []
    for creation in creations:
        if refused is not None:
            outcomes.append(refused)
            continue
        try:
            outcomes.append(_new_acl(creation))
        except _Refused as exc:
            outcomes.append(exc)
    new = [o for o in outcomes if isinstance(o, Acl)]
    if new:
        assert broker.authorizer is not None  # _acl_gate refused otherwise
        try:
            broker.authorizer.update(added=new)
        except (InvalidConfigError, StorageError, OSError) as exc:
            failed = _Refused(ErrorCode.unknown_server_error, f"cannot save the ACLs: {exc}")
            outcomes = [failed if isinstance(o, Acl) else o for o in outcomes]
    results = tuple(
        build(mod.AclCreationResult, error_code=o.code, error_message=o.message) if isinstance(o, _Refused)
        else build(mod.AclCreationResult, error_code=ErrorCode.none, error_message=None)
        for o in outcomes
    )
    return build(request.response_class, results=results)


def handle_describe_acls(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    try:
        refused = _acl_gate(broker, ctx, "describe")
        if refused is not None:
            raise refused
        assert broker.authorizer is not None
        wanted = _acl_filter(request.body)
        try:
            rules = broker.authorizer.acls()
        except InvalidConfigError as exc:
            raise _Refused(ErrorCode.unknown_server_error, str(exc)) from exc
    except _Refused as exc:
        return build(request.response_class, error_code=exc.code, error_message=exc.message, resources=())
    by_resource: dict[tuple[str, str, str], list[Acl]] = {}
    for acl in rules:
        if wanted.matches(acl):
            by_resource.setdefault((acl.resource_type, acl.name, acl.pattern), []).append(acl)
    resources = tuple(
        build(mod.DescribeAclsResource, resource_type=RESOURCE_CODES[rtype], resource_name=name,
              pattern_type=PATTERN_CODES[pattern], acls=tuple(
                  build(mod.AclDescription, principal=a.principal, host="*", operation=OPERATION_CODES[a.operation],
                        permission_type=PERMISSION_CODES[a.permission]) for a in acls))
        for (rtype, name, pattern), acls in by_resource.items()
    )
    return build(request.response_class, error_code=ErrorCode.none, error_message=None, resources=resources)


def handle_delete_acls(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    filters = request.body.filters
    outcomes: list[list[Acl] | _Refused] = []
    refused = _acl_gate(broker, ctx, "alter")
    rules: list[Acl] = []
    if refused is None:
        assert broker.authorizer is not None
        try:
            rules = broker.authorizer.acls()
        except InvalidConfigError as exc:
            refused = _Refused(ErrorCode.unknown_server_error, str(exc))
    for item in filters:
        if refused is not None:
            outcomes.append(refused)
            continue
        try:
            wanted = _acl_filter(item)
        except _Refused as exc:
            outcomes.append(exc)
            continue
        # A rule two filters select is reported by both, as Kafka does.
        outcomes.append([acl for acl in rules if wanted.matches(acl)])
    doomed = {acl for o in outcomes if isinstance(o, list) for acl in o}
    if doomed:
        assert broker.authorizer is not None
        try:
            broker.authorizer.update(removed=doomed)
        except (InvalidConfigError, StorageError, OSError) as exc:
            failed = _Refused(ErrorCode.unknown_server_error, f"cannot save the ACLs: {exc}")
            outcomes = [failed if isinstance(o, list) and o else o for o in outcomes]
    results: list[Any] = []
    for o in outcomes:
        if isinstance(o, _Refused):
            results.append(build(mod.DeleteAclsFilterResult, error_code=o.code, error_message=o.message,
                                 matching_acls=()))
            continue
        matching = tuple(build(mod.DeleteAclsMatchingAcl, error_code=ErrorCode.none, error_message=None,
                               **_acl_fields(acl)) for acl in o)
        results.append(build(mod.DeleteAclsFilterResult, error_code=ErrorCode.none, error_message=None,
                             matching_acls=matching))
    return build(request.response_class, filter_results=tuple(results))


# -- SCRAM credentials ---------------------------------------------------------------------


def handle_describe_user_scram_credentials(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    mod = module_of(request.response_class)
    asked = [u.name for u in request.body.users or ()]

    def refuse(code: ErrorCode, message: str | None) -> Any:
        results = tuple(build(mod.DescribeUserScramCredentialsResult, user=u, error_code=code,
                              error_message=message, credential_infos=()) for u in dict.fromkeys(asked))
        return build(request.response_class, error_code=code, error_message=message, results=results)

    if not broker.allowed(ctx, "describe", "cluster", CLUSTER):
        return refuse(CLUSTER_DENIED, None)
    try:
        known = broker.users.iterations()
    except InvalidConfigError as exc:
        return refuse(ErrorCode.unknown_server_error, str(exc))
    results: list[Any] = []
    # Null or empty: every user (Kafka's ScramImage.describe).
    for user in dict.fromkeys(asked) if asked else known:
        code: ErrorCode = ErrorCode.none
        message: str | None = None
        infos: tuple[Any, ...] = ()
        if asked.count(user) > 1:
            code = ErrorCode.duplicate_resource
            message = f"Cannot describe SCRAM credentials for the same user twice in a single request: {user}"
        elif user not in known:
            code = ErrorCode.resource_not_found
            message = f"Attempt to describe a user credential that does not exist: {user}"
        else:
            infos = tuple(build(mod.CredentialInfo, mechanism=SCRAM_CODES[m], iterations=n)
                          for m, n in known[user].items())
        results.append(build(mod.DescribeUserScramCredentialsResult, user=user, error_code=code,
                             error_message=message, credential_infos=infos))
    return build(request.response_class, error_code=ErrorCode.none, error_message=None, results=tuple(results))


def _check_scram_name(name: str, mechanism_code: int) -> str:
    """The mechanism's name. :raises _Refused: empty user name or unknown mechanism."""
    if not name:
        raise _Refused(ErrorCode.unacceptable_credential, "Username must not be empty")
    mechanism = _SCRAM_NAMES.get(mechanism_code)
    if mechanism is None:
        raise _Refused(ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism")
    return mechanism


def handle_alter_user_scram_credentials(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    """Kafka's ScramControlManager.alterCredentials: one change per user per
    request (a second one makes the user DUPLICATE_RESOURCE), deletions first;
    the valid changes are saved in one write."""
    mod = module_of(request.response_class)
    body = request.body
    users = dict.fromkeys([d.name for d in body.deletions] + [u.name for u in body.upsertions])
    if not broker.allowed(ctx, "alter", "cluster", CLUSTER):
        return build(request.response_class, results=tuple(
            build(mod.AlterUserScramCredentialsResult, user=u, error_code=CLUSTER_DENIED, error_message=None)
            for u in users))
    errors: dict[str, _Refused] = {}
    deletions: dict[str, tuple[str, str]] = {}
    upserts: dict[str, tuple[tuple[str, str], ScramCredential]] = {}
    twice = _Refused(ErrorCode.duplicate_resource, "A user credential cannot be altered twice in the same request")
    try:
        known = broker.users.iterations()
    except InvalidConfigError as exc:
        known = {}
        errors = dict.fromkeys(users, _Refused(ErrorCode.unknown_server_error, str(exc)))
    for deletion in body.deletions:
        name = deletion.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None:
            errors[name] = twice
            continue
        try:
            mechanism = _check_scram_name(name, int(deletion.mechanism))
            if mechanism not in known.get(name, {}):
                raise _Refused(ErrorCode.resource_not_found, "Attempt to delete a user credential that does not exist")
        except _Refused as exc:
            errors[name] = exc
            continue
        deletions[name] = (name, mechanism)
    for upsertion in body.upsertions:
        name = upsertion.name
        if name in errors:
            continue
        if deletions.pop(name, None) is not None or upserts.pop(name, None) is not None:
            errors[name] = twice
            continue
        try:
            mechanism = _check_scram_name(name, int(upsertion.mechanism))
            iterations = int(upsertion.iterations)
            if iterations < MIN_ITERATIONS:
                raise _Refused(ErrorCode.unacceptable_credential, "Too few iterations")
            if iterations > MAX_ITERATIONS:
                raise _Refused(ErrorCode.unacceptable_credential, "Too many iterations")
        except _Refused as exc:
            errors[name] = exc
            continue
        credential = ScramCredential.from_salted_password(
            bytes(upsertion.salted_password), mechanism, salt=bytes(upsertion.salt), iterations=iterations)
        upserts[name] = ((name, mechanism), credential)
    if deletions or upserts:
        try:
            broker.users.alter(dict(upserts.values()), deletions.values())
        except (InvalidConfigError, StorageError, OSError) as exc:
            failed = _Refused(ErrorCode.unknown_server_error, f"cannot save the credentials: {exc}")
            errors.update(dict.fromkeys([*deletions, *upserts], failed))
            deletions, upserts = {}, {}
    results = [build(mod.AlterUserScramCredentialsResult, user=u, error_code=ErrorCode.none, error_message=None)
               for u in [*deletions, *upserts]]
    results += [build(mod.AlterUserScramCredentialsResult, user=u, error_code=e.code, error_message=e.message)
                for u, e in errors.items()]
    return build(request.response_class, results=tuple(results))

