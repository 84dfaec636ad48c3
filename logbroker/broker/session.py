"""Per-connection state the broker needs: who is asking and how far SASL got."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ANONYMOUS = "User:ANONYMOUS"


@dataclass(slots=True)
class Session:
    """One client connection. The server owns it; SASL handlers update it."""

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
