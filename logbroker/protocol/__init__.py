"""Sans-I/O Kafka protocol: framing, the version table, and our adapter over kio.

Never touches sockets and never imports trio. See :mod:`.adapter` for how to
build kio response objects, and :mod:`.fastpath` for the hand-written
Produce and Fetch response encoders the hot paths use instead.
"""

import sys as _sys

if "hypothesis" not in _sys.modules:
    # kio's phantom types register hypothesis strategies whenever hypothesis is
    # importable, and that writes a .hypothesis/ cache into the working
    # directory of every broker. Hide it while kio loads; tests import it first.
    _sys.modules["hypothesis"] = None  # type: ignore[assignment]  # None in sys.modules blocks an import
    try:
        import kio.static.primitive  # noqa: F401
    finally:
        del _sys.modules["hypothesis"]

from kio.schema.errors import ErrorCode as ErrorCode  # noqa: E402

from .adapter import ZERO_COPY_MIN as ZERO_COPY_MIN
from .adapter import Request as Request
from .adapter import api_versions_response as api_versions_response
from .adapter import build as build
from .adapter import decode_request as decode_request
from .adapter import decode_response as decode_response
from .adapter import duration as duration
from .adapter import encode_request as encode_request
from .adapter import encode_response as encode_response
from .adapter import encode_unsupported_api_versions as encode_unsupported_api_versions
from .adapter import has_error_code as has_error_code
from .adapter import request_module as request_module
from .adapter import response_class as response_class
from .adapter import response_module as response_module
from .adapter import timestamp as timestamp
from .adapter import to_ms as to_ms
from .fastpath import FETCH_VERSIONS as FETCH_VERSIONS
from .fastpath import METADATA_VERSIONS as METADATA_VERSIONS
from .fastpath import MetadataBroker as MetadataBroker
from .fastpath import MetadataTopic as MetadataTopic
from .fastpath import encode_metadata_response as encode_metadata_response
from .fastpath import PRODUCE_VERSIONS as PRODUCE_VERSIONS
from .fastpath import Encoded as Encoded
from .fastpath import FetchPartition as FetchPartition
from .fastpath import ProducePartition as ProducePartition
from .fastpath import encode_fetch_response as encode_fetch_response
from .fastpath import encode_produce_response as encode_produce_response
from .framing import DEFAULT_MAX_FRAME_BYTES as DEFAULT_MAX_FRAME_BYTES
from .legacy import encode_legacy_fetch_response as encode_legacy_fetch_response
from .legacy import encode_legacy_produce_response as encode_legacy_produce_response
from .framing import FrameDecoder as FrameDecoder
from .versions import SUPPORTED_VERSIONS as SUPPORTED_VERSIONS
from .versions import ApiKey as ApiKey
from .versions import api_versions_entries as api_versions_entries
from .versions import enabled_versions as enabled_versions
from .versions import is_enabled as is_enabled

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "FETCH_VERSIONS",
    "METADATA_VERSIONS",
    "PRODUCE_VERSIONS",
    "SUPPORTED_VERSIONS",
    "ZERO_COPY_MIN",
    "ApiKey",
    "Encoded",
    "ErrorCode",
    "FetchPartition",
    "FrameDecoder",
    "MetadataBroker",
    "MetadataTopic",
    "ProducePartition",
    "Request",
    "api_versions_entries",
    "api_versions_response",
    "build",
    "decode_request",
    "decode_response",
    "duration",
    "enabled_versions",
    "encode_fetch_response",
    "encode_legacy_fetch_response",
    "encode_legacy_produce_response",
    "encode_metadata_response",
    "encode_produce_response",
    "encode_request",
    "encode_response",
    "encode_unsupported_api_versions",
    "has_error_code",
    "is_enabled",
    "request_module",
    "response_class",
    "response_module",
    "timestamp",
    "to_ms",
]
