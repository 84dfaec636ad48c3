"""Our one adapter over kio: Kafka payload bytes <-> kio schema objects.

Server side::

    versions = enabled_versions(HANDLED_KEYS)  # once; what we advertise and accept
    request = decode_request(frame, versions)  # frame from FrameDecoder.next_frame()
    m = request.response_module                # kio module of the response's version
    body = build(m.HeartbeatResponse, throttle_time=0, error_code=ErrorCode.none)
    if request.expects_response:               # Produce with acks=0 gets no answer
        buffers = encode_response(request, body)   # list for sendmsg / send_all

Client side: :func:`encode_request` and :func:`decode_response`.

Errors are translated here and only here: malformed peer bytes raise
:class:`~logbroker.errors.ProtocolError` (chained ``from`` kio's exception); a
(key, version) we do not serve raises :class:`~logbroker.errors.UnsupportedVersionError`
with ``api_key``, ``api_version`` and ``correlation_id`` set. For ApiVersions the
server answers with :func:`encode_unsupported_api_versions` (Kafka's
``isUnsupportedApiVersionsRequest``: error 35, v0 shape, so the client retries
lower; pass the same ``versions``); for any other key Kafka closes the
connection. A body we cannot encode raises
:class:`~logbroker.errors.LocalProtocolError` (our bug).

**Building kio objects.** kio's dataclasses are frozen, keyword-only and differ
per version; fields are plain Python values at runtime:

* ``i8``/``i16``/``i32``/``i64``, ``BrokerId``, ``TopicName``... are *phantom*
  types: pass plain ``int``/``str`` (``i32(5)`` just returns ``5``).
* ``*_ms`` duration fields lose the suffix and are :class:`datetime.timedelta`
  (``throttle_time``, ``timeout``, ``max_wait``, ``session_timeout``...).
  Timestamps (``datetime_i64``) are tz-aware :class:`datetime.datetime`, and a
  nullable one is ``None`` on the wire as -1. Plain ``int64`` timestamps such
  as ListOffsets ``timestamp`` stay ints.
* ``error_code`` fields are :class:`ErrorCode` members, never bare ints.
* arrays are tuples; ``records``/``bytes`` may be ``bytes`` or a 1-D byte
  ``memoryview`` (an mmap slice is sent without a copy; see
  :func:`encode_response`).

:func:`build` smooths all of this: it drops keywords the class's version lacks
(one handler serves Fetch v4..v12), turns ints into timedelta/datetime/ErrorCode
where the field wants them, and lists into tuples. :func:`to_ms` goes the other
way for request fields. Hot paths may call the kio classes directly.

Encoding note: kio's writers call ``write`` once per field. We give them a list
whose ``write`` is ``list.append`` (a ``BytesIO`` copies every 64 KiB records
field and hits a CPython pathology), then join the small pieces and keep byte
fields of at least :data:`ZERO_COPY_MIN` bytes as separate buffers.
"""

from __future__ import annotations

import datetime
import functools
import struct
import sys

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields
from types import MappingProxyType
from types import ModuleType
from typing import Any
from typing import Final

from kio.index import KioIndexError
from kio.index import load_payload_module
from kio.index import load_request_schema
from kio.index import load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_writer
from kio.serial._introspect import classify_field
from kio.serial.errors import SerialError
from kio.serial.readers import tz_aware_from_i64
from kio.static.constants import EntityType

from logbroker.errors import LocalProtocolError
from logbroker.errors import ProtocolError
from logbroker.errors import UnsupportedVersionError

from ._reader import Reader
from ._reader import entity_reader
from .fastpath import Encoded
from .legacy import STAND_IN
from .legacy import decode_legacy_body
from .legacy import encode_list_offsets_v0
from .produce_request import PRODUCE_REQUEST_VERSIONS
from .produce_request import read_produce_request
from .versions import SUPPORTED_VERSIONS
from .versions import ApiKey
from .versions import api_versions_entries
from .versions import is_enabled

__all__ = [
    "ZERO_COPY_MIN",
    "Request",
    "api_versions_response",
    "build",
    "decode_request",
    "decode_response",
    "duration",
    "encode_request",
    "encode_response",
    "encode_unsupported_api_versions",
    "has_error_code",
    "request_module",
    "response_class",
    "response_module",
    "timestamp",
    "to_ms",
]

ZERO_COPY_MIN: Final = 4096
"""Byte fields at least this long are returned as their own buffer, uncopied."""

_PRODUCE: Final = int(ApiKey.PRODUCE)
_REQUEST_HEAD: Final = struct.Struct(">hhi")  # api_key, api_version, correlation_id
_SIZE: Final = struct.Struct(">i")
_ERROR_CODE: Final = struct.Struct(">h")
_MAX_FRAME: Final = 2**31 - 1
_EPOCH: Final = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_STAND_IN: Final[dict[int, int]] = {int(k): v for k, v in STAND_IN.items()}  # a plain dict: one lookup per request
_ONE_MS: Final = datetime.timedelta(milliseconds=1)

# What kio's native readers, our safe reader and phantom constructors raise on
# bad bytes; translated to ProtocolError at this one boundary.
_DECODE_ERRORS: Final = (
    SerialError,
    ProtocolError,
    KeyError,
    ValueError,
    TypeError,
    OverflowError,
    IndexError,
    struct.error,
)
# What kio's writers raise for a body that does not fit its schema.
_ENCODE_ERRORS: Final = (
    SerialError,
    AttributeError,
    TypeError,
    ValueError,
    OverflowError,
    struct.error,
)


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded request: header fields, the kio body, and its response class."""

    api_key: ApiKey
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any
    """The kio request object, e.g. ``kio.schema.fetch.v12.request.FetchRequest``."""
    response_class: type
    """The kio response class for this key and version."""

    @property
    def expects_response(self) -> bool:
        """False only for Produce with ``acks=0``, which Kafka never answers."""
        return not (self.api_key == ApiKey.PRODUCE and self.body.acks == 0)

    @property
    def response_module(self) -> ModuleType:
        """The kio module holding the response class and its nested classes."""
        return sys.modules[self.response_class.__module__]

    def __repr__(self) -> str:  # the body may hold megabytes of records
        return (
            f"<Request {self.api_key.name} v{self.api_version} "
            f"correlation_id={self.correlation_id} client_id={self.client_id!r} "
            f"body={type(self.body).__name__}>"
        )


@dataclass(frozen=True, slots=True)
class _Codec:
    """Everything needed to read or write one (key, version, direction)."""

    payload_class: type
    read_header: Reader
    read_payload: Reader


@functools.cache
def _request_codec(api_key: int, api_version: int) -> _Codec:
    cls = load_request_schema(api_key, api_version)
    header: Any = cls.__header_schema__
    return _Codec(cls, entity_reader(header), entity_reader(cls))


@functools.cache
def _response_codec(api_key: int, api_version: int) -> _Codec:
    cls = load_response_schema(api_key, api_version)
    header: Any = cls.__header_schema__
    return _Codec(cls, entity_reader(header), entity_reader(cls))


def _readonly(payload: bytes | bytearray | memoryview) -> bytes | memoryview:
    """kio's native readers refuse writable buffers; copy only when needed."""
    if type(payload) is bytes:
        return payload
    if (
        isinstance(payload, memoryview)
        and payload.readonly
        and payload.format == "B"
        and payload.c_contiguous
    ):
        return payload
    return bytes(payload)


def _api_name(api_key: int) -> str:
    try:
        return ApiKey(api_key).name
    except ValueError:
        return f"api_key={api_key}"


# -- server side ---------------------------------------------------------------


def decode_request(
    payload: bytes | bytearray | memoryview,
    versions: Mapping[ApiKey, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> Request:
    """Decode one request payload (a frame without its 4-byte size).

    ``versions`` limits what is accepted (default: all of SUPPORTED_VERSIONS;
    pass :func:`~logbroker.protocol.enabled_versions` to serve a subset).
    The old versions kio lacks (KIP-896) are read by :mod:`.legacy` into the
    classes of the lowest version kio has; ``api_version`` stays the real one.
    Unknown tagged fields are skipped; trailing bytes are ignored, as Kafka does.

    :raises UnsupportedVersionError: key or version not in ``versions``; carries
        ``api_key``, ``api_version`` and ``correlation_id``.
    :raises ProtocolError: anything else wrong with the bytes.
    """
    buffer = _readonly(payload)
    if len(buffer) < _REQUEST_HEAD.size:
        raise ProtocolError(
            f"request of {len(buffer)} bytes is shorter than a request header"
        )
    api_key, api_version, correlation_id = _REQUEST_HEAD.unpack_from(buffer)
    if not is_enabled(api_key, api_version, versions):
        raise UnsupportedVersionError(
            f"{_api_name(api_key)} v{api_version} is not supported",
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
        )
    # Versions kio lacks (KIP-896 removed them) decode into a stand-in version's classes.
    legacy = api_version < _STAND_IN.get(api_key, 0)
    try:
        codec = _request_codec(api_key, _STAND_IN[api_key] if legacy else api_version)
    except KioIndexError as exc:  # a custom ``versions`` beyond kio's schemas
        raise UnsupportedVersionError(
            f"{_api_name(api_key)} v{api_version} has no kio schema",
            api_key=api_key,
            api_version=api_version,
            correlation_id=correlation_id,
        ) from exc
    try:
        header, header_size = codec.read_header(buffer, 0)
        if legacy:
            body = decode_legacy_body(api_key, api_version, buffer, header_size)
        elif api_key == _PRODUCE and api_version in PRODUCE_REQUEST_VERSIONS:
            body = read_produce_request(buffer, header_size, api_version)  # records uncopied
        else:
            body, body_size = codec.read_payload(buffer, header_size)
    except _DECODE_ERRORS as exc:
        raise ProtocolError(
            f"malformed {_api_name(api_key)} v{api_version} request "
            f"(correlation id {correlation_id}): {type(exc).__name__}: {exc}"
        ) from exc
    # Trailing bytes are ignored, as Kafka does: librdkafka's flexible
    # Metadata request writes a 4-byte null array where a 1-byte varint belongs.
    return Request(
        api_key=ApiKey(api_key),
        api_version=api_version,
        correlation_id=correlation_id,
        client_id=header.client_id,
        body=body,
        response_class=_response_codec(api_key, _STAND_IN[api_key] if legacy else api_version).payload_class,
    )


class _Chunks(list[bytes | memoryview]):
    """A list that kio's writers can ``write`` to: no copies, no BytesIO."""

    __slots__ = ()
    write = list.append


def _frame(header: Any, body: Any) -> list[bytes | memoryview]:
    """Return size + header + body as few buffers, big byte fields uncopied."""
    chunks = _Chunks()
    try:
        out: Any = chunks  # kio's writers only call ``write``
        entity_writer(type(header))(out, header)
        entity_writer(type(body))(out, body)
    except _ENCODE_ERRORS as exc:
        raise LocalProtocolError(
            f"cannot encode {type(body).__qualname__} v{body.__version__}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    total = sum(map(len, chunks))
    if total > _MAX_FRAME:
        raise LocalProtocolError(f"frame of {total} bytes exceeds the int32 size")
    buffers: list[bytes | memoryview] = []
    small: list[bytes | memoryview] = [_SIZE.pack(total)]
    for chunk in chunks:
        if len(chunk) >= ZERO_COPY_MIN:
            if small:
                buffers.append(b"".join(small))
                small = []
            buffers.append(chunk)
        else:
            small.append(chunk)
    if small:
        buffers.append(b"".join(small))
    return buffers


def encode_response(request: Request, body: Any) -> list[bytes | memoryview]:
    """Encode ``body`` as the full response frame to ``request``.

    Returns the buffers to send in order: 4-byte size, response header of the
    version kio assigns (v0 for ApiVersions, v1 for flexible versions, else v0),
    then the body. Small pieces are joined; byte fields (records) of at least
    :data:`ZERO_COPY_MIN` bytes are returned as the very objects passed in, so
    memoryview slices of an mmap reach ``sendmsg`` uncopied (and must stay valid
    until sent). ``records`` memoryviews must be 1-D with format ``"B"``. With
    many large fields, send at most ``IOV_MAX`` (1024) buffers per ``sendmsg``.

    For an old version (:mod:`.legacy`) ``body`` is of the stand-in version's
    class; ListOffsets v0 is written in its own shape, the others' layouts match.

    A body already encoded by a fast path (an :class:`~.fastpath.Encoded`
    from :func:`~.fastpath.encode_produce_response` or
    :func:`~.fastpath.encode_fetch_response`) is returned as it is.

    :raises LocalProtocolError: ``body`` is not an instance of
        ``request.response_class`` or does not fit its schema.
    """
    if type(body) is Encoded:
        return body.buffers
    cls = request.response_class
    if type(body) is not cls:
        raise LocalProtocolError(
            f"{request.api_key.name} v{request.api_version} needs a "
            f"{cls.__module__}.{cls.__qualname__}, got {type(body).__module__}."
            f"{type(body).__qualname__}"
        )
    if request.api_key == ApiKey.LIST_OFFSETS and request.api_version == 0:
        return encode_list_offsets_v0(request.correlation_id, body)
    header = cls.__header_schema__(correlation_id=request.correlation_id)
    return _frame(header, body)


def api_versions_response(
    api_version: int,
    versions: Mapping[ApiKey, tuple[int, int]] = SUPPORTED_VERSIONS,
    *,
    error_code: ErrorCode = ErrorCode.none,
    throttle_ms: int = 0,
) -> Any:
    """Return a kio ApiVersionsResponse of ``api_version`` listing ``versions``.

    Tagged fields (features, v3+) keep their defaults, so kio leaves them off
    the wire: librdkafka 2.0.2 (Debian's kcat) fails on present-but-default tags.
    """
    m = response_module(ApiKey.API_VERSIONS, api_version)
    entries = tuple(
        m.ApiVersion(api_key=int(key), min_version=lo, max_version=hi)
        for key, lo, hi in api_versions_entries(versions)
    )
    return build(
        m.ApiVersionsResponse,
        error_code=error_code,
        api_keys=entries,
        throttle_time=throttle_ms,
    )


def encode_unsupported_api_versions(
    correlation_id: int,
    versions: Mapping[ApiKey, tuple[int, int]] = SUPPORTED_VERSIONS,
) -> list[bytes | memoryview]:
    """Encode the answer to an ApiVersions request of a version we lack.

    Kafka's contract: a v0-shaped ApiVersionsResponse with error 35
    (UNSUPPORTED_VERSION) listing our ranges, under a v0 response header; the
    client retries with min(its version - 1, our ApiVersions maximum).
    """
    body = api_versions_response(
        0, versions, error_code=ErrorCode.unsupported_version
    )
    header = type(body).__header_schema__(correlation_id=correlation_id)
    return _frame(header, body)


# -- client side ---------------------------------------------------------------


def encode_request(
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
    body: Any,
) -> bytes:
    """Encode a full request frame (4-byte size, request header, body).

    Any (key, version) kio knows may be sent; SUPPORTED_VERSIONS is what *we*
    serve, not a limit on what a client may ask a real Kafka.

    :raises LocalProtocolError: kio has no such schema, ``body`` is not its
        request class, or ``body`` does not fit the schema.
    """
    try:
        cls = _request_codec(api_key, api_version).payload_class
    except KioIndexError as exc:
        raise LocalProtocolError(
            f"no request schema for {_api_name(api_key)} v{api_version}"
        ) from exc
    if type(body) is not cls:
        raise LocalProtocolError(
            f"{_api_name(api_key)} v{api_version} needs a {cls.__module__}."
            f"{cls.__qualname__}, got {type(body).__module__}.{type(body).__qualname__}"
        )
    header = cls.__header_schema__(
        request_api_key=api_key,
        request_api_version=api_version,
        correlation_id=correlation_id,
        client_id=client_id,
    )
    return b"".join(_frame(header, body))


def decode_response(
    api_key: int,
    api_version: int,
    payload: bytes | bytearray | memoryview,
) -> tuple[int, Any]:
    """Decode a response payload (a frame without its size) to our request.

    Returns ``(correlation_id, body)``. An ApiVersions response carrying error
    35 is decoded as v0, whatever version was asked (Kafka's fallback).

    :raises LocalProtocolError: kio has no schema for (key, version).
    :raises ProtocolError: the bytes are malformed or have trailing bytes.
    """
    try:
        codec = _response_codec(api_key, api_version)
    except KioIndexError as exc:
        raise LocalProtocolError(
            f"no response schema for {_api_name(api_key)} v{api_version}"
        ) from exc
    buffer = _readonly(payload)
    try:
        header, header_size = codec.read_header(buffer, 0)
        if api_key == ApiKey.API_VERSIONS and api_version > 0:
            (error,) = _ERROR_CODE.unpack_from(buffer, header_size)
            if error == ErrorCode.unsupported_version:
                codec = _response_codec(api_key, 0)
        body, body_size = codec.read_payload(buffer, header_size)
    except _DECODE_ERRORS as exc:
        raise ProtocolError(
            f"malformed {_api_name(api_key)} v{api_version} response: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if header_size + body_size != len(buffer):
        raise ProtocolError(
            f"{_api_name(api_key)} v{api_version} response has "
            f"{len(buffer) - header_size - body_size} trailing bytes"
        )
    return header.correlation_id, body


# -- building kio objects --------------------------------------------------------


def request_module(api_key: int, api_version: int) -> ModuleType:
    """Return the kio module of a request version (its class and nested classes).

    :raises LocalProtocolError: kio has no such schema.
    """
    return _payload_module(api_key, api_version, EntityType.request)


def response_module(api_key: int, api_version: int) -> ModuleType:
    """Return the kio module of a response version (its class and nested classes).

    :raises LocalProtocolError: kio has no such schema.
    """
    return _payload_module(api_key, api_version, EntityType.response)


def response_class(api_key: int, api_version: int) -> type:
    """Return kio's response class for (key, version), looked up in kio's schema
    index (the explicit (key, version) -> schema table), never by class name.
    Used to answer a request the broker cannot decode (a version it does not
    serve) with an error.

    :raises LocalProtocolError: kio has no such schema.
    """
    try:
        return _response_codec(api_key, api_version).payload_class
    except KioIndexError as exc:
        raise LocalProtocolError(
            f"no response schema for {_api_name(api_key)} v{api_version}"
        ) from exc


def has_error_code(cls: type) -> bool:
    """Whether response class ``cls`` has a top-level ``error_code`` field, so a
    whole request can be answered with one error (Kafka's ``getErrorResponse``)."""
    return "error_code" in _build_plan(cls)[0]


def _payload_module(api_key: int, api_version: int, kind: Any) -> ModuleType:
    try:
        return load_payload_module(api_key, api_version, kind)
    except KioIndexError as exc:
        raise LocalProtocolError(
            f"no {kind.name} schema for {_api_name(api_key)} v{api_version}"
        ) from exc


def duration(ms: int) -> datetime.timedelta:
    """Return the value for a kio duration field (``timedelta_i32``/``_i64``)."""
    return datetime.timedelta(milliseconds=ms)


def timestamp(ms: int) -> datetime.datetime | None:
    """Return the value for a kio ``datetime_i64`` field; -1 (null) gives None."""
    if ms == -1:
        return None
    return tz_aware_from_i64(ms)  # type: ignore[arg-type]  # kio wants its i64 phantom type; an int is one


def to_ms(value: datetime.timedelta | datetime.datetime | int | None) -> int:
    """Return milliseconds: a duration's length, a timestamp's epoch ms, None -> -1."""
    if value is None:
        return -1
    if isinstance(value, datetime.timedelta):
        return value // _ONE_MS
    if isinstance(value, datetime.datetime):
        return (value - _EPOCH) // _ONE_MS
    return int(value)


def _as_error_code(value: Any) -> Any:
    return value if isinstance(value, ErrorCode) else ErrorCode(value)


def _as_duration(value: Any) -> Any:
    return value if isinstance(value, datetime.timedelta) else duration(value)


def _as_timestamp(value: Any) -> Any:
    if value is None or isinstance(value, datetime.datetime):
        return value
    return timestamp(value)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


_CONVERTERS: Final = MappingProxyType(
    {
        "error_code": _as_error_code,
        "timedelta_i32": _as_duration,
        "timedelta_i64": _as_duration,
        "datetime_i64": _as_timestamp,
    }
)


@functools.cache
def _build_plan(cls: type) -> tuple[frozenset[str], Mapping[str, Any]]:
    names = []
    converters = {}
    for field in fields(cls):
        names.append(field.name)
        kafka_type = field.metadata.get("kafka_type")
        if classify_field(field).is_array:
            converters[field.name] = _as_tuple
        elif kafka_type in _CONVERTERS:
            converters[field.name] = _CONVERTERS[str(kafka_type)]
    return frozenset(names), MappingProxyType(converters)


def build(cls: type, /, **values: Any) -> Any:
    """Construct kio entity ``cls`` from friendly values.

    Keywords that ``cls`` lacks are dropped (so one call serves every version);
    ints become ``timedelta`` for duration fields, tz-aware ``datetime`` (or None
    for -1) for timestamp fields and :class:`ErrorCode` for error fields; lists
    become tuples. Fields left out take kio's defaults.

    :raises TypeError: a field without a default was not given.
    :raises ValueError: an int is not a known error code.
    """
    names, converters = _build_plan(cls)
    kwargs = {}
    for name, value in values.items():
        if name in names:
            convert = converters.get(name)
            kwargs[name] = value if convert is None else convert(value)
    return cls(**kwargs)
