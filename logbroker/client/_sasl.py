"""The client side of SASL PLAIN (RFC 4616) and SCRAM-SHA-256/512 (RFC 5802, RFC 7677). Sans-I/O.

An exchange (:func:`new_exchange`) produces the bytes of each
SaslAuthenticate request: :meth:`first` gives the first message, then
:meth:`step` takes each answer of the broker and gives the next message, or
None when the login is complete. A SCRAM exchange checks the broker's final
signature, so a broker (or a man in the middle) that does not know the
password cannot pretend the login succeeded.

Like Kafka's Java client, the password is sent as UTF-8 without SASLprep, and
SCRAM refuses fewer than 4096 iterations (a weakened salted password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from logbroker.errors import AuthenticationError

__all__ = ["MECHANISMS", "PlainExchange", "SaslCredentials", "SaslExchange", "ScramExchange", "new_exchange"]

_SCRAM_DIGESTS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MECHANISMS = ("PLAIN", *_SCRAM_DIGESTS)
"""The mechanisms this client speaks."""
_MIN_ITERATIONS = 4096  # Kafka's ScramMechanism.minIterations


@dataclass(frozen=True, slots=True)
class SaslCredentials:
    """Who logs in and how; the password never appears in the repr."""

    mechanism: str
    username: str
    password: str = field(repr=False)


class SaslExchange(Protocol):
    """One login's client side: :meth:`first`, then :meth:`step` per answer until it returns None."""

    def first(self) -> bytes: ...

    def step(self, answer: bytes) -> bytes | None:
        """The next message for the broker's ``answer``, or None once logged in.

        :raises AuthenticationError: the answer is malformed or proves nothing.
        """
        ...


class PlainExchange:
    """PLAIN: one message ``NUL user NUL password`` (no authorization id); the broker's
    empty answer ends it."""

    def __init__(self, credentials: SaslCredentials) -> None:
        self._credentials = credentials

    def __repr__(self) -> str:
        return f"<PlainExchange user={self._credentials.username!r}>"

    def first(self) -> bytes:
        c = self._credentials
        return b"\x00" + c.username.encode() + b"\x00" + c.password.encode()

    def step(self, answer: bytes) -> bytes | None:
        return None


class ScramExchange:
    """SCRAM: client-first -> server-first -> client-final -> server-final (checked).

    ``nonce`` is for tests (RFC 7677's example); by default a fresh random one.
    """

    def __init__(self, credentials: SaslCredentials, *, nonce: str | None = None) -> None:
        self._credentials = credentials
        self._digest = _SCRAM_DIGESTS[credentials.mechanism]
        self._nonce = nonce if nonce is not None else secrets.token_urlsafe(24)  # no ',' in urlsafe base64
        self._client_first_bare = f"n={_escape(credentials.username)},r={self._nonce}"
        self._server_signature: bytes | None = None
        self._state = "first"

    def __repr__(self) -> str:
        return f"<ScramExchange {self._credentials.mechanism} user={self._credentials.username!r} {self._state}>"

    def first(self) -> bytes:
        self._state = "server-first"
        return ("n,," + self._client_first_bare).encode()

    def step(self, answer: bytes) -> bytes | None:
        if self._state == "server-first":
            self._state = "server-final"
            return self._client_final(_decode(answer))
        if self._state == "server-final":
            self._verify(_decode(answer))
            self._state = "done"
            return None
        raise AuthenticationError(f"SCRAM answer after the exchange ended ({self._state})")

    def _client_final(self, server_first: str) -> bytes:
        attrs = _attributes(server_first)
        nonce, salt_b64, iterations_text = attrs.get("r", ""), attrs.get("s"), attrs.get("i", "")
        # The server extends our nonce; a different one is a replay or a broken server.
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise AuthenticationError("the broker's SCRAM nonce does not extend ours")
        if salt_b64 is None or not iterations_text.isdigit():
            raise AuthenticationError(f"malformed SCRAM server-first message {server_first!r}")
        iterations = int(iterations_text)
        if iterations < _MIN_ITERATIONS:
            raise AuthenticationError(f"the broker asks for {iterations} SCRAM iterations, "
                                      f"fewer than the minimum {_MIN_ITERATIONS}")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except ValueError as exc:
            raise AuthenticationError("the broker's SCRAM salt is not base64") from exc
        salted = hashlib.pbkdf2_hmac(self._digest, self._credentials.password.encode(), salt, iterations)
        client_key = hmac.digest(salted, b"Client Key", self._digest)
        stored_key = hashlib.new(self._digest, client_key).digest()
        without_proof = f"c=biws,r={nonce}"  # biws = base64("n,,"): no channel binding
        auth_message = f"{self._client_first_bare},{server_first},{without_proof}".encode()
        client_signature = hmac.digest(stored_key, auth_message, self._digest)
        proof = bytes(a ^ b for a, b in zip(client_key, client_signature))
        server_key = hmac.digest(salted, b"Server Key", self._digest)
        self._server_signature = hmac.digest(server_key, auth_message, self._digest)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def _verify(self, server_final: str) -> None:
        attrs = _attributes(server_final)
        if "e" in attrs:
            raise AuthenticationError(f"the broker ended the SCRAM exchange: {attrs['e']}")
        try:
            signature = base64.b64decode(attrs.get("v", ""), validate=True)
        except ValueError as exc:
            raise AuthenticationError("the broker's SCRAM signature is not base64") from exc
        assert self._server_signature is not None  # _client_final set it
        if not signature or not hmac.compare_digest(signature, self._server_signature):
            raise AuthenticationError("the broker's SCRAM signature is wrong: it does not know the password")


def new_exchange(credentials: SaslCredentials) -> SaslExchange:
    """A fresh exchange for ``credentials.mechanism`` (one of :data:`MECHANISMS`).

    :raises AuthenticationError: a mechanism this client does not speak.
    """
    if credentials.mechanism == "PLAIN":
        return PlainExchange(credentials)
    if credentials.mechanism in _SCRAM_DIGESTS:
        return ScramExchange(credentials)
    raise AuthenticationError(f"unsupported SASL mechanism {credentials.mechanism!r}")


def _escape(name: str) -> str:
    """A SCRAM ``saslname``: '=' and ',' escaped (RFC 5802 section 5.1)."""
    return name.replace("=", "=3D").replace(",", "=2C")


def _decode(answer: bytes) -> str:
    try:
        return answer.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise AuthenticationError("the broker's SCRAM message is not UTF-8") from exc


def _attributes(text: str) -> dict[str, str]:
    """``"r=abc,s=xyz,i=4096"`` -> ``{"r": "abc", "s": "xyz", "i": "4096"}`` (first wins)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        if len(part) >= 2 and part[1] == "=":
            out.setdefault(part[0], part[2:])
    return out
