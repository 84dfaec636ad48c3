"""Who asks travels with the request (convention 13): the server makes a
RequestContext per request, and every ACL check reads its principal, never
state parked on the shared broker."""

from __future__ import annotations

import dataclasses

import pytest
import trio

from logbroker.broker.security import Acl
from logbroker.broker.session import ANONYMOUS, RequestContext, Session
from logbroker.protocol import ApiKey, ErrorCode, decode_request, encode_request
from logbroker.records import BatchBuilder

from server_support import req


def test_the_context_is_immutable_and_the_broker_holds_no_request_state(make_env):
    env = make_env()
    ctx = RequestContext(principal="User:alice")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.principal = "User:mallory"  # type: ignore[misc]
    assert not hasattr(env.broker, "request_session") and not hasattr(env.broker, "request_peer")


def test_the_context_snapshots_the_request_header_and_the_session():
    body = req(ApiKey.METADATA, 12, "MetadataRequest", topics=None, allow_auto_topic_creation=False)
    request = decode_request(encode_request(ApiKey.METADATA, 12, 42, "app-1", body)[4:])
    session = Session(peer="/10.0.0.7", principal="User:alice", authenticated=True)
    ctx = RequestContext.for_request(request, session, listener="SASL_SSL")
    assert (ctx.principal, ctx.peer, ctx.listener) == ("User:alice", "/10.0.0.7", "SASL_SSL")
    assert (ctx.api_key, ctx.api_version, ctx.correlation_id, ctx.client_id) == (ApiKey.METADATA, 12, 42, "app-1")
    assert ctx.session is session
    session.principal = "User:bob"  # a later login does not rewrite a request already made
    assert ctx.principal == "User:alice"
    assert RequestContext.for_request(request).principal == ANONYMOUS


async def _metadata_topics(env, session):
    answer = await env.ask(session, ApiKey.METADATA, 12, "MetadataRequest", topics=None,
                           allow_auto_topic_creation=False)
    return sorted(t.name for t in answer.topics)


async def test_a_sasl_login_gives_the_following_requests_its_principal(make_env):
    env = make_env(security_protocol="SASL_PLAINTEXT", authorizer_enable=True)
    env.broker.users.add("alice", "s3cret")
    env.broker.create_topic("alices", 1)
    env.broker.create_topic("secret", 1)
    env.broker.authorizer.add(Acl("User:alice", "topic", "alices", "describe"))
    session = Session(peer="/127.0.0.1")
    answer = await env.ask(session, ApiKey.SASL_HANDSHAKE, 1, "SaslHandshakeRequest", mechanism="PLAIN")
    assert answer.error_code == ErrorCode.none
    answer = await env.ask(session, ApiKey.SASL_AUTHENTICATE, 2, "SaslAuthenticateRequest",
                           auth_bytes=b"\0alice\0s3cret")
    assert answer.error_code == ErrorCode.none
    assert session.authenticated and session.principal == "User:alice"
    assert await _metadata_topics(env, session) == ["alices"]


async def test_every_acl_check_uses_the_principal_of_its_own_request(make_env):
    """Two connections of two users, their requests interleaved (one a long-poll
    Fetch that resumes after the other's requests): every check the authorizer
    sees is made for the principal of the request that caused it."""
    env = make_env(authorizer_enable=True)
    broker = env.broker
    broker.create_topic("a", 1)
    broker.create_topic("b", 1)
    authorizer = broker.authorizer
    for user, topic in (("alice", "a"), ("bob", "b")):
        authorizer.add(Acl(f"User:{user}", "topic", topic, "read"))
        authorizer.add(Acl(f"User:{user}", "topic", topic, "write"))
    checks: list[tuple[str, str, str]] = []
    allowed = authorizer.allowed

    def spy(principal, operation, resource_type, name):
        checks.append((principal, operation, name))
        return allowed(principal, operation, resource_type, name)

    authorizer.allowed = spy  # type: ignore[method-assign]
    alice = Session(peer="/10.0.0.1", principal="User:alice", authenticated=True)
    bob = Session(peer="/10.0.0.2", principal="User:bob", authenticated=True)

    def fetch_fields(topic):
        part = req(ApiKey.FETCH, 12, "FetchPartition", partition=0, fetch_offset=0, partition_max_bytes=1 << 20)
        t = req(ApiKey.FETCH, 12, "FetchTopic", topic=topic, partitions=(part,))
        return dict(replica_id=-1, max_wait=5000, min_bytes=1, max_bytes=1 << 20, isolation_level=0,
                    topics=(t,))

    def produce_fields(topic):
        builder = BatchBuilder()
        builder.append(b"v", timestamp_ms=1)
        part = req(ApiKey.PRODUCE, 9, "PartitionProduceData", index=0, records=builder.build())
        data = req(ApiKey.PRODUCE, 9, "TopicProduceData", name=topic, partition_data=(part,))
        return dict(acks=-1, timeout=1000, topic_data=(data,))

    results = {}

    async def alice_fetches():
        results["alice"] = await env.ask(alice, ApiKey.FETCH, 12, "FetchRequest", **fetch_fields("a"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(alice_fetches)
        await trio.sleep(0.05)  # alice's fetch waits for data
        assert "alice" not in results
        for topic in ("a", "b"):
            answer = await env.ask(bob, ApiKey.PRODUCE, 9, "ProduceRequest", **produce_fields(topic))
            code = answer.responses[0].partition_responses[0].error_code
            assert code == (ErrorCode.topic_authorization_failed if topic == "a" else ErrorCode.none)
        assert await _metadata_topics(env, bob) == ["b"]
        answer = await env.ask(alice, ApiKey.PRODUCE, 9, "ProduceRequest", **produce_fields("a"))
        env.waiters.notify([("a", 0)])  # the server wakes fetches after a produce
    fetched = results["alice"].responses[0].partitions[0]
    assert fetched.error_code == ErrorCode.none and fetched.records
    by_principal = {p for p, _, _ in checks}
    assert by_principal == {"User:alice", "User:bob"}
    assert all(name == "a" for p, _, name in checks if p == "User:alice")
    # Bob was asked about "a" (denied) and "b"; never under alice's name.
    assert {name for p, _, name in checks if p == "User:bob"} == {"a", "b"}
