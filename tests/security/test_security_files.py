"""A broken ``acls.json`` or ``users.json`` fails once and clearly: one log line
naming the file and the problem per change of the file (never a traceback per
request), the broker keeps failing closed, and ``logbroker acls`` / ``logbroker
users`` print a one-line error and exit 1 without touching the file."""

from __future__ import annotations

import json
import logging
import time

import pytest
from click.testing import CliRunner
from kafka import KafkaProducer
from kafka.errors import KafkaError

from logbroker.broker.security import Acl, Authorizer, UserStore
from logbroker.broker.security.acls import parse_acls
from logbroker.broker.security.users import parse_users
from logbroker.cli.security import acls, users
from logbroker.errors import InvalidConfigError

GOOD_ACL = {"principal": "User:alice", "resource_type": "topic", "name": "t", "operation": "read"}


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "not valid JSON"),
    ("[]", "expected an object"),
    ('{"acls": {}}', "'acls' must be a list"),
    ('{"version": 2, "acls": []}', "version 2 is not supported"),
    (json.dumps({"acls": [GOOD_ACL, dict(GOOD_ACL, colour="red")]}), "ACL #2 has an unknown field 'colour'"),
    (json.dumps({"acls": [{"principal": "User:a", "resource_type": "topic", "name": "t"}]}),
     "ACL #1 lacks the field 'operation'"),
    (json.dumps({"acls": [dict(GOOD_ACL, operation="fly")]}), "ACL #1: operation must be one of"),
    (json.dumps({"acls": [dict(GOOD_ACL, name=7)]}), "ACL #1: name must be a string, not a number"),
    (json.dumps({"acls": ["User:alice"]}), "ACL #1 must be an object, not a string"),
])
def test_acls_file_problems_are_named_in_one_line(text, message):
    with pytest.raises(InvalidConfigError, match=message) as caught:
        parse_acls(text)
    assert "\n" not in str(caught.value)
    assert not isinstance(caught.value.__cause__, TypeError)


def _credential(**changes) -> dict:
    good = {"salt": "c2FsdA==", "iterations": 4096, "stored_key": "A" * 43 + "=", "server_key": "A" * 43 + "="}
    return {k: v for k, v in {**good, **changes}.items() if v is not None}


@pytest.mark.parametrize(("users_field", "message"), [
    ({"bob": {"SCRAM-SHA-1": _credential()}}, "unknown mechanism 'SCRAM-SHA-1'"),
    ({"bob": {"SCRAM-SHA-256": _credential(pepper="x")}}, "unknown field 'pepper'"),
    ({"bob": {"SCRAM-SHA-256": _credential(server_key=None)}}, "lacks the field 'server_key'"),
    ({"bob": {"SCRAM-SHA-256": _credential(stored_key="%%%")}}, "stored_key is not a base64 string"),
    ({"bob": {"SCRAM-SHA-512": _credential()}}, "stored_key has 32 bytes, not 64"),
    ({"bob": {"SCRAM-SHA-256": _credential(iterations="4096")}}, "iterations must be a positive integer"),
    ({"bob": []}, "user 'bob' must map mechanisms to credentials"),
    ([], "'users' must be an object, not a list"),
])
def test_users_file_problems_are_named_in_one_line(users_field, message):
    with pytest.raises(InvalidConfigError, match=message) as caught:
        parse_users(json.dumps({"version": 1, "users": users_field}))
    assert "\n" not in str(caught.value)
    assert parse_users(json.dumps({"users": {"bob": {"SCRAM-SHA-256": _credential()}}}))["bob"]


def _break(path, text: str) -> None:
    time.sleep(0.01)  # a different mtime even on coarse clocks
    path.write_text(text)


def test_a_broken_acls_file_fails_closed_and_is_logged_once_per_change(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="logbroker.security")
    authorizer = Authorizer(tmp_path, super_users=("User:admin",))
    authorizer.add(Acl("User:alice", "topic", "t", "read"))
    assert authorizer.allowed("User:alice", "read", "topic", "t")
    _break(authorizer.path, json.dumps({"acls": [dict(GOOD_ACL, colour="red")]}))
    for _ in range(50):  # requests
        assert not authorizer.allowed("User:alice", "read", "topic", "t")
        assert not authorizer.allowed_on_any("User:alice", "read", "topic")
    assert authorizer.allowed("User:admin", "read", "topic", "t"), "super users still pass"
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "unknown field 'colour'" in errors[0].getMessage()
    assert str(authorizer.path) in errors[0].getMessage() and errors[0].exc_info is None
    _break(authorizer.path, "{")
    assert not authorizer.allowed("User:alice", "read", "topic", "t")
    assert not authorizer.allowed("User:alice", "read", "topic", "t")
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 2
    _break(authorizer.path, json.dumps({"version": 1, "acls": [GOOD_ACL]}))
    assert authorizer.allowed("User:alice", "read", "topic", "t")
    assert "usable again" in caplog.records[-1].getMessage()


def test_a_broken_users_file_fails_closed_and_edits_refuse_to_overwrite_it(tmp_path, caplog):
    store = UserStore(tmp_path)
    store.add("alice", "s3cret")
    _break(store.path, '{"users": {"alice": {"SCRAM-SHA-256": {"salt": 1}}}}')
    broken = store.path.read_text()
    assert store.credential("alice", "SCRAM-SHA-256") is None
    assert store.credential("alice", "SCRAM-SHA-256") is None
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    with pytest.raises(InvalidConfigError, match="users.json"):
        store.add("bob", "pw")
    with pytest.raises(InvalidConfigError):
        store.delete("alice")
    assert store.path.read_text() == broken, "an edit must not replace a file it could not read"


@pytest.mark.parametrize("argv", [
    ["acls", "list"],
    ["acls", "remove", "--principal", "User:a", "--topic", "t", "--operation", "read"],
    ["acls", "add", "--principal", "User:a", "--topic", "t", "--operation", "read"],
    ["users", "list"],
    ["users", "delete", "alice"],
    ["users", "add", "bob", "--password", "pw"],
])
def test_cli_prints_one_line_and_exits_1_on_a_broken_file(tmp_path, argv):
    (tmp_path / "acls.json").write_text(json.dumps({"acls": [dict(GOOD_ACL, colour="red")]}))
    (tmp_path / "users.json").write_text('{"users": {"alice": "s3cret"}}')
    group = {"acls": acls, "users": users}[argv[0]]
    result = CliRunner().invoke(group, [*argv[1:], "--data-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, TypeError)
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: cannot use ") and argv[0] + ".json" in line
    assert ("unknown field 'colour'" if argv[0] == "acls" else "user 'alice' must map") in line


def _sasl_broker(broker_factory, tmp_path):
    data = tmp_path / "data"
    store = UserStore(data)
    for user in ("alice", "admin"):
        store.add(user, f"{user}-pw")
    Authorizer(data).add(Acl("User:alice", "topic", "t", "all"))
    config = tmp_path / "broker.toml"
    config.write_text('security_protocol = "SASL_PLAINTEXT"\nauthorizer_enable = true\nsuper_users = "User:admin"\n')
    return data, config


def _send(bootstrap: str, user: str) -> None:
    extra = {"bootstrap_timeout_ms": 3000} if "bootstrap_timeout_ms" in KafkaProducer.DEFAULT_CONFIG else {}
    producer = KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SASL_PLAINTEXT",
                             sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=user,
                             sasl_plain_password=f"{user}-pw", max_block_ms=3000, **extra)
    try:
        producer.send("t", b"x").get(timeout=5)
    finally:
        producer.close(0)


def test_broker_logs_a_broken_acls_file_once_and_denies(broker_factory, tmp_path):
    data, config = _sasl_broker(broker_factory, tmp_path)
    (data / "acls.json").write_text(json.dumps({"acls": [dict(GOOD_ACL, colour="red")]}))
    broker = broker_factory("--config", str(config), data_dir=data)
    assert broker.log.count("cannot use") == 1, "logged at start-up, before any request"
    for _ in range(3):
        with pytest.raises(KafkaError):
            _send(broker.bootstrap, "alice")
    _send(broker.bootstrap, "admin")  # super users still pass
    assert broker.log.count("cannot use") == 1
    assert "acls.json: ACL #1 has an unknown field 'colour'" in broker.log
    assert "Traceback" not in broker.log and "internal error" not in broker.log
    _break(data / "acls.json", json.dumps({"acls": [GOOD_ACL | {"operation": "all"}]}))
    _send(broker.bootstrap, "alice")
    assert "acls.json is usable again" in broker.log


def test_broker_logs_a_broken_users_file_once_and_refuses_logins(broker_factory, tmp_path):
    data, config = _sasl_broker(broker_factory, tmp_path)
    (data / "users.json").write_text('{"users": {"alice": {"SCRAM-SHA-256": {"salt": "??"}}}}')
    broker = broker_factory("--config", str(config), data_dir=data)
    for _ in range(3):
        with pytest.raises(KafkaError):
            _send(broker.bootstrap, "alice")
    assert broker.log.count("cannot use") == 1
    assert "users.json: user 'alice', SCRAM-SHA-256: the credential lacks the field 'iterations'" in broker.log
    assert "every login fails until it is fixed" in broker.log
    assert "Traceback" not in broker.log
