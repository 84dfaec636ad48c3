import pytest

from logbroker.storage.index import CorruptIndexError, OffsetIndex, TimeIndex


def test_offset_index_append_lookup_trim_reopen(tmp_path):
    path = tmp_path / "00000000000000000100.index"
    idx = OffsetIndex(path, 100)
    idx.make_writable(80)
    assert idx.capacity == 10 and path.stat().st_size == 80  # capacity below the first step
    for i in range(1, 6):
        idx.append(100 + 10 * i, 1000 * i)
    assert idx.lookup(99) == (100, 0)
    assert idx.lookup(100) == (100, 0)
    assert idx.lookup(110) == (110, 1000)
    assert idx.lookup(135) == (130, 3000)
    assert idx.lookup(10_000) == (150, 5000)
    assert idx.lookup_position(2999) == 2000
    assert idx.lookup_position(3000) == 3000
    assert idx.lookup_position(10) == 0
    idx.sanity_check(log_size=6000)
    with pytest.raises(CorruptIndexError):
        idx.sanity_check(log_size=5000)
    idx.trim()
    assert path.stat().st_size == 40
    raw = path.read_bytes()
    assert raw[:8] == (10).to_bytes(4, "big") + (1000).to_bytes(4, "big")  # big-endian layout
    idx.close()
    again = OffsetIndex(path, 100)
    assert again.entries == 5 and again.last_entry() == (150, 5000)


def test_offset_index_full_and_truncate(tmp_path):
    idx = OffsetIndex(tmp_path / "00000000000000000000.index", 0)
    idx.make_writable(16)
    idx.append(1, 10)
    idx.append(2, 20)
    assert idx.is_full
    idx.append(3, 30)  # ignored
    assert idx.entries == 2
    idx.truncate_to(2)
    assert idx.entries == 1 and idx.last_entry() == (1, 10)
    idx.append(5, 50)
    idx.truncate_to_position(50)
    assert idx.entries == 1


def test_offset_index_sanity_detects_zeros_and_disorder(tmp_path):
    path = tmp_path / "00000000000000000000.index"
    path.write_bytes((5).to_bytes(4, "big") + (100).to_bytes(4, "big") + bytes(8))
    with pytest.raises(CorruptIndexError):
        OffsetIndex(path, 0).sanity_check(1000)
    path.write_bytes(b"\x00" * 7)
    with pytest.raises(CorruptIndexError):
        OffsetIndex(path, 0).sanity_check(1000)


def test_time_index_only_grows(tmp_path):
    idx = TimeIndex(tmp_path / "00000000000000000000.timeindex", 0)
    idx.make_writable(12 * 4)
    idx.maybe_append(100, 5)
    idx.maybe_append(100, 8)  # same timestamp: skipped
    idx.maybe_append(90, 9)  # smaller: skipped
    idx.maybe_append(200, 12)
    assert idx.entries == 2
    assert idx.lookup(50) == 0
    assert idx.lookup(150) == 5
    assert idx.lookup(200) == 12
    idx.maybe_append(300, 20)
    assert idx.is_full  # one spare entry is kept for sealing
    idx.maybe_append(400, 25)
    assert idx.entries == 3
    idx.maybe_append(400, 25, force=True)
    assert idx.entries == 4
    idx.sanity_check(max_offset=25)
    with pytest.raises(CorruptIndexError):
        idx.sanity_check(max_offset=24)
    idx.truncate_to(12)
    assert idx.last_entry() == (100, 5)


def test_reservation_grows_in_steps_and_a_refused_step_only_makes_it_sparser(tmp_path, monkeypatch):
    from logbroker.errors import StorageError
    from logbroker.storage import index as index_module

    path = tmp_path / "00000000000000000000.index"
    idx = OffsetIndex(path, 0)
    idx.make_writable(1 << 20)
    assert idx.capacity == (1 << 20) // 8
    assert path.stat().st_size == index_module.INITIAL_ENTRIES * 8
    for i in range(1, 3000):
        idx.append(i, 10 * i)
    assert idx.entries == 2999 and path.stat().st_size >= 3000 * 8
    assert all(path.stat().st_blocks * 512 >= path.stat().st_size for _ in [0])  # really allocated
    assert idx.lookup(2500) == (2500, 25000)

    def refuse(fd, size, p):
        raise StorageError("No space left on device")

    monkeypatch.setattr(index_module, "allocate", refuse)
    for i in range(3000, 10_000):
        idx.append(i, 10 * i)
    assert 2999 < idx.entries < 9999  # stopped at the reservation, no exception
    idx.sanity_check(log_size=10**9)
