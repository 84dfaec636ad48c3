"""SASL exchanges against a client implementation written from the RFCs."""

import base64
import hashlib
import hmac
import os

import pytest

from logbroker.broker.security import Acl, AuthenticationError, Authorizer, UserStore, new_mechanism


def _client_scram(mech, user, password, server):
    digest = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mech]
    nonce = base64.b64encode(os.urandom(12)).decode()
    first_bare = f"n={user},r={nonce}"
    server_first = server.step(("n,," + first_bare).encode()).decode()
    attrs = dict(p.split("=", 1) for p in server_first.split(","))
    salted = hashlib.pbkdf2_hmac(digest, password.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
    client_key = hmac.digest(salted, b"Client Key", digest)
    stored = hashlib.new(digest, client_key).digest()
    final_wo_proof = f"c=biws,r={attrs['r']}"
    auth = f"{first_bare},{server_first},{final_wo_proof}".encode()
    proof = bytes(a ^ b for a, b in zip(client_key, hmac.digest(stored, auth, digest)))
    server_final = server.step(f"{final_wo_proof},p={base64.b64encode(proof).decode()}".encode())
    server_key = hmac.digest(salted, b"Server Key", digest)
    assert server_final == b"v=" + base64.b64encode(hmac.digest(server_key, auth, digest))


@pytest.fixture
def users(tmp_path):
    store = UserStore(tmp_path)
    store.add("alice", "s3cret")
    return store


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_right_password(users, mech):
    server = new_mechanism(mech, users.credential)
    _client_scram(mech, "alice", "s3cret", server)
    assert server.done and server.principal == "alice"


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_wrong_password_or_user(users, mech):
    with pytest.raises(AuthenticationError):
        _client_scram(mech, "alice", "nope", new_mechanism(mech, users.credential))
    with pytest.raises(AuthenticationError):
        _client_scram(mech, "mallory", "s3cret", new_mechanism(mech, users.credential))


def test_plain(users):
    ok = new_mechanism("PLAIN", users.credential)
    ok.step(b"\x00alice\x00s3cret")
    assert ok.principal == "alice"
    with pytest.raises(AuthenticationError):
        new_mechanism("PLAIN", users.credential).step(b"\x00alice\x00wrong")
    with pytest.raises(AuthenticationError):
        new_mechanism("PLAIN", users.credential).step(b"garbage")


def test_passwords_are_not_stored(users):
    text = users.path.read_text()
    assert "s3cret" not in text and "alice" in text
    assert oct(users.path.stat().st_mode & 0o777) == "0o600"


def test_users_file_reloads_and_deletes(tmp_path, users):
    other = UserStore(tmp_path)
    assert other.credential("alice", "SCRAM-SHA-256") is not None
    users.add("bob", "pw")
    assert set(other.users()) == {"alice", "bob"}
    assert users.delete("bob") and not users.delete("bob")
    assert other.credential("bob", "SCRAM-SHA-256") is None


def test_acl_rules(tmp_path):
    auth = Authorizer(tmp_path, super_users=("User:admin",))
    auth.add(Acl("User:alice", "topic", "orders", "read"))
    auth.add(Acl("User:alice", "topic", "pay-", "write", pattern="prefixed"))
    auth.add(Acl("User:*", "topic", "public", "all"))
    auth.add(Acl("User:alice", "topic", "public", "write", permission="deny"))
    assert auth.allowed("User:alice", "read", "topic", "orders")
    assert auth.allowed("User:alice", "describe", "topic", "orders"), "read implies describe"
    assert not auth.allowed("User:alice", "write", "topic", "orders")
    assert auth.allowed("User:alice", "write", "topic", "pay-eu")
    assert not auth.allowed("User:alice", "write", "topic", "payroll")
    assert auth.allowed("User:bob", "write", "topic", "public")
    assert not auth.allowed("User:alice", "write", "topic", "public"), "deny wins"
    assert not auth.allowed("User:bob", "read", "topic", "orders")
    assert auth.allowed("User:admin", "delete", "topic", "anything")
    assert Authorizer(tmp_path).acls() == auth.acls()


def test_bad_acls_are_refused():
    with pytest.raises(Exception, match="operation"):
        Acl("User:a", "topic", "t", "fly")
    with pytest.raises(Exception, match="principal"):
        Acl("alice", "topic", "t", "read")
