"""SaslHandshake (v1) and SaslAuthenticate: PLAIN and SCRAM-SHA-256/512."""

from __future__ import annotations

from typing import Any

from logbroker.broker.core import Broker
from logbroker.protocol import Request
from logbroker.broker.session import RequestContext
from logbroker.broker.handlers._build import build
from logbroker.broker.security import AuthenticationError, new_mechanism
from logbroker.protocol import ErrorCode


def handle_sasl_handshake(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    session = ctx.session
    mechanisms = broker.config.sasl_mechanisms
    mechanism = request.body.mechanism
    if session.authenticated or session.exchange is not None:
        return build(request.response_class, error_code=ErrorCode.illegal_sasl_state, mechanisms=mechanisms)
    if mechanism not in mechanisms:
        return build(request.response_class, error_code=ErrorCode.unsupported_sasl_mechanism, mechanisms=mechanisms)
    session.mechanism = mechanism
    session.exchange = new_mechanism(mechanism, broker.users.credential)
    return build(request.response_class, error_code=ErrorCode.none, mechanisms=mechanisms)


def handle_sasl_authenticate(broker: Broker, ctx: RequestContext, request: Request) -> Any:
    session = ctx.session
    exchange = session.exchange
    if exchange is None or session.authenticated:
        session.close_after_reply = True
        session.failed_login = "SaslAuthenticate without a SaslHandshake"
        return build(request.response_class, error_code=ErrorCode.illegal_sasl_state,
                     error_message="SaslAuthenticate without a SaslHandshake", auth_bytes=b"")
    try:
        reply = exchange.step(bytes(request.body.auth_bytes))
    except AuthenticationError as exc:
        session.exchange = None
        session.close_after_reply = True
        user = "an unparsed user name" if exchange.user is None else f"user {_loggable(exchange.user)}"
        session.failed_login = f"{session.mechanism} login of {user} failed: {exc}"
        return build(request.response_class, error_code=ErrorCode.sasl_authentication_failed,
                     error_message=str(exc), auth_bytes=b"")
    if exchange.done:
        session.authenticated = True
        session.principal = f"User:{exchange.principal}"
        session.exchange = None
    return build(request.response_class, error_code=ErrorCode.none, auth_bytes=reply, session_lifetime=0)


def _loggable(user: str) -> str:
    """The client's user name quoted for one log line: control characters
    escaped, at most 64 characters."""
    return repr(user[:64]) + ("..." if len(user) > 64 else "")
