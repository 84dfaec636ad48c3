"""CreateAcls, DescribeAcls, DeleteAcls, DescribeUserScramCredentials and
AlterUserScramCredentials through the handlers with real request bytes.

``admin`` holds ALTER on the cluster (which implies DESCRIBE), ``bob`` nothing.
The rules and credentials land in the same acls.json and users.json that
``logbroker acls`` and ``logbroker users`` edit, and are in force for the next
request.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from admin_harness import AdminHarness
from click.testing import CliRunner

from logbroker.broker import Broker, BrokerConfig
from logbroker.broker.security import Acl, Authorizer, UserStore, new_mechanism
from logbroker.broker.session import RequestContext
from logbroker.cli.security import acls as acls_cli
from logbroker.cli.security import users as users_cli
from logbroker.protocol import ApiKey as K
from logbroker.protocol import ErrorCode as E

# Kafka's codes: resource TOPIC 2 GROUP 3 CLUSTER 4 DELEGATION_TOKEN 6; pattern ANY 1 MATCH 2 LITERAL 3
# PREFIXED 4; operation ANY 1 ALL 2 READ 3 WRITE 4 ALTER 7 DESCRIBE 8 CLUSTER_ACTION 9; DENY 2 ALLOW 3.
TOPIC, GROUP, CLUSTER, TOKEN = 2, 3, 4, 6
ANY, MATCH, LITERAL, PREFIXED = 1, 2, 3, 4
ALL, READ, WRITE, ALTER, DESCRIBE, CLUSTER_ACTION = 2, 3, 4, 7, 8, 9
DENY, ALLOW = 2, 3


def _broker(tmp_path, authorizer: bool = True) -> Broker:
    data = tmp_path / "data"
    if authorizer:
        Authorizer(data).add(Acl("User:admin", "cluster", "kafka-cluster", "alter"))
    return Broker(BrokerConfig(data_dir=str(data), authorizer_enable=authorizer))


@pytest.fixture
def h(tmp_path):
    broker = _broker(tmp_path)
    broker.create_topic("orders", 1)
    yield AdminHarness(broker)
    broker.close()


def creation(h, version=3, *, rtype=TOPIC, name="orders", pattern=LITERAL, principal="User:alice", host="*",
             operation=READ, permission=ALLOW):
    return h.req(K.CREATE_ACLS, version, "AclCreation", resource_type=rtype, resource_name=name,
                 resource_pattern_type=pattern, principal=principal, host=host, operation=operation,
                 permission_type=permission)


def create(h, *creations, version=3, as_user=None):
    resp = h.call(K.CREATE_ACLS, version, "CreateAclsRequest", creations=creations, as_user=as_user)
    return [(r.error_code, r.error_message) for r in resp.results]


def describe(h, version=3, as_user=None, *, rtype=ANY, name=None, pattern=ANY, principal=None, host=None,
             operation=ANY, permission=ANY):
    return h.call(K.DESCRIBE_ACLS, version, "DescribeAclsRequest", as_user=as_user, resource_type_filter=rtype,
                  resource_name_filter=name, pattern_type_filter=pattern, principal_filter=principal,
                  host_filter=host, operation=operation, permission_type=permission)


def described(resp):
    """Flat (resource type, name, pattern, principal, host, operation, permission) rows."""
    assert resp.error_code == 0, resp
    return sorted((r.resource_type, r.resource_name, r.pattern_type, a.principal, a.host, a.operation,
                   a.permission_type) for r in resp.resources for a in r.acls)


def delete_filter(h, version=3, *, rtype=ANY, name=None, pattern=ANY, principal=None, host=None,
                  operation=ANY, permission=ANY):
    return h.req(K.DELETE_ACLS, version, "DeleteAclsFilter", resource_type_filter=rtype, resource_name_filter=name,
                 pattern_type_filter=pattern, principal_filter=principal, host_filter=host, operation=operation,
                 permission_type=permission)


def produce_allowed(h, user: str, topic: str = "orders") -> bool:
    return h.broker.allowed(RequestContext(principal=f"User:{user}"), "write", "topic", topic)


# -- ACLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 3])
def test_created_acls_are_described_saved_for_the_cli_and_in_force(h, version, tmp_path):
    assert not produce_allowed(h, "alice")
    results = create(h, creation(h, version, operation=WRITE),
                     creation(h, version, name="ord", pattern=PREFIXED, operation=READ, permission=DENY),
                     version=version)
    assert results == [(0, None), (0, None)]
    assert produce_allowed(h, "alice")  # the next request sees the new rule
    rows = described(describe(h, version, principal="User:alice"))
    assert rows == [(TOPIC, "ord", PREFIXED, "User:alice", "*", READ, DENY),
                    (TOPIC, "orders", LITERAL, "User:alice", "*", WRITE, ALLOW)]
    # The file is the CLI's: `logbroker acls list` shows the rules...
    out = CliRunner().invoke(acls_cli, ["list", "--data-dir", str(tmp_path / "data")]).output
    assert "ALLOW User:alice WRITE topic:orders" in out and "DENY User:alice READ topic:ord*" in out
    # ...and a fresh Authorizer (a restarted broker) reads them back.
    assert Acl("User:alice", "topic", "orders", "write") in Authorizer(tmp_path / "data").acls()
    # Creating the same rule again succeeds without duplicating it, as Kafka.
    assert create(h, creation(h, version, operation=WRITE), version=version) == [(0, None)]
    assert len(describe(h, version, principal="User:alice", operation=WRITE).resources[0].acls) == 1


def test_a_deny_created_over_the_api_refuses_the_next_request(h):
    create(h, creation(h, principal="User:*", operation=WRITE))
    assert produce_allowed(h, "carol")
    create(h, creation(h, principal="User:carol", operation=ALL, permission=DENY))
    assert not produce_allowed(h, "carol")


def test_a_rule_added_by_the_cli_is_described(h, tmp_path):
    result = CliRunner().invoke(acls_cli, ["add", "--data-dir", str(tmp_path / "data"), "--principal",
                                           "User:dave", "--group", "g", "--operation", "read"])
    assert result.exit_code == 0, result.output
    assert described(describe(h, principal="User:dave")) == [(GROUP, "g", LITERAL, "User:dave", "*", READ, ALLOW)]


def test_filters_follow_kafkas_acl_binding_filter(h):
    create(h,
           creation(h, name="orders", operation=READ),
           creation(h, name="*", operation=DESCRIBE),
           creation(h, name="ord", pattern=PREFIXED, operation=WRITE),
           creation(h, name="payments", operation=READ, principal="User:bob", permission=DENY),
           creation(h, rtype=GROUP, name="g", operation=READ),
           creation(h, rtype=CLUSTER, name="kafka-cluster", operation=DESCRIBE, principal="User:ops"))

    def names(**f):
        return sorted({(r[1], r[2]) for r in described(describe(h, **f)) if r[3] != "User:admin"})

    # LITERAL and PREFIXED select rules of that type with exactly that name.
    assert names(rtype=TOPIC, name="orders", pattern=LITERAL) == [("orders", LITERAL)]
    assert names(rtype=TOPIC, name="ord", pattern=PREFIXED) == [("ord", PREFIXED)]
    assert names(rtype=TOPIC, name="ord", pattern=LITERAL) == []
    # ANY: either type, exact name; MATCH: every rule that applies to the resource.
    assert names(rtype=TOPIC, name="orders", pattern=ANY) == [("orders", LITERAL)]
    assert names(rtype=TOPIC, name="orders", pattern=MATCH) == [("*", LITERAL), ("ord", PREFIXED),
                                                                  ("orders", LITERAL)]
    assert names(rtype=TOPIC, name="payments", pattern=MATCH) == [("*", LITERAL), ("payments", LITERAL)]
    assert names(rtype=ANY) == [("*", LITERAL), ("g", LITERAL), ("kafka-cluster", LITERAL), ("ord", PREFIXED),
                                ("orders", LITERAL), ("payments", LITERAL)]
    assert names(rtype=GROUP) == [("g", LITERAL)]
    # Entry filters: principal, operation, permission, host ("*" or null; rules hold no other host).
    assert names(principal="User:bob") == [("payments", LITERAL)]
    assert names(operation=WRITE) == [("ord", PREFIXED)]
    assert names(permission=DENY) == [("payments", LITERAL)]
    assert names(host="*", rtype=GROUP) == [("g", LITERAL)]
    assert names(host="10.0.0.1") == []
    # A type or operation logbroker keeps no rules for selects nothing.
    assert names(rtype=TOKEN) == [] and names(operation=CLUSTER_ACTION) == []


def test_delete_removes_what_each_filter_matches_and_reports_it(h, tmp_path):
    create(h, creation(h, operation=READ), creation(h, operation=WRITE), creation(h, rtype=GROUP, name="g"))
    resp = h.call(K.DELETE_ACLS, 3, "DeleteAclsRequest", filters=(
        delete_filter(h, rtype=TOPIC, principal="User:alice"),
        delete_filter(h, rtype=TOPIC, operation=WRITE),   # overlaps the first: reported by both
        delete_filter(h, rtype=TOPIC, name="nothing-here"),
        delete_filter(h, rtype=0),                         # UNKNOWN resource type
    ))
    first, second, none, bad = resp.filter_results
    assert first.error_code == 0 and sorted(a.operation for a in first.matching_acls) == [READ, WRITE]
    assert all((a.resource_type, a.resource_name, a.pattern_type, a.host) == (TOPIC, "orders", LITERAL, "*")
               for a in first.matching_acls)
    assert [a.operation for a in second.matching_acls] == [WRITE]
    assert none.error_code == 0 and none.matching_acls == ()
    assert (bad.error_code, bad.error_message) == (E.invalid_request, "Unknown patternFilter.")
    remaining = Authorizer(tmp_path / "data").acls()
    assert Acl("User:alice", "group", "g", "read") in remaining
    assert not [a for a in remaining if a.resource_type == "topic"]
    assert not produce_allowed(h, "alice")


@pytest.mark.parametrize("fields, message", [
    (dict(rtype=ANY), "Invalid resourceType 1"),
    (dict(rtype=0), "Invalid resourceType 0"),
    (dict(pattern=MATCH), "Invalid patternType 2"),
    (dict(pattern=ANY), "Invalid patternType 1"),
    (dict(operation=ANY), "Invalid operation 1"),
    (dict(operation=0), "Invalid operation 0"),
    (dict(permission=ANY), "Invalid permissionType 1"),
    (dict(name=""), "Invalid empty resource name"),
    (dict(rtype=CLUSTER, name="my-cluster", operation=ALTER), "The only valid name for the CLUSTER resource"),
    (dict(principal="alice"), "Could not parse principal"),
    # What Kafka accepts but logbroker's store cannot hold:
    (dict(host="10.0.0.1"), "host must be *"),
    (dict(rtype=TOKEN, name="tok"), "no ACLs for resource type delegation_token"),
    (dict(rtype=CLUSTER, name="kafka-cluster", operation=CLUSTER_ACTION), "no ACLs for operation cluster_action"),
    (dict(principal="Group:admins"), "principal must look like User:"),
])
def test_invalid_creations_are_refused_one_by_one(h, fields, message, tmp_path):
    results = create(h, creation(h, **fields), creation(h, name="fine"))
    (code, text), ok = results
    assert code == E.invalid_request and message in text
    assert ok == (0, None)
    assert [a.name for a in Authorizer(tmp_path / "data").acls() if a.principal == "User:alice"] == ["fine"]


@pytest.mark.parametrize("fields, message", [
    (dict(rtype=0), "Unknown patternFilter."),
    (dict(rtype=42), "Unknown patternFilter."),
    (dict(pattern=0), "Unknown patternFilter."),
    (dict(operation=0), "Unknown entryFilter."),
    (dict(permission=7), "Unknown entryFilter."),
])
def test_invalid_describe_filters_answer_invalid_request(h, fields, message):
    resp = describe(h, **fields)
    assert (resp.error_code, resp.error_message, resp.resources) == (E.invalid_request, message, ())


def test_acl_apis_need_alter_or_describe_on_the_cluster(h, tmp_path):
    assert create(h, creation(h), creation(h, name="x"), as_user="bob") == [(E.cluster_authorization_failed, None)] * 2
    assert describe(h, as_user="bob").error_code == E.cluster_authorization_failed
    resp = h.call(K.DELETE_ACLS, 3, "DeleteAclsRequest", filters=(delete_filter(h),), as_user="bob")
    assert resp.filter_results[0].error_code == E.cluster_authorization_failed
    assert len(Authorizer(tmp_path / "data").acls()) == 1  # admin's own rule, untouched
    # DESCRIBE on the cluster lets bob describe, not create.
    create(h, creation(h, rtype=CLUSTER, name="kafka-cluster", principal="User:bob", operation=DESCRIBE))
    assert describe(h, as_user="bob").error_code == 0
    assert create(h, creation(h), as_user="bob") == [(E.cluster_authorization_failed, None)]


def test_without_an_authorizer_the_acl_apis_answer_security_disabled(tmp_path):
    broker = _broker(tmp_path, authorizer=False)
    h = AdminHarness(broker)
    try:
        assert create(h, creation(h)) == [(E.security_disabled, "No Authorizer is configured.")]
        assert describe(h).error_code == E.security_disabled
        resp = h.call(K.DELETE_ACLS, 1, "DeleteAclsRequest", filters=(delete_filter(h, 1),))
        assert resp.filter_results[0].error_code == E.security_disabled
        assert not (tmp_path / "data" / "acls.json").exists()
    finally:
        broker.close()


def test_a_broken_acls_file_is_an_error_not_a_silent_overwrite(h, tmp_path):
    path = tmp_path / "data" / "acls.json"
    path.write_text("{not json")
    os.utime(path, (1, 1))
    assert describe(h).error_code == E.cluster_authorization_failed  # fails closed: admin's rule is unreadable
    h.broker.authorizer.super_users = frozenset({"User:admin"})
    assert describe(h).error_code == E.unknown_server_error
    assert create(h, creation(h))[0][0] == E.unknown_server_error
    assert path.read_text() == "{not json"


# -- SCRAM credentials -------------------------------------------------------------------


SHA256, SHA512 = 1, 2


def salted(password: str, salt: bytes, iterations: int, digest: str = "sha256") -> bytes:
    return hashlib.pbkdf2_hmac(digest, password.encode(), salt, iterations)


def upsertion(h, name, password="pw", mechanism=SHA256, iterations=4096, salt=b"0123456789abcdef"):
    digest = "sha512" if mechanism == SHA512 else "sha256"
    return h.req(K.ALTER_USER_SCRAM_CREDENTIALS, 0, "ScramCredentialUpsertion", name=name, mechanism=mechanism,
                 iterations=iterations, salt=salt, salted_password=salted(password, salt, iterations, digest))


def deletion(h, name, mechanism=SHA256):
    return h.req(K.ALTER_USER_SCRAM_CREDENTIALS, 0, "ScramCredentialDeletion", name=name, mechanism=mechanism)


def alter(h, upsertions=(), deletions=(), as_user=None):
    resp = h.call(K.ALTER_USER_SCRAM_CREDENTIALS, 0, "AlterUserScramCredentialsRequest", as_user=as_user,
                  upsertions=tuple(upsertions), deletions=tuple(deletions))
    return {r.user: (r.error_code, r.error_message) for r in resp.results}


def describe_users(h, users, as_user=None):
    names = None if users is None else tuple(
        h.req(K.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, "UserName", name=u) for u in users)
    return h.call(K.DESCRIBE_USER_SCRAM_CREDENTIALS, 0, "DescribeUserScramCredentialsRequest", users=names,
                  as_user=as_user)


def login(broker: Broker, user: str, password: str, mechanism: str = "SCRAM-SHA-256") -> bool:
    """A full client-side SCRAM exchange (RFC 5802) against the broker's user store."""
    import base64
    import hmac

    from logbroker.broker.security import AuthenticationError

    digest = "sha512" if mechanism.endswith("512") else "sha256"
    server = new_mechanism(mechanism, broker.users.credential)
    nonce = "clientnonce"
    first_bare = f"n={user},r={nonce}"
    try:
        server_first = server.step(f"n,,{first_bare}".encode()).decode()
    except AuthenticationError:
        return False  # no credential for this user and mechanism
    attrs = dict(part.split("=", 1) for part in server_first.split(","))
    salted_pw = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.digest(salted_pw, b"Client Key", digest)
    without_proof = f"c=biws,r={attrs['r']}"
    auth = f"{first_bare},{server_first},{without_proof}".encode()
    signature = hmac.digest(hashlib.new(digest, client_key).digest(), auth, digest)
    proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, signature))).decode()
    try:
        server.step(f"{without_proof},p={proof}".encode())
    except AuthenticationError:
        return False
    return server.done


def test_upserted_credentials_log_in_are_described_and_shared_with_the_cli(h, tmp_path):
    assert alter(h, [upsertion(h, "erin", "s3cret"), upsertion(h, "frank", "pw2", SHA512, iterations=8192)]) == {
        "erin": (0, None), "frank": (0, None)}
    assert login(h.broker, "erin", "s3cret") and not login(h.broker, "erin", "wrong")
    assert login(h.broker, "frank", "pw2", "SCRAM-SHA-512")
    assert not login(h.broker, "frank", "pw2", "SCRAM-SHA-256")  # only the mechanism that was set
    resp = describe_users(h, ["frank", "erin"])
    assert resp.error_code == 0
    assert {r.user: [(c.mechanism, c.iterations) for c in r.credential_infos] for r in resp.results} == {
        "frank": [(SHA512, 8192)], "erin": [(SHA256, 4096)]}
    out = CliRunner().invoke(users_cli, ["list", "--data-dir", str(tmp_path / "data")]).output
    assert "erin\tSCRAM-SHA-256" in out and "frank\tSCRAM-SHA-512" in out
    # A restarted broker (a fresh store over the same file) has them.
    assert UserStore(tmp_path / "data").credential("erin", "SCRAM-SHA-256").verify_password("s3cret", "SCRAM-SHA-256")


def test_null_or_empty_describes_every_user_including_cli_ones(h, tmp_path):
    UserStore(tmp_path / "data").add("gina", "pw")
    alter(h, [upsertion(h, "hal")])
    for users in (None, []):
        resp = describe_users(h, users)
        found = {r.user: sorted(c.mechanism for c in r.credential_infos) for r in resp.results}
        assert found == {"gina": [SHA256, SHA512], "hal": [SHA256]}


def test_describe_unknown_and_duplicate_users(h):
    alter(h, [upsertion(h, "ivan")])
    resp = describe_users(h, ["ivan", "nobody", "ivan"])
    by_user = {r.user: (r.error_code, r.error_message) for r in resp.results}
    assert by_user["nobody"] == (E.resource_not_found,
                                 "Attempt to describe a user credential that does not exist: nobody")
    assert by_user["ivan"] == (E.duplicate_resource,
                               "Cannot describe SCRAM credentials for the same user twice in a single request: ivan")


def test_deletion_removes_one_mechanism_then_the_user(h, tmp_path):
    UserStore(tmp_path / "data").add("jo", "pw")  # both mechanisms
    assert alter(h, deletions=[deletion(h, "jo", SHA512)]) == {"jo": (0, None)}
    assert not login(h.broker, "jo", "pw", "SCRAM-SHA-512") and login(h.broker, "jo", "pw")
    assert alter(h, deletions=[deletion(h, "jo", SHA512)]) == {
        "jo": (E.resource_not_found, "Attempt to delete a user credential that does not exist")}
    assert alter(h, deletions=[deletion(h, "jo", SHA256)]) == {"jo": (0, None)}
    assert "jo" not in UserStore(tmp_path / "data").users()
    assert describe_users(h, ["jo"]).results[0].error_code == E.resource_not_found


def test_invalid_alterations_are_refused_per_user(h, tmp_path):
    results = alter(h, [
        upsertion(h, "few", iterations=4095),
        upsertion(h, "many", iterations=16385),
        upsertion(h, "mech", mechanism=0),
        upsertion(h, "", iterations=4096),
        upsertion(h, "twice"), upsertion(h, "twice", mechanism=SHA512),
        upsertion(h, "both"),
        upsertion(h, "edge", iterations=16384),
    ], deletions=[deletion(h, "both"), deletion(h, "nobody"), deletion(h, "badmech", mechanism=3)])
    assert results == {
        "few": (E.unacceptable_credential, "Too few iterations"),
        "many": (E.unacceptable_credential, "Too many iterations"),
        "mech": (E.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"),
        "": (E.unacceptable_credential, "Username must not be empty"),
        "twice": (E.duplicate_resource, "A user credential cannot be altered twice in the same request"),
        "both": (E.resource_not_found, "Attempt to delete a user credential that does not exist"),
        "nobody": (E.resource_not_found, "Attempt to delete a user credential that does not exist"),
        "badmech": (E.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"),
        "edge": (0, None),
    }
    assert UserStore(tmp_path / "data").users() == {"edge": ("SCRAM-SHA-256",)}


def test_a_deletion_and_an_upsertion_of_one_user_is_a_duplicate(h, tmp_path):
    alter(h, [upsertion(h, "kim")])
    assert alter(h, [upsertion(h, "kim", "new")], [deletion(h, "kim")]) == {
        "kim": (E.duplicate_resource, "A user credential cannot be altered twice in the same request")}
    assert login(h.broker, "kim", "pw")  # unchanged


def test_scram_apis_need_the_cluster_permissions(h, tmp_path):
    assert alter(h, [upsertion(h, "lee")], as_user="bob") == {"lee": (E.cluster_authorization_failed, None)}
    assert UserStore(tmp_path / "data").users() == {}
    resp = describe_users(h, ["lee"], as_user="bob")
    assert resp.error_code == E.cluster_authorization_failed
    assert [(r.user, r.error_code) for r in resp.results] == [("lee", E.cluster_authorization_failed)]


def test_scram_apis_work_without_an_authorizer(tmp_path):
    broker = _broker(tmp_path, authorizer=False)
    h = AdminHarness(broker)
    try:
        assert alter(h, [upsertion(h, "max")]) == {"max": (0, None)}
        assert login(broker, "max", "pw")
    finally:
        broker.close()
