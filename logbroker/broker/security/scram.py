"""SASL mechanisms on the broker side, sans-I/O: SCRAM-SHA-256/512 (RFC 5802,
RFC 7677) and PLAIN (RFC 4616) checked against salted SCRAM credentials, so
no password is ever stored.

A mechanism object takes each client message (``step(data) -> bytes``) and
ends with ``.done`` and ``.principal`` set, or raises AuthenticationError;
``.user`` is the user name the client gave, once parsed (None before).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from logbroker.errors import LogbrokerError

SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
DEFAULT_ITERATIONS = 4096


class AuthenticationError(LogbrokerError):
    """Wrong user, password or protocol step; the connection is closed after the reply."""


@dataclass(frozen=True, slots=True)
class ScramCredential:
    """What the broker stores per user and mechanism (never the password)."""

    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def create(cls, password: str, mechanism: str, *, iterations: int = DEFAULT_ITERATIONS,
               salt: bytes | None = None) -> ScramCredential:
        digest = SCRAM_MECHANISMS[mechanism]
        salt = salt if salt is not None else os.urandom(16)
        salted = hashlib.pbkdf2_hmac(digest, _saslprep(password), salt, iterations)
        return cls.from_salted_password(salted, mechanism, salt=salt, iterations=iterations)

    @classmethod
    def from_salted_password(cls, salted_password: bytes, mechanism: str, *, salt: bytes,
                             iterations: int) -> ScramCredential:
        """The credential of a password the client already salted (what
        AlterUserScramCredentials sends: Hi(password, salt, iterations))."""
        digest = SCRAM_MECHANISMS[mechanism]
        client_key = hmac.digest(salted_password, b"Client Key", digest)
        return cls(
            salt=salt,
            iterations=iterations,
            stored_key=hashlib.new(digest, client_key).digest(),
            server_key=hmac.digest(salted_password, b"Server Key", digest),
        )

    def verify_password(self, password: str, mechanism: str) -> bool:
        again = ScramCredential.create(password, mechanism, iterations=self.iterations, salt=self.salt)
        return hmac.compare_digest(again.stored_key, self.stored_key)

    def to_json(self) -> dict:
        return {
            "salt": base64.b64encode(self.salt).decode(),
            "iterations": self.iterations,
            "stored_key": base64.b64encode(self.stored_key).decode(),
            "server_key": base64.b64encode(self.server_key).decode(),
        }


def _saslprep(password: str) -> bytes:
    # Kafka's clients send the password as UTF-8 without SASLprep; so do we.
    return password.encode("utf-8")


class PlainMechanism:
    """PLAIN: one message ``authzid NUL user NUL password``, checked against the
    user's SCRAM-SHA-256 (or -512) credential."""

    name = "PLAIN"

    def __init__(self, lookup: Callable[..., Any]) -> None:
        self._lookup = lookup
        self.done = False
        self.principal: str | None = None
        self.user: str | None = None  # the user name the client gave, once parsed (for the log)

    def step(self, data: bytes) -> bytes:
        parts = data.split(b"\x00")
        if len(parts) != 3:
            raise AuthenticationError("malformed PLAIN message")
        authzid, user, password = (p.decode("utf-8", "replace") for p in parts)
        self.user = user
        if authzid and authzid != user:
            raise AuthenticationError("PLAIN authorization id must be empty or the user name")
        for mechanism in SCRAM_MECHANISMS:
            credential = self._lookup(user, mechanism)
            if credential is not None:
                if credential.verify_password(password, mechanism):
                    self.done, self.principal = True, user
                    return b""
                break
        raise AuthenticationError("Authentication failed: Invalid username or password")


class ScramMechanism:
    """SCRAM-SHA-256/512 server: client-first → server-first → client-final → server-final."""

    def __init__(self, name: str, lookup: Callable[..., Any]) -> None:
        self.name = name
        self._digest = SCRAM_MECHANISMS[name]
        self._lookup = lookup
        self._state = 0
        self._credential: ScramCredential | None = None
        self._user = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self.done = False
        self.principal: str | None = None
        self.user: str | None = None  # the user name the client gave, once parsed (for the log)

    def step(self, data: bytes) -> bytes:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise AuthenticationError("SCRAM message is not UTF-8") from exc
        if self._state == 0:
            return self._client_first(text)
        if self._state == 1:
            return self._client_final(text)
        raise AuthenticationError("SCRAM exchange already finished")

    def _client_first(self, text: str) -> bytes:
        if not text.startswith(("n,", "y,")):
            raise AuthenticationError("SCRAM channel binding is not supported")
        try:
            _, _authzid, bare = text.split(",", 2)
        except ValueError as exc:
            raise AuthenticationError("malformed SCRAM client-first message") from exc
        attrs = _attributes(bare)
        user = attrs.get("n", "").replace("=2C", ",").replace("=3D", "=")
        client_nonce = attrs.get("r")
        self.user = user or None
        if not user or not client_nonce:
            raise AuthenticationError("SCRAM client-first message lacks user or nonce")
        credential = self._lookup(user, self.name)
        if credential is None:
            raise AuthenticationError("Authentication failed: Invalid user credentials")
        self._credential, self._user, self._client_first_bare = credential, user, bare
        self._nonce = client_nonce + base64.b64encode(os.urandom(18)).decode()
        self._server_first = (
            f"r={self._nonce},s={base64.b64encode(credential.salt).decode()},i={credential.iterations}"
        )
        self._state = 1
        return self._server_first.encode()

    def _client_final(self, text: str) -> bytes:
        attrs = _attributes(text)
        if attrs.get("r") != self._nonce or "p" not in attrs or "c" not in attrs:
            raise AuthenticationError("Authentication failed: invalid SCRAM client-final message")
        without_proof = text[: text.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()
        credential = self._credential
        if credential is None:  # the client-first message set it (or failed)
            raise AuthenticationError("Authentication failed: SCRAM client-final message out of order")
        signature = hmac.digest(credential.stored_key, auth_message, self._digest)
        try:
            proof = base64.b64decode(attrs["p"], validate=True)
        except ValueError as exc:
            raise AuthenticationError("malformed SCRAM proof") from exc
        if len(proof) != len(signature):
            raise AuthenticationError("Authentication failed: Invalid user credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(self._digest, client_key).digest(), credential.stored_key):
            raise AuthenticationError("Authentication failed: Invalid user credentials")
        server_signature = hmac.digest(credential.server_key, auth_message, self._digest)
        self._state = 2
        self.done, self.principal = True, self._user
        return b"v=" + base64.b64encode(server_signature)


def _attributes(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out


def new_mechanism(name: str, lookup: Callable[..., Any]) -> PlainMechanism | ScramMechanism:
    """A fresh server-side exchange for ``name``; raises AuthenticationError if unknown."""
    if name == "PLAIN":
        return PlainMechanism(lookup)
    if name in SCRAM_MECHANISMS:
        return ScramMechanism(name, lookup)
    raise AuthenticationError(f"unsupported SASL mechanism {name}")
