"""Hypothesis properties: reads after random appends and rolls; recovery after a cut."""

import os
import shutil
import tempfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logbroker.records import iter_batches
from logbroker.storage import LogConfig, PartitionLog

from .conftest import batch_spans, make_batch

_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _append_all(path, config, plan):
    log = PartitionLog(path, config)
    spans = []
    for records, value_size, roll in plan:
        info = log.append(make_batch(records=records, value_size=value_size), now_ms=0)
        spans.append((info.base_offset, info.last_offset))
        if roll:
            log.roll()
    return log, spans


@_SETTINGS
@given(
    plan=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 400), st.integers(0, 9).map(lambda n: n == 0)), min_size=1, max_size=40),
    segment_bytes=st.integers(3500, 12000),
    interval=st.integers(0, 600),
)
def test_every_offset_reads_back_to_its_batch(plan, segment_bytes, interval):
    tmp = tempfile.mkdtemp()
    try:
        config = LogConfig(segment_bytes=segment_bytes, index_interval_bytes=interval)
        log, spans = _append_all(os.path.join(tmp, "p"), config, plan)
        end = spans[-1][1] + 1
        for reopen in (False, True):
            for lo, hi in spans:
                for offset in (lo, hi, (lo + hi) // 2):
                    got = batch_spans(log.read(offset, 1).records)
                    assert got[0] == (lo, hi)
            assert log.log_end_offset == end
            if not reopen:
                log.close()
                log = PartitionLog(os.path.join(tmp, "p"), config, recovery_point=end, clean_shutdown=True)
        log.close()
    finally:
        shutil.rmtree(tmp)


@_SETTINGS
@given(
    sizes=st.lists(st.tuples(st.integers(1, 5), st.integers(0, 300)), min_size=1, max_size=25),
    cut=st.floats(0, 1),
)
def test_recovery_keeps_exactly_the_complete_batches_before_a_cut(sizes, cut):
    tmp = tempfile.mkdtemp()
    try:
        config = LogConfig(index_interval_bytes=100)
        log, spans = _append_all(os.path.join(tmp, "p"), config, [(r, v, False) for r, v in sizes])
        path = log.segments[-1].path
        total = log.size_bytes
        ends, pos = [], 0
        for _, h in iter_batches(log.read(0, 1 << 30).records):
            pos += h.size
            ends.append(pos)
        log.close(flush=False)
        at = int(cut * total)
        os.truncate(path, at)
        kept = sum(1 for e in ends if e <= at)
        again = PartitionLog(os.path.join(tmp, "p"), config)
        expected_end = spans[kept - 1][1] + 1 if kept else 0
        assert again.log_end_offset == expected_end
        assert again.size_bytes == (ends[kept - 1] if kept else 0)
        assert again.recovery_report.truncated_bytes == at - (ends[kept - 1] if kept else 0)
        if kept:
            assert batch_spans(again.read(0, 1 << 30).records) == spans[:kept]
        again.close()
    finally:
        shutil.rmtree(tmp)
