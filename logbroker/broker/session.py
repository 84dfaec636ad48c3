"""Who is asking: the connection's state (:class:`Session`) and the immutable
context of one request (:class:`RequestContext`).

Context is passed, not parked (convention 13): the server makes a
:class:`RequestContext` for every request it dispatches and hands it to the
handler, and every authorization check takes it
(``broker.allowed(ctx, operation, resource_type, name)``). Nothing about the
request being handled is stored on the shared :class:`~logbroker.broker.Broker`,
so a check that runs later (a long-poll Fetch attempted again, a JoinGroup
completed by another member) still sees the principal of the request that asked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ANONYMOUS = "User:ANONYMOUS"


@dataclass(slots=True)
class Session:
    """One client connection. The server owns it; SASL handlers update it
    (through ``ctx.session``): the principal changes only when a login completes."""

    peer: str = ""
    principal: str = ANONYMOUS
    authenticated: bool = False
    mechanism: str | None = None
    exchange: Any = None  # the SASL mechanism object while authenticating
    close_after_reply: bool = False  # a failed authentication ends the connection
    # Why authentication failed, for the broker's log: names the user, never the password.
    failed_login: str | None = None

    def __repr__(self) -> str:
        return f"Session(peer={self.peer!r}, principal={self.principal!r}, authenticated={self.authenticated})"


@dataclass(frozen=True, slots=True)
class RequestContext:
    """One request's who and what, made by the server before dispatch and
    never changed: ``principal`` is the connection's principal when the request
    arrived (``User:ANONYMOUS`` before or without SASL), ``peer`` Kafka's
    ``/host`` of the client, ``listener`` the listener's security protocol,
    the request header's ``api_key``, ``api_version``, ``correlation_id`` and
    ``client_id``, and ``session`` the connection's :class:`Session` (for the
    SASL handlers, which advance the login)."""

    principal: str = ANONYMOUS
    peer: str = ""
    listener: str = "PLAINTEXT"
    api_key: int = -1
    api_version: int = -1
    correlation_id: int = -1
    client_id: str | None = None
    session: Session = field(default_factory=Session, compare=False)

    @classmethod
    def for_request(
        cls, request: Any, session: Session | None = None, *, listener: str = "PLAINTEXT",
    ) -> RequestContext:
        """The context of decoded ``request`` (a :class:`logbroker.protocol.Request`)
        arriving on a connection in ``session`` (a fresh anonymous one if None):
        the principal and peer are the session's as of now."""
        if session is None:
            session = Session()
        return cls(
            principal=session.principal,
            peer=session.peer,
            listener=listener,
            api_key=int(request.api_key),
            api_version=int(request.api_version),
            correlation_id=int(request.correlation_id),
            client_id=request.client_id,
            session=session,
        )

    def __repr__(self) -> str:
        return (f"RequestContext(principal={self.principal!r}, peer={self.peer!r}, listener={self.listener!r}, "
                f"api_key={self.api_key}, api_version={self.api_version}, correlation_id={self.correlation_id}, "
                f"client_id={self.client_id!r})")
