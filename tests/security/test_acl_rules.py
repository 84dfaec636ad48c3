"""The authorizer's rules (implied operations, WRITE on any topic) and ``logbroker acls``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from logbroker.broker.security import Acl, Authorizer
from logbroker.broker.security.acls import OPERATIONS, SUPPORTED_OPERATIONS, authorized_operations
from logbroker.cli.security import _OPERATIONS, acls


@pytest.fixture
def authorizer(tmp_path):
    return Authorizer(tmp_path, super_users=("User:admin",))


def test_implied_operations_follow_kafka(authorizer):
    authorizer.add(Acl("User:a", "topic", "t", "alter_configs"))
    authorizer.add(Acl("User:a", "group", "g", "read"))
    assert authorizer.allowed("User:a", "describe_configs", "topic", "t")
    assert not authorizer.allowed("User:a", "describe", "topic", "t")  # ALTER_CONFIGS is not ALTER
    assert authorizer.allowed("User:a", "describe", "group", "g")
    assert not authorizer.allowed("User:a", "delete", "group", "g")
    # a DENY of READ does not deny the DESCRIBE that an ALLOW of READ would imply
    authorizer.add(Acl("User:a", "group", "g", "read", "deny"))
    authorizer.add(Acl("User:a", "group", "g", "describe"))
    assert not authorizer.allowed("User:a", "read", "group", "g")
    assert authorizer.allowed("User:a", "describe", "group", "g")


def test_allowed_on_any_is_kafkas_authorize_by_resource_type(authorizer):
    allowed = lambda: authorizer.allowed_on_any("User:a", "write", "topic")  # noqa: E731
    assert not allowed()
    assert authorizer.allowed_on_any("User:admin", "write", "topic")
    authorizer.add(Acl("User:*", "topic", "logs", "read"))
    assert not allowed()
    authorizer.add(Acl("User:a", "topic", "pay", "write", pattern="prefixed"))
    assert allowed()
    authorizer.add(Acl("User:a", "topic", "pay", "write", "deny", "literal"))  # another resource
    assert allowed()
    authorizer.add(Acl("User:a", "topic", "pa", "all", "deny", "prefixed"))  # covers every pay* topic
    assert not allowed()
    authorizer.add(Acl("User:*", "topic", "audit", "all"))
    assert allowed()
    authorizer.add(Acl("User:a", "topic", "*", "write", "deny"))
    assert not allowed()


def test_authorized_operations_bit_field():
    assert authorized_operations(lambda op: True, "group") == (1 << 3) | (1 << 8) | (1 << 6) | (1 << 10) | (1 << 11)
    assert authorized_operations(lambda op: op == "read", "topic") == 1 << 3
    assert authorized_operations(lambda op: False, "cluster") == 0


def test_cli_knows_every_operation_and_kafkas_spellings(tmp_path):
    assert _OPERATIONS == OPERATIONS
    runner = CliRunner()
    data = str(tmp_path)
    result = runner.invoke(acls, ["add", "--principal", "User:a", "--cluster", "--operation", "IdempotentWrite",
                                  "--operation", "describe-configs", "--data-dir", data])
    assert result.exit_code == 0, result.output
    result = runner.invoke(acls, ["add", "--principal", "User:a", "--group", "g", "--operation", "DESCRIBE_CONFIGS",
                                  "--data-dir", data])
    assert result.exit_code == 0, result.output
    assert {(a.resource_type, a.operation) for a in Authorizer(data).acls()} == {
        ("cluster", "idempotent_write"), ("cluster", "describe_configs"), ("group", "describe_configs")}
    result = runner.invoke(acls, ["add", "--principal", "User:a", "--topic", "t", "--operation", "fly",
                                  "--data-dir", data])
    assert result.exit_code != 0 and "not one of" in result.output
    result = runner.invoke(acls, ["add", "--principal", "User:a", "--topic", "t", "--operation", "idempotent_write",
                                  "--data-dir", data])
    assert result.exit_code != 0 and "cannot grant idempotent_write" in result.output
    assert set(SUPPORTED_OPERATIONS) == {"topic", "group", "cluster", "transactional_id"}
    result = runner.invoke(acls, ["add", "--principal", "User:a", "--transactional-id", "tx", "--operation", "write",
                                  "--data-dir", data])
    assert result.exit_code == 0, result.output
    assert ("transactional_id", "write") in {(a.resource_type, a.operation) for a in Authorizer(data).acls()}
