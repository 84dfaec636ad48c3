"""build(), duration(), timestamp(), to_ms() and the public namespace."""

from __future__ import annotations

import ast
import datetime
import pathlib
import subprocess
import sys

import pytest

import logbroker.protocol as protocol

from logbroker.errors import LocalProtocolError
from logbroker.protocol import ApiKey
from logbroker.protocol import ErrorCode
from logbroker.protocol import build
from logbroker.protocol import duration
from logbroker.protocol import request_module
from logbroker.protocol import response_module
from logbroker.protocol import timestamp
from logbroker.protocol import to_ms


def test_build_converts_friendly_values() -> None:
    m = response_module(ApiKey.FETCH, 12)
    body = build(
        m.FetchResponse,
        throttle_time=250,
        error_code=0,
        session_id=7,
        responses=[],
        not_in_this_version=1,
    )
    assert body.throttle_time == datetime.timedelta(milliseconds=250)
    assert body.error_code is ErrorCode.none
    assert body.responses == ()
    assert body.session_id == 7


def test_build_drops_fields_an_older_version_lacks() -> None:
    values = {"throttle_time": 0, "error_code": 0, "session_id": 3, "responses": ()}
    old = build(response_module(ApiKey.FETCH, 4).FetchResponse, **values)
    assert not hasattr(old, "session_id")
    new = build(response_module(ApiKey.FETCH, 7).FetchResponse, **values)
    assert new.session_id == 3


def test_build_keeps_already_typed_values() -> None:
    m = response_module(ApiKey.PRODUCE, 9)
    when = timestamp(1_000)
    partition = build(
        m.PartitionProduceResponse,
        index=0,
        error_code=ErrorCode.not_leader_or_follower,
        base_offset=0,
        log_append_time=when,
        record_errors=(),
    )
    assert partition.log_append_time is when
    assert partition.error_code is ErrorCode.not_leader_or_follower


def test_build_reports_missing_required_fields() -> None:
    with pytest.raises(TypeError):
        build(response_module(ApiKey.HEARTBEAT, 4).HeartbeatResponse, throttle_time=0)


def test_build_refuses_unknown_error_codes() -> None:
    with pytest.raises(ValueError):
        build(response_module(ApiKey.HEARTBEAT, 0).HeartbeatResponse, error_code=31337)


def test_duration_timestamp_and_to_ms() -> None:
    assert duration(1500) == datetime.timedelta(seconds=1.5)
    assert to_ms(duration(1500)) == 1500
    assert to_ms(duration(-1)) == -1
    assert timestamp(-1) is None
    stamp = timestamp(1_700_000_000_123)
    assert stamp is not None
    assert stamp.tzinfo is not None
    assert to_ms(stamp) == 1_700_000_000_123
    assert to_ms(None) == -1
    assert to_ms(42) == 42


def test_request_and_response_modules() -> None:
    assert request_module(ApiKey.METADATA, 12).MetadataRequest.__version__ == 12
    assert response_module(3, 0).MetadataResponse.__version__ == 0
    with pytest.raises(LocalProtocolError, match="no request schema"):
        request_module(4, 0)
    with pytest.raises(LocalProtocolError, match="no response schema"):
        response_module(3, 99)


# -- the package's public face -------------------------------------------------------

REQUIRED = {
    "FrameDecoder",
    "decode_request",
    "encode_response",
    "encode_request",
    "decode_response",
    "Request",
    "ApiKey",
    "SUPPORTED_VERSIONS",
    "ErrorCode",
    "api_versions_entries",
    "encode_unsupported_api_versions",
}


def test_public_names_are_exported_once() -> None:
    assert REQUIRED <= set(protocol.__all__)
    assert len(protocol.__all__) == len(set(protocol.__all__))
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


def test_error_code_is_kios() -> None:
    from kio.schema.errors import ErrorCode as KioErrorCode

    assert ErrorCode is KioErrorCode


PACKAGE = pathlib.Path(protocol.__file__).parent


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_package_never_imports_io_libraries(path: pathlib.Path) -> None:
    forbidden = {"trio", "socket", "asyncio", "selectors", "anyio"}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"


def test_importing_the_package_loads_no_trio() -> None:
    # kio imports hypothesis when it is installed, and hypothesis loads trio's
    # plugin; block hypothesis as in a production install without test extras.
    code = (
        "import sys; sys.modules['hypothesis'] = None; import logbroker.protocol; "
        "print('trio' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_stay_small(path: pathlib.Path) -> None:
    assert len(path.read_text().splitlines()) < 800
