"""PartitionLog.replace_segments: the log cleaner's one way to change the log.

Its invariants (see the docstring): segments sorted and contiguous, the
active segment never replaced, the bisect index in step with the segments,
the unsynced bookkeeping updated, readers of old segments unaffected, and a
crash at any step opening as the old or the new segments, never a mix within
one replaced segment and never neither.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator

import pytest

from logbroker.errors import StorageError
from logbroker.records import build_batch, decode_batches, iter_batches
from logbroker.storage import AbortedTxn, LogConfig, PartitionLog
from logbroker.storage import partition as partition_module
from logbroker.storage import segment as segment_module
from logbroker.storage.segment import LogSegment
from logbroker.storage.swap import CLEANED_SUFFIX, SWAP_SUFFIX

NOW = 1_700_000_000_000
CONFIG = LogConfig(segment_bytes=4096, index_interval_bytes=256, segment_index_bytes=4096)
BATCHES_PER_SEGMENT = 8


def _batch(n: int) -> bytes:
    return build_batch([(b"k%d" % n, b"value-%d" % n, (), NOW)])


def _log(directory: pathlib.Path, segments: int = 4) -> PartitionLog:
    """``segments`` sealed segments of BATCHES_PER_SEGMENT one-record batches, then an active one."""
    plog = PartitionLog(directory, CONFIG)
    n = 0
    for _ in range(segments):
        for _ in range(BATCHES_PER_SEGMENT):
            plog.append(_batch(n), NOW)
            n += 1
        plog.roll()
    plog.append(_batch(n), NOW)
    return plog


def _cleaned(old: LogSegment, keep) -> LogSegment:
    """A sealed ``.cleaned`` copy of ``old`` with the batches ``keep(base offset)`` accepts."""
    fresh = LogSegment.create(old.directory, old.base_offset, old.config, file_suffix=CLEANED_SUFFIX)
    view = old.view()
    for pos, header in iter_batches(view):
        if keep(header.base_offset):
            data = bytes(view[pos : pos + header.size])
            fresh.append([data], len(data), header.last_offset, header.max_timestamp)
    fresh.seal()
    return fresh


def _merged(olds: list[LogSegment], keep) -> LogSegment:
    """One sealed ``.cleaned`` segment at the first one's base with the kept batches of all."""
    fresh = LogSegment.create(olds[0].directory, olds[0].base_offset, olds[0].config, file_suffix=CLEANED_SUFFIX)
    for old in olds:
        view = old.view()
        for pos, header in iter_batches(view):
            if keep(header.base_offset):
                data = bytes(view[pos : pos + header.size])
                fresh.append([data], len(data), header.last_offset, header.max_timestamp)
    fresh.seal()
    return fresh


def _offsets(plog: PartitionLog) -> list[int]:
    """Every offset a consumer reads from the log start (across compaction gaps)."""
    out, offset = [], plog.log_start_offset
    while offset < plog.log_end_offset:
        batches = list(decode_batches(bytes(plog.read(offset, 1 << 20).records)))
        if not batches:
            break
        out += [r.offset for b in batches for r in b.records if r.offset >= offset]
        offset = batches[-1].header.last_offset + 1
    return out


def _check_structure(plog: PartitionLog) -> None:
    """Sorted, non-overlapping segments, and a read of each offset finds its batch."""
    infos = plog.segments
    assert [s.base_offset for s in infos] == sorted(s.base_offset for s in infos)
    for before, after in zip(infos, infos[1:]):
        assert before.next_offset <= after.base_offset
    for offset in _offsets(plog):
        first = next(iter_batches(plog.read(offset, 1).records))[1]
        assert first.base_offset <= offset <= first.last_offset


def _even(offset: int) -> bool:
    return offset % 2 == 0


def test_replacement_keeps_reads_correct_and_bases_in_step(tmp_path):
    plog = _log(tmp_path / "p")
    before = _offsets(plog)
    sealed = plog.sealed_segments()
    old = list(sealed[1:3])
    new = [_cleaned(s, _even) for s in old]
    plog.replace_segments(new, old)
    replaced = {o for s in old for o in range(s.base_offset, s.next_offset)}
    assert _offsets(plog) == [o for o in before if o not in replaced or _even(o)]
    assert plog.sealed_segments()[1:3] == tuple(new)
    assert [s.base_offset for s in plog.segments] == [s.base_offset for s in sealed] + [plog.segments[-1].base_offset]
    _check_structure(plog)
    # Files carry their final names; nothing is left over.
    names = os.listdir(tmp_path / "p")
    assert not [n for n in names if n.endswith((CLEANED_SUFFIX, SWAP_SUFFIX))]
    assert all(s.log_path.exists() for s in new)
    # The log goes on: appends, rolls and a reopen see the same thing.
    plog.append(_batch(999), NOW)
    plog.roll()
    after = _offsets(plog)
    plog.close()
    reopened = PartitionLog(tmp_path / "p", CONFIG, clean_shutdown=True)
    assert _offsets(reopened) == after
    _check_structure(reopened)
    reopened.close()


def test_merging_segments_keeps_the_bases_in_step(tmp_path):
    plog = _log(tmp_path / "p")
    before = _offsets(plog)
    sealed = plog.sealed_segments()
    old = list(sealed[1:3])
    merged = _merged(old, _even)
    plog.replace_segments([merged], old)
    replaced = {o for s in old for o in range(s.base_offset, s.next_offset)}
    assert _offsets(plog) == [o for o in before if o not in replaced or _even(o)]
    assert [s.base_offset for s in plog.segments] == [
        sealed[0].base_offset, sealed[1].base_offset, sealed[3].base_offset, plog.segments[-1].base_offset
    ]
    assert not (tmp_path / "p" / old[1].log_path.name).exists()
    _check_structure(plog)
    # Reads by offset bisect the base offsets: every offset of the later segments.
    for offset in range(sealed[3].base_offset, plog.log_end_offset):
        assert next(iter_batches(plog.read(offset, 1).records))[1].base_offset == offset
    plog.close()


def test_the_active_segment_is_never_replaced(tmp_path):
    plog = _log(tmp_path / "p", segments=2)
    last_sealed = plog.sealed_segments()[-1]
    new = _cleaned(last_sealed, _even)
    # A truncation into it makes the last sealed segment the active one again
    # (a cleaner's plan gone stale): it may not be replaced.
    plog.truncate_to(last_sealed.base_offset + 3)
    assert last_sealed not in plog.sealed_segments()
    before, names = _offsets(plog), sorted(os.listdir(tmp_path / "p"))
    with pytest.raises(ValueError, match="active"):
        plog.replace_segments([new], [last_sealed])
    assert _offsets(plog) == before
    assert sorted(os.listdir(tmp_path / "p")) == names, "a refused replacement leaves every file alone"
    plog.append(_batch(100), NOW)  # still the active segment, still appending
    assert _offsets(plog)[-1] == before[-1] + 1
    new.delete()
    plog.close()


@pytest.mark.parametrize("case", ["not contiguous", "wrong start", "past the limit", "not cleaned", "empty"])
def test_a_replacement_breaking_the_contract_changes_nothing(tmp_path, case):
    plog = _log(tmp_path / "p")
    sealed = plog.sealed_segments()
    before, names = _offsets(plog), sorted(os.listdir(tmp_path / "p"))
    if case == "not contiguous":
        old, new = [sealed[0], sealed[2]], [_cleaned(sealed[0], _even), _cleaned(sealed[2], _even)]
    elif case == "wrong start":
        old, new = [sealed[0], sealed[1]], [_cleaned(sealed[1], _even)]
    elif case == "past the limit":
        # Segment 0's replacement holding segment 1's offsets too.
        fresh = _cleaned(sealed[0], lambda o: True)
        view = sealed[1].view()
        for pos, header in iter_batches(view):
            data = bytes(view[pos : pos + header.size])
            fresh.activate()
            fresh.append([data], len(data), header.last_offset, header.max_timestamp)
        fresh.seal()
        old, new = [sealed[0]], [fresh]
    elif case == "not cleaned":
        old, new = [sealed[0]], [LogSegment.open(tmp_path / "p", sealed[1].base_offset, CONFIG)]
    else:
        old, new = [sealed[0]], []
    with pytest.raises(ValueError):
        plog.replace_segments(new, old)
    assert _offsets(plog) == before
    for fresh in new:
        if fresh.file_suffix == CLEANED_SUFFIX:
            fresh.delete()
    assert sorted(os.listdir(tmp_path / "p")) == names
    plog.close()


def test_readers_holding_old_segments_stay_valid(tmp_path):
    plog = _log(tmp_path / "p")
    sealed = plog.sealed_segments()
    old = [sealed[1]]
    view = plog.read(old[0].base_offset, 1 << 20).records  # a fetch in flight
    held = bytes(view)
    headers = plog.iter_batch_headers(0)  # an iteration in progress
    first = next(headers)
    plog.replace_segments([_cleaned(old[0], _even)], old)
    assert bytes(view) == held
    assert bytes(old[0].view()) == held[: old[0].size], "the old segment object still reads its bytes"
    rest = [h.base_offset for _, h in headers]
    assert [first[1].base_offset, *rest] == list(range(plog.segments[-1].next_offset))
    plog.close()


def test_unsynced_bookkeeping_forgets_the_old_segments(tmp_path, monkeypatch):
    plog = _log(tmp_path / "p")  # every sealed segment is unsynced: nothing was flushed
    assert plog.dirty
    old = list(plog.sealed_segments()[:2])
    old_paths = {p for s in old for p in s.paths()}
    new = [_cleaned(s, _even) for s in old]
    plog.replace_segments(new, old)
    synced: list[pathlib.Path] = []
    real = partition_module.fsync_path

    def record(path):
        synced.append(path)
        return real(path)

    monkeypatch.setattr(partition_module, "fsync_path", record)
    plog.flush()
    assert synced, "the other sealed segments and the active one are still flushed"
    # Were the old objects still on the unsynced list, their paths (the same names
    # as the new files') would be fsynced a second time.
    assert len(synced) == len(set(synced)), synced
    assert old_paths <= set(synced), "flushed once, as segments above the recovery point"
    assert not plog.dirty
    plog.close()


class _Crash(BaseException):
    """The process dies here (not an error replace_segments handles)."""


@contextlib.contextmanager
def _dies_after(steps: int) -> Iterator[list[str]]:
    """Count the file-system steps of a swap (renames, unlinks); die after ``steps``."""
    done: list[str] = []
    real_rename, real_unlink = os.rename, pathlib.Path.unlink

    def step(what: str) -> None:
        if len(done) == steps:
            raise _Crash(what)
        done.append(what)

    def rename(src, dst):
        step(f"rename {pathlib.Path(src).name} -> {pathlib.Path(dst).name}")
        real_rename(src, dst)

    def unlink(self, missing_ok=False):
        step(f"unlink {self.name}")
        real_unlink(self, missing_ok=missing_ok)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(segment_module.os, "rename", rename)
        mp.setattr(pathlib.Path, "unlink", unlink)
        yield done


def _swap_steps(tmp_path: pathlib.Path) -> int:
    plog = _log(tmp_path / "count")
    old = list(plog.sealed_segments()[1:3])
    new = [_cleaned(s, _even) for s in old]
    with _dies_after(10_000) as done:
        plog.replace_segments(new, old)
    plog.close()
    return len(done)


def test_a_swap_has_the_steps_it_claims(tmp_path):
    # Two segments: 3 renames each to .swap, 3 unlinks each of the old, 3 renames each to final.
    assert _swap_steps(tmp_path) == 18


@pytest.mark.parametrize("steps", range(13))
def test_a_crash_at_each_step_of_a_merge_opens_as_old_or_new(tmp_path, steps):
    # One new segment for two old ones: 3 renames to .swap, 6 unlinks, 3 renames to final.
    directory = tmp_path / "p"
    plog = _log(directory)
    everything = _offsets(plog)
    old = list(plog.sealed_segments()[1:3])
    whole = range(old[0].base_offset, old[1].next_offset)
    merged = _merged(old, _even)
    with _dies_after(steps) as done:
        try:
            plog.replace_segments([merged], old)
        except _Crash:
            pass
    assert len(done) == min(steps, 12)
    reopened = PartitionLog(directory, CONFIG, clean_shutdown=False)
    assert not [n for n in os.listdir(directory) if n.endswith((CLEANED_SUFFIX, SWAP_SUFFIX))]
    got = _offsets(reopened)
    kept = [o for o in got if o in whole]
    assert kept in (list(whole), [o for o in whole if _even(o)]), (steps, kept)
    assert [o for o in got if o not in whole] == [o for o in everything if o not in whole]
    _check_structure(reopened)
    reopened.close()


@pytest.mark.parametrize("steps", range(19))
def test_a_crash_at_each_step_opens_as_old_or_new_segments(tmp_path, steps):
    directory = tmp_path / "p"
    plog = _log(directory)
    everything = _offsets(plog)
    old = list(plog.sealed_segments()[1:3])
    ranges = [range(s.base_offset, s.next_offset) for s in old]
    new = [_cleaned(s, _even) for s in old]
    with _dies_after(steps):
        try:
            plog.replace_segments(new, old)
        except _Crash:
            pass
    # The process is gone: nothing of plog is closed or flushed; open the directory afresh.
    reopened = PartitionLog(directory, CONFIG, clean_shutdown=False)
    names = os.listdir(directory)
    assert not [n for n in names if n.endswith((CLEANED_SUFFIX, SWAP_SUFFIX))], names
    got = _offsets(reopened)
    expected = []
    for offset in everything:
        r = next((r for r in ranges if offset in r), None)
        if r is None:
            expected.append(offset)
            continue
        kept = [o for o in got if o in r]
        # Each replaced segment comes back whole: all its old offsets, or the cleaned ones.
        assert kept in (list(r), [o for o in r if _even(o)]), (steps, kept)
        if offset in kept:
            expected.append(offset)
    assert got == expected
    if steps >= 18:
        assert got == [o for o in everything if not any(o in r for r in ranges) or _even(o)]
    if steps <= 2:
        assert got == everything, "nothing was committed yet"
    _check_structure(reopened)
    reopened.close()


def _abort_entries(plog: PartitionLog) -> list[AbortedTxn]:
    """One aborted-transaction entry in each of the first four segments, each
    ending on an even offset (the marker, which the merges here keep)."""
    entries = []
    for n, segment in enumerate(plog.sealed_segments()[:4]):
        marker = segment.base_offset + 2
        entry = AbortedTxn(100 + n, segment.base_offset, marker, marker + 1)
        plog.txn_index.append(segment.base_offset, entry)
        entries.append(entry)
    return entries


def _check_txn_index(plog: PartitionLog, entries: list[AbortedTxn]) -> None:
    """Every entry once, in the file of the segment that holds its marker, and
    no file for a segment that is gone."""
    got = plog.txn_index.entries()
    assert sorted(e for _, e in got) == sorted(entries)
    for base, entry in got:
        holder = next(s for s in plog.segments if s.base_offset <= entry.last_offset < s.next_offset)
        assert holder.base_offset == base, (base, entry)
    files = {n for n in os.listdir(plog.directory) if n.endswith(".txnindex")}
    assert files == {f"{b:020d}.txnindex" for b, _ in got}


def test_merging_segments_takes_their_aborted_transactions_along(tmp_path):
    plog = _log(tmp_path / "p")
    entries = _abort_entries(plog)
    old = list(plog.sealed_segments()[1:3])
    plog.replace_segments([_merged(old, _even)], old)
    _check_txn_index(plog, entries)
    assert [e for b, e in plog.txn_index.entries() if b == old[0].base_offset] == entries[1:3], "in file order"
    assert not (tmp_path / "p" / f"{old[1].base_offset:020d}.txnindex").exists()
    plog.close()
    reopened = PartitionLog(tmp_path / "p", CONFIG, clean_shutdown=True)
    _check_txn_index(reopened, entries)
    reopened.close()


def test_a_merge_whose_disk_refuses_before_the_commit_leaves_the_aborted_transactions(tmp_path, monkeypatch):
    plog = _log(tmp_path / "p")
    entries = _abort_entries(plog)
    old = list(plog.sealed_segments()[1:3])
    names = sorted(os.listdir(tmp_path / "p"))
    merged = _merged(old, _even)
    real = os.rename

    def refuse(src, dst):
        if str(dst).endswith(".log" + SWAP_SUFFIX):
            raise OSError(28, "No space left on device")
        real(src, dst)

    monkeypatch.setattr(segment_module.os, "rename", refuse)
    with pytest.raises(StorageError):
        plog.replace_segments([merged], old)
    monkeypatch.undo()
    merged.delete()
    assert sorted(os.listdir(tmp_path / "p")) == names, "the staged .txnindex is gone too"
    _check_txn_index(plog, entries)
    plog.close()


@pytest.mark.parametrize("steps", range(16))
def test_a_crash_at_each_step_of_a_merge_keeps_the_aborted_transactions(tmp_path, steps):
    # 1 rename of the merged .txnindex to .swap, 3 of the segment, 6 unlinks, 3 renames
    # to final names, 1 of the .txnindex, then the merged-away segment's .txnindex unlinked.
    directory = tmp_path / "p"
    plog = _log(directory)
    entries = _abort_entries(plog)
    everything = _offsets(plog)
    old = list(plog.sealed_segments()[1:3])
    whole = range(old[0].base_offset, old[1].next_offset)
    merged = _merged(old, _even)
    with _dies_after(steps) as done:
        try:
            plog.replace_segments([merged], old)
        except _Crash:
            pass
    assert len(done) == min(steps, 15), done
    if steps == 15:
        _check_txn_index(plog, entries)
    reopened = PartitionLog(directory, CONFIG, clean_shutdown=False)
    assert not [n for n in os.listdir(directory) if n.endswith((CLEANED_SUFFIX, SWAP_SUFFIX))]
    got = _offsets(reopened)
    kept = [o for o in got if o in whole]
    assert kept in (list(whole), [o for o in whole if _even(o)]), (steps, kept)
    assert [o for o in got if o not in whole] == [o for o in everything if o not in whole]
    _check_structure(reopened)
    _check_txn_index(reopened, entries)
    reopened.close()
