"""Whose fault: bytes the peer sent wrong raise ProtocolError and close that
connection only; the broker's own failure is logged and answered
UNKNOWN_SERVER_ERROR where the response has a top-level error code (elsewhere
InternalError closes the connection). The dispatch table is built once and
read-only."""

from __future__ import annotations

import logging
import struct

import pytest
import trio

from logbroker.broker import BrokerConfig
from logbroker.broker.handlers import HANDLERS, SERVED_VERSIONS, is_served, unsupported_version_response
from logbroker.broker.session import Session
from logbroker.errors import InternalError, ProtocolError
from logbroker.protocol import ApiKey, ErrorCode, SUPPORTED_VERSIONS, decode_response, encode_request
from logbroker.server import serve

from server_support import req


def test_the_dispatch_table_is_read_only_and_complete():
    with pytest.raises(TypeError):
        HANDLERS[ApiKey.PRODUCE] = lambda broker, ctx, request: None  # type: ignore[index]
    with pytest.raises(TypeError):
        SERVED_VERSIONS[ApiKey.PRODUCE] = (0, 0)  # type: ignore[index]
    assert ApiKey.API_VERSIONS in HANDLERS
    assert set(SERVED_VERSIONS) == {k for k in HANDLERS if k in SUPPORTED_VERSIONS}
    # Group configs ride on the topic config handlers: the wrapped ones are in the table.
    assert HANDLERS[ApiKey.DESCRIBE_CONFIGS].__name__ == "handle_describe_configs_with_groups"
    assert HANDLERS[ApiKey.INCREMENTAL_ALTER_CONFIGS].__name__ == "handle_incremental_alter_configs_with_groups"
    assert not is_served(ApiKey.PRODUCE, 99) and not is_served(9999, 0)


def test_unsupported_versions_are_answered_from_the_schema_table_where_they_can_be():
    low, _ = SERVED_VERSIONS[ApiKey.HEARTBEAT]
    parts = unsupported_version_response(ApiKey.HEARTBEAT, low, 5)  # a version kio has
    correlation, body = decode_response(ApiKey.HEARTBEAT, low, b"".join(bytes(p) for p in parts)[4:])
    assert correlation == 5 and body.error_code == ErrorCode.unsupported_version
    assert unsupported_version_response(ApiKey.METADATA, 12, 5) is None  # no top-level error code
    assert unsupported_version_response(ApiKey.HEARTBEAT, 999, 5) is None  # no schema at all
    assert unsupported_version_response(9999, 0, 5) is None  # not served


async def test_a_malformed_frame_is_the_peers_fault(make_env):
    env = make_env()
    frame = env.frame(ApiKey.HEARTBEAT, 4, "HeartbeatRequest", group_id="g", generation_id=1, member_id="m")
    with pytest.raises(ProtocolError, match="malformed"):
        await env.dispatcher.handle_frame(frame[:-6], Session())
    with pytest.raises(ProtocolError):
        await env.dispatcher.handle_frame(b"\x00\x01", Session())


async def test_a_request_before_sasl_authentication_is_the_peers_fault(make_env):
    env = make_env(security_protocol="SASL_PLAINTEXT")
    frame = env.frame(ApiKey.HEARTBEAT, 4, "HeartbeatRequest", group_id="g", generation_id=1, member_id="m")
    with pytest.raises(ProtocolError, match="before SASL authentication"):
        await env.dispatcher.handle_frame(frame, Session())


async def test_a_handler_failure_is_logged_and_answered_unknown_server_error(make_env, caplog):
    env = make_env()

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the coordinator")

    env.broker.groups.heartbeat = broken
    session = Session()
    with caplog.at_level(logging.ERROR, logger="logbroker.server"):
        answer = await env.ask(session, ApiKey.HEARTBEAT, 4, "HeartbeatRequest", group_id="g", generation_id=1,
                               member_id="m")
    assert answer.error_code == ErrorCode.unknown_server_error
    assert "a bug in the coordinator" in caplog.text and "HEARTBEAT" in caplog.text
    # The connection goes on: the next request is answered normally.
    answer = await env.ask(session, ApiKey.FIND_COORDINATOR, 3, "FindCoordinatorRequest", key="g", key_type=0)
    assert answer.error_code == ErrorCode.none


async def test_a_handler_failure_without_an_error_field_closes_the_connection(make_env):
    env = make_env()

    def broken():
        raise RuntimeError("a bug")

    env.broker.topics = broken
    frame = env.frame(ApiKey.METADATA, 12, "MetadataRequest", topics=None, allow_auto_topic_creation=False)
    with pytest.raises(InternalError) as raised:
        await env.dispatcher.handle_frame(frame, Session())
    assert not isinstance(raised.value, ProtocolError)
    assert isinstance(raised.value.__cause__, RuntimeError)


# -- over sockets: one connection's trouble is that connection's only ----------------


async def _request(stream, api_key, version, correlation, class_name, **fields):
    body = req(api_key, version, class_name, **fields)
    await stream.send_all(encode_request(api_key, version, correlation, "t", body))
    return await _answer(stream, api_key, version)


async def _answer(stream, api_key, version):
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">i", data[:4])[0]:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return decode_response(api_key, version, data[4:])[1]


async def test_over_sockets_a_malformed_frame_closes_only_its_connection(tmp_path, monkeypatch):
    config = BrokerConfig(data_dir=str(tmp_path / "data"), port=0, host="127.0.0.1")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, config)
        good = await trio.open_tcp_stream("127.0.0.1", server.port)
        bad = await trio.open_tcp_stream("127.0.0.1", server.port)
        await bad.send_all(struct.pack(">i", 3) + b"\x00\x03\x00")  # shorter than a request header
        with trio.fail_after(5):
            assert await bad.receive_some(10) == b""  # closed, unanswered
        monkeypatch.setattr(server.broker.groups, "heartbeat", lambda *a, **k: 1 / 0)
        answer = await _request(good, ApiKey.HEARTBEAT, 4, 1, "HeartbeatRequest", group_id="g", generation_id=1,
                                member_id="m")
        assert answer.error_code == ErrorCode.unknown_server_error
        answer = await _request(good, ApiKey.API_VERSIONS, 3, 2, "ApiVersionsRequest",
                                client_software_name="t", client_software_version="1")
        assert answer.error_code == ErrorCode.none
        await good.aclose()
        await bad.aclose()
        server.shutdown()
