from click.testing import CliRunner

from logbroker.cli.dump import dump
from logbroker.storage import LogConfig, PartitionLog

from .conftest import make_batch


def _make(tmp_path):
    log = PartitionLog(tmp_path / "p", LogConfig(segment_bytes=3000, index_interval_bytes=300))
    for i in range(20):
        log.append(make_batch(records=2, value_size=100, timestamp=1000 + 10 * i), now_ms=0)
    segments = log.segments
    log.close()
    return tmp_path / "p", segments


def test_dump_log_with_records(tmp_path):
    directory, segments = _make(tmp_path)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    result = CliRunner().invoke(dump, [str(segments[0].path), "--records"])
    assert result.exit_code == 0, result.output
    assert "baseOffset: 0 lastOffset: 1 count: 2 position: 0" in result.output
    assert "crc: 0x" in result.output and "ok" in result.output and "codec: none" in result.output
    assert "| offset: 1 timestamp: 1001" in result.output
    assert {p.name: p.read_bytes() for p in directory.iterdir()} == before  # read-only


def test_dump_index_and_timeindex_checked_against_log(tmp_path):
    _, segments = _make(tmp_path)
    index = segments[0].path.with_suffix(".index")
    result = CliRunner().invoke(dump, [str(index)])
    assert result.exit_code == 0, result.output
    assert "offset: " in result.output and "0 problems" in result.output
    result = CliRunner().invoke(dump, [str(segments[0].path.with_suffix(".timeindex"))])
    assert result.exit_code == 0 and "timestamp: " in result.output
    data = bytearray(index.read_bytes())
    data[7] ^= 0x01  # move a position off its batch
    index.write_bytes(bytes(data))
    result = CliRunner().invoke(dump, [str(index)])
    assert result.exit_code == 1 and "! " in result.output


def test_dump_directory_and_corruption(tmp_path):
    directory, segments = _make(tmp_path)
    result = CliRunner().invoke(dump, [str(directory)])
    assert result.exit_code == 0, result.output
    assert result.output.count("== segment") == len(segments)
    data = bytearray(segments[0].path.read_bytes())
    data[100] ^= 0xFF
    segments[0].path.write_bytes(bytes(data) + b"\x00" * 10)
    result = CliRunner().invoke(dump, [str(segments[0].path)])
    assert result.exit_code == 1
    assert "MISMATCH" in result.output and "not a complete batch" in result.output


def test_dump_works_while_a_manager_holds_the_dir_without_touching_the_lock(tmp_path):
    from logbroker.storage import LogManager

    with LogManager(tmp_path / "data") as m:
        m.create_topic("t", 1)
        m.get_partition("t", 0).append(make_batch(), now_ms=0)
        result = CliRunner().invoke(dump, [str(tmp_path / "data" / "t-0")])
        assert result.exit_code == 0, result.output
        assert "unused preallocated entries" in result.output


def test_dump_rejects_other_files(tmp_path):
    other = tmp_path / "x.txt"
    other.write_text("hi")
    result = CliRunner().invoke(dump, [str(other)])
    assert result.exit_code == 2
