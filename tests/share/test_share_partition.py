"""The share-partition state machine with explicit time: no broker, no log."""

from __future__ import annotations

import numpy as np
import pytest

from logbroker.broker.share import (
    ACK_ACCEPT, ACK_GAP, ACK_REJECT, ACK_RELEASE, ACK_RENEW, ACKNOWLEDGED, ACQUIRED, ARCHIVED, AVAILABLE,
    AcquiredRange, SharePartition,
)
from logbroker.broker.share.partition import REASON_DELIVERY_LIMIT, REASON_REJECTED, merge_ranges

LOCK, LIMIT, MAX = 1000, 3, 2000


def acquire(sp, member, first, last, now=0, max_in_flight=MAX):
    return sp.acquire_batch(member, first, last, now, LOCK, max_in_flight)


def ack(sp, member, *batches, now=0, limit=LIMIT, renew=False):
    return sp.acknowledge(member, list(batches), now, LOCK, limit, allow_renew=renew)


def test_acquire_new_records_extends_the_window():
    sp = SharePartition(10)
    assert acquire(sp, "a", 10, 19) == [AcquiredRange(10, 19, 1)]
    assert (sp.start, sp.end) == (10, 20)
    assert sp.record(15) == (ACQUIRED, 1, "a")
    assert sp.acquired_by("a") == 10
    assert acquire(sp, "b", 10, 19) == []  # nothing available: all locked by a


def test_a_batch_behind_the_start_acquires_nothing():
    sp = SharePartition(100)
    assert acquire(sp, "a", 0, 99) == []
    assert acquire(sp, "a", 90, 104) == [AcquiredRange(100, 104, 1)]


def test_accept_acknowledges_and_the_start_advances():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 9)
    change = ack(sp, "a", (0, 4, (ACK_ACCEPT,)))
    assert change.error is None and (change.lo, change.hi) == (0, 4)
    assert (sp.start, sp.end) == (5, 10)
    assert not change.available and not change.archived


def test_release_makes_records_available_again_with_a_higher_count():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 9)
    change = ack(sp, "a", (0, 9, (ACK_RELEASE,)))
    assert change.available and sp.start == 0
    assert sp.record(3) == (AVAILABLE, 1, None)
    assert acquire(sp, "b", 0, 9) == [AcquiredRange(0, 9, 2)]
    assert sp.record(3) == (ACQUIRED, 2, "b")


def test_reject_archives_for_the_dead_letter_queue():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 4)
    change = ack(sp, "a", (0, 4, (ACK_ACCEPT, ACK_REJECT, ACK_ACCEPT, ACK_GAP, ACK_ACCEPT)))
    assert change.archived == [(1, 1, REASON_REJECTED)]  # the gap is archived without a reason
    assert sp.start == sp.end == 5
    assert sp.state_counts()[ACKNOWLEDGED] == 0  # all below start now


def test_lock_expiry_releases_at_the_deadline_not_before():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 9, now=100)
    assert sp.min_deadline() == 100 + LOCK
    assert not sp.expire(100 + LOCK - 1, LIMIT).changed
    change = sp.expire(100 + LOCK, LIMIT)
    assert change.available and (change.lo, change.hi) == (0, 9)
    assert sp.min_deadline() is None
    assert acquire(sp, "b", 0, 9, now=2000) == [AcquiredRange(0, 9, 2)]


def test_the_delivery_limit_archives_instead_of_releasing():
    sp = SharePartition(0)
    for delivery in range(1, LIMIT + 1):
        assert acquire(sp, "a", 0, 1, now=delivery * 10_000) == [AcquiredRange(0, 1, delivery)]
        change = sp.expire(delivery * 10_000 + LOCK, LIMIT)
    assert change.archived == [(0, LIMIT, REASON_DELIVERY_LIMIT), (1, LIMIT, REASON_DELIVERY_LIMIT)]
    assert not change.available
    assert sp.start == sp.end == 2


def test_release_at_the_limit_archives_too():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 0)
    change = ack(sp, "a", (0, 0, (ACK_RELEASE,)), limit=1)
    assert change.archived == [(0, 1, REASON_DELIVERY_LIMIT)]


def test_release_member_frees_only_its_records():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 4)
    acquire(sp, "b", 5, 9)
    change = sp.release_member("a", LIMIT)
    assert change.available and (change.lo, change.hi) == (0, 4)
    assert sp.record(2) == (AVAILABLE, 1, None)
    assert sp.record(7) == (ACQUIRED, 1, "b")


def test_acknowledgements_of_records_not_held_change_nothing():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 9)
    before = sp.runs().tobytes()
    for bad in (
        ("b", (0, 4, (ACK_ACCEPT,))),  # another member's records
        ("a", (5, 12, (ACK_ACCEPT,))),  # beyond the window
        ("a", (0, 4, (ACK_ACCEPT, ACK_ACCEPT))),  # wrong number of types
        ("a", (0, 0, (7,))),  # unknown type
        ("a", (0, 0, (ACK_RENEW,))),  # renew needs v2
    ):
        member, batch = bad
        # the first batch is valid, the second not: neither applies
        change = ack(sp, member, (0, 0, (ACK_ACCEPT,)), batch) if member == "a" else ack(sp, member, batch)
        assert change.error is not None
    assert sp.runs().tobytes() == before and sp.start == 0
    ack(sp, "a", (0, 9, (ACK_ACCEPT,)))
    assert ack(sp, "a", (0, 0, (ACK_ACCEPT,))).error is not None  # already acknowledged


def test_renew_extends_the_lock():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 4, now=0)
    ack(sp, "a", (0, 4, (ACK_RENEW,)), now=900, renew=True)
    assert sp.record(0) == (ACQUIRED, 1, "a")
    assert not sp.expire(LOCK, LIMIT).changed
    assert sp.expire(900 + LOCK, LIMIT).available


def test_in_window_records_are_acquired_before_new_ones_and_ranges_split_by_count():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 9)
    ack(sp, "a", (0, 9, (ACK_ACCEPT, ACK_RELEASE, ACK_RELEASE, ACK_ACCEPT, ACK_ACCEPT,
                         ACK_ACCEPT, ACK_ACCEPT, ACK_ACCEPT, ACK_RELEASE, ACK_ACCEPT)))
    assert sp.fetch_offset(MAX) == 1
    assert acquire(sp, "b", 0, 14) == [
        AcquiredRange(1, 2, 2), AcquiredRange(8, 8, 2), AcquiredRange(10, 14, 1)
    ]


def test_the_window_cap_stops_new_records_but_not_released_ones():
    sp = SharePartition(0)
    assert acquire(sp, "a", 0, 9, max_in_flight=10) == [AcquiredRange(0, 9, 1)]
    assert acquire(sp, "b", 10, 19, max_in_flight=10) == []
    assert sp.fetch_offset(10) is None
    ack(sp, "a", (3, 3, (ACK_RELEASE,)))
    assert sp.fetch_offset(10) == 3
    assert acquire(sp, "b", 0, 19, max_in_flight=10) == [AcquiredRange(3, 3, 2)]
    ack(sp, "a", (0, 2, (ACK_ACCEPT,)))
    assert acquire(sp, "b", 10, 19, max_in_flight=10) == [AcquiredRange(10, 19, 1)]


def test_a_hole_before_a_batch_is_archived():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 4)
    ack(sp, "a", (0, 4, (ACK_ACCEPT,)))
    assert acquire(sp, "a", 10, 14) == [AcquiredRange(10, 14, 1)]
    assert sp.start == 10  # 5..9 never existed


def test_move_start_skips_records_the_log_lost():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 9)
    assert sp.move_start(5)
    assert (sp.start, sp.end) == (5, 10)
    assert sp.move_start(50)
    assert (sp.start, sp.end) == (50, 50)
    assert not sp.move_start(40)


def test_runs_round_trip_through_a_snapshot_and_deltas():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 19)
    ack(sp, "a", (0, 3, (ACK_ACCEPT,)), (5, 6, (ACK_REJECT,)), (8, 9, (ACK_RELEASE,)))
    runs = sp.runs()
    # acquired and released records alike persist as available with their count
    assert runs.tolist() == [(4, 4, AVAILABLE, 1), (5, 6, ARCHIVED, 1), (7, 19, AVAILABLE, 1)]
    copy = SharePartition(0)
    copy.apply_runs(sp.start, runs, snapshot=True)
    assert (copy.start, copy.end) == (4, 20)
    assert copy.record(6) == (ARCHIVED, 1, None) and copy.record(9) == (AVAILABLE, 1, None)
    # a delta: 4 and 7..19 acknowledged, start moves on
    ack(sp, "a", (4, 4, (ACK_ACCEPT,)), (7, 7, (ACK_ACCEPT,)))
    acquire(sp, "a", 8, 9)
    ack(sp, "a", (8, 19, (ACK_ACCEPT,)))
    copy.apply_runs(sp.start, sp.runs(4, 19), snapshot=False)
    assert (copy.start, copy.end) == (sp.start, sp.end) == (20, 20)


def test_acquired_records_persist_as_available_with_their_count():
    sp = SharePartition(0)
    acquire(sp, "a", 0, 4)
    assert sp.runs().tolist() == [(0, 4, AVAILABLE, 1)]


def test_the_columns_grow_and_compact_without_losing_state():
    sp = SharePartition(0)
    for base in range(0, 20_000, 100):
        acquire(sp, "a", base, base + 99, max_in_flight=50_000)
        ack(sp, "a", (base, base + 98, (ACK_ACCEPT,)))  # leave one record in flight per batch
    assert sp.start == 99 and sp.end == 20_000
    assert sp.state_counts()[ACQUIRED] == 200
    ack(sp, "a", *[(b + 99, b + 99, (ACK_ACCEPT,)) for b in range(0, 20_000, 100)])
    assert sp.start == sp.end == 20_000
    assert len(sp._state) < 64_000


def test_merge_ranges_joins_adjacent_ranges_with_the_same_count():
    ranges = [AcquiredRange(0, 4, 1), AcquiredRange(5, 9, 1), AcquiredRange(10, 10, 2), AcquiredRange(12, 13, 2)]
    assert merge_ranges(ranges) == [AcquiredRange(0, 9, 1), AcquiredRange(10, 10, 2), AcquiredRange(12, 13, 2)]


@pytest.mark.parametrize("seed", range(5))
def test_random_commands_keep_the_invariants(seed):
    """Random acquire/ack/expire/release: no offset below start is open, counts
    never exceed the limit, every acquired record has an owner and a deadline."""
    rng = np.random.default_rng(seed)
    sp = SharePartition(0)
    now = 0
    members = ["a", "b", "c"]
    held: dict[str, list[int]] = {m: [] for m in members}
    for _ in range(400):
        now += int(rng.integers(0, 300))
        op = rng.integers(0, 4)
        member = members[int(rng.integers(0, 3))]
        if op == 0:
            first = int(rng.integers(max(sp.start - 5, 0), sp.end + 5))
            for r in acquire(sp, member, first, first + int(rng.integers(0, 20)), now=now, max_in_flight=200):
                held[member].extend(range(r.first, r.last + 1))
        elif op == 1 and held[member]:
            offsets = sorted(set(held[member]))
            held[member] = []
            batches = [(o, o, (int(rng.choice([ACK_ACCEPT, ACK_RELEASE, ACK_REJECT])),)) for o in offsets]
            ack(sp, member, *batches, now=now)  # may be refused if a lock expired meanwhile
        elif op == 2:
            sp.expire(now, LIMIT)
        else:
            sp.release_member(member, LIMIT)
            held[member] = []
        w = slice(sp.start - sp._base, sp.end - sp._base)
        states, counts = sp._state[w], sp._count[w]
        if sp.end > sp.start:
            assert states[0] in (AVAILABLE, ACQUIRED)
        assert (counts <= LIMIT).all()
        acquired = states == ACQUIRED
        assert (sp._owner[w][acquired] >= 0).all()
        assert (sp._deadline[w][acquired] < np.iinfo(np.int64).max).all()
        assert ((states != AVAILABLE) | (counts < LIMIT)).all()
