"""Incremental fetch sessions (KIP-227) with request bytes, no sockets: the
Fetch handler with the broker's FetchSessionCache, and the cache alone."""

import random

import pytest

from logbroker.broker.fetch_sessions import (
    FetchSessionCache,
    FetchSessionError,
    FullFetch,
    IncrementalFetch,
    PartitionRequest,
    SessionErrorContext,
    Sessionless,
    CachedPartition,
    next_epoch,
)
from logbroker.broker.handlers import FetchOperation, dispatch
from logbroker.broker.session import RequestContext
from logbroker.protocol import ErrorCode, decode_request, decode_response, encode_request, encode_response
from logbroker.records import build_batch, decode_batches

PRODUCE, FETCH, CREATE_TOPICS, DELETE_TOPICS, DELETE_RECORDS = 0, 1, 19, 20, 21


def batch(n=2):
    return build_batch([(b"k", b"v%d" % i, [], 1000 + i) for i in range(n)])


def create(h, name, partitions=1):
    topic = h.req(CREATE_TOPICS, 7, "CreatableTopic", name=name, num_partitions=partitions,
                  replication_factor=1, assignments=(), configs=())
    assert h.call(CREATE_TOPICS, 7, "CreateTopicsRequest", topics=(topic,), timeout=1000).topics[0].error_code == 0


def produce(h, topic, partition=0, n=2):
    part = h.req(PRODUCE, 9, "PartitionProduceData", index=partition, records=batch(n))
    data = h.req(PRODUCE, 9, "TopicProduceData", name=topic, partition_data=(part,))
    resp = h.call(PRODUCE, 9, "ProduceRequest", acks=-1, timeout=1000, topic_data=(data,))
    assert resp.responses[0].partition_responses[0].error_code == 0


def fetch_op(h, session_id, epoch, parts=(), forgotten=(), version=12, max_wait=0, min_bytes=0, max_bytes=1 << 20):
    """Dispatch a Fetch; the FetchOperation. ``parts``: (topic, partition, offset)."""
    topics = {}
    for topic, partition, offset in parts:
        topics.setdefault(topic, []).append(h.req(FETCH, version, "FetchPartition", partition=partition,
                                                  fetch_offset=offset, partition_max_bytes=1 << 20,
                                                  log_start_offset=-1))
    by_topic = {}
    for topic, partition in forgotten:
        by_topic.setdefault(topic, []).append(partition)
    fields = dict(max_wait=max_wait, min_bytes=min_bytes, max_bytes=max_bytes,
                  topics=tuple(h.req(FETCH, version, "FetchTopic", topic=t, partitions=tuple(ps))
                               for t, ps in topics.items()))
    if version >= 7:
        fields.update(session_id=session_id, session_epoch=epoch, forgotten_topics_data=tuple(
            h.req(FETCH, version, "ForgottenTopic", topic=t, partitions=tuple(ps)) for t, ps in by_topic.items()))
    body = h.req(FETCH, version, "FetchRequest", **fields)
    frame = encode_request(FETCH, version, 7, "test", body)
    request = decode_request(frame[4:])
    op = dispatch(h.broker, request, RequestContext.for_request(request, h.session))
    assert isinstance(op, FetchOperation)
    return request, op


def decode(request, body):
    payload = b"".join(bytes(p) for p in encode_response(request, body))[4:]
    return decode_response(FETCH, request.api_version, payload)[1]


def fetch(h, session_id, epoch, parts=(), forgotten=(), version=12):
    request, op = fetch_op(h, session_id, epoch, parts, forgotten, version)
    return decode(request, op.attempt(final=True))


def listed(resp):
    """{(topic, partition): (error, high watermark, log start, record offsets)}."""
    out = {}
    for t in resp.responses:
        for p in t.partitions:
            offsets = [r.offset for b in decode_batches(bytes(p.records or b"")) for r in b.records]
            out[(t.topic, p.partition_index)] = (p.error_code, p.high_watermark, getattr(p, "log_start_offset", 0), offsets)
    return out


ALL = [("a", 0, 0), ("a", 1, 0), ("a", 2, 0), ("b", 0, 0), ("b", 1, 0)]


@pytest.fixture
def topics(h):
    create(h, "a", 3)
    create(h, "b", 2)
    return h


def test_full_fetch_creates_a_session_then_incremental_lists_only_changes(topics):
    h = topics
    full = fetch(h, 0, 0, ALL)
    assert full.error_code == 0 and full.session_id != 0
    assert set(listed(full)) == {(t, p) for t, p, _ in ALL}
    sid = full.session_id
    # Nothing changed: an empty answer, same session.
    idle = fetch(h, sid, 1)
    assert (idle.error_code, idle.session_id, listed(idle)) == (0, sid, {})
    # Records arrive in one partition: only it is listed, with them.
    produce(h, "b", 1, n=3)
    resp = fetch(h, sid, 2)
    assert resp.session_id == sid
    assert listed(resp) == {("b", 1): (0, 3, 0, [0, 1, 2])}
    # The client moves its offset on; nothing new: empty again.
    assert listed(fetch(h, sid, 3, [("b", 1, 3)])) == {}
    # Records again in another partition: it alone, from the cached offset.
    produce(h, "a", 2)
    assert listed(fetch(h, sid, 4)) == {("a", 2): (0, 2, 0, [0, 1])}


def test_changed_log_start_offset_is_listed_without_records(topics):
    h = topics
    produce(h, "a", 0, n=4)
    sid = fetch(h, 0, 0, [("a", 0, 4), ("a", 1, 0)]).session_id
    assert listed(fetch(h, sid, 1)) == {}
    part = h.req(DELETE_RECORDS, 2, "DeleteRecordsPartition", partition_index=0, offset=2)
    topic = h.req(DELETE_RECORDS, 2, "DeleteRecordsTopic", name="a", partitions=(part,))
    h.call(DELETE_RECORDS, 2, "DeleteRecordsRequest", topics=(topic,), timeout=1000)
    assert listed(fetch(h, sid, 2)) == {("a", 0): (0, 4, 2, [])}
    assert listed(fetch(h, sid, 3)) == {}


def test_added_and_forgotten_partitions(topics):
    h = topics
    sid = fetch(h, 0, 0, [("a", 0, 0)]).session_id
    # An added partition is listed once (the client knows nothing of it yet).
    assert set(listed(fetch(h, sid, 1, [("b", 0, 0)]))) == {("b", 0)}
    assert listed(fetch(h, sid, 2)) == {}
    # A forgotten one is never listed again, whatever arrives in it.
    assert listed(fetch(h, sid, 3, forgotten=[("b", 0)])) == {}
    produce(h, "b", 0)
    produce(h, "a", 0)
    assert set(listed(fetch(h, sid, 4))) == {("a", 0)}
    # Forgetting every partition closes the session; that answer has none.
    last = fetch(h, sid, 5, forgotten=[("a", 0)])
    assert (last.error_code, last.session_id) == (0, 0)
    assert fetch(h, sid, 6).error_code == ErrorCode.fetch_session_id_not_found


def test_session_errors_as_kafka_answers_them(topics):
    h = topics
    unknown = fetch(h, 12345, 1)
    assert (unknown.error_code, unknown.session_id, listed(unknown)) == (ErrorCode.fetch_session_id_not_found, 0, {})
    sid = fetch(h, 0, 0, ALL).session_id
    wrong = fetch(h, sid, 5)
    assert (wrong.error_code, wrong.session_id, listed(wrong)) == (ErrorCode.invalid_fetch_session_epoch, 0, {})
    # A wrong epoch does not break the session: the right one still works.
    assert fetch(h, sid, 1).error_code == 0
    # A repeated request (the epoch moved on) is refused too.
    assert fetch(h, sid, 1).error_code == ErrorCode.invalid_fetch_session_epoch
    assert fetch(h, sid, 2).error_code == 0


def test_epoch_minus_one_closes_and_epoch_zero_with_id_replaces(topics):
    h = topics
    sid = fetch(h, 0, 0, ALL).session_id
    # epoch 0 with id S: S closed, a new session made.
    again = fetch(h, sid, 0, ALL)
    assert again.session_id not in (0, sid)
    assert fetch(h, sid, 1).error_code == ErrorCode.fetch_session_id_not_found
    # epoch -1 with id S: S closed, answered without a session (every partition).
    last = fetch(h, again.session_id, -1, ALL)
    assert (last.error_code, last.session_id) == (0, 0) and len(listed(last)) == len(ALL)
    assert fetch(h, again.session_id, 1).error_code == ErrorCode.fetch_session_id_not_found
    # epoch -1 with no id: today's sessionless fetch.
    plain = fetch(h, 0, -1, ALL)
    assert (plain.session_id, len(listed(plain))) == (0, len(ALL))
    assert len(h.broker.fetch_sessions) == 0


def test_versions_before_7_never_get_a_session(topics):
    h = topics
    for version in (4, 5, 6):
        resp = fetch(h, 0, 0, ALL, version=version)
        assert len(listed(resp)) == len(ALL)
    assert len(h.broker.fetch_sessions) == 0
    assert fetch(h, 0, 0, ALL, version=7).session_id != 0


def test_no_sessions_with_zero_slots(make_broker):
    h = make_broker(max_incremental_fetch_session_cache_slots=0)
    create(h, "a", 3)
    resp = fetch(h, 0, 0, [("a", 0, 0), ("a", 1, 0)])
    assert (resp.session_id, len(listed(resp))) == (0, 2)
    assert fetch(h, 5, 1).error_code == ErrorCode.fetch_session_id_not_found


def test_deleting_a_topic_closes_the_sessions_holding_it(topics):
    h = topics
    with_b = fetch(h, 0, 0, ALL).session_id
    only_a = fetch(h, 0, 0, [("a", 0, 0)]).session_id
    h.call(DELETE_TOPICS, 6, "DeleteTopicsRequest", topics=(h.req(DELETE_TOPICS, 6, "DeleteTopicState", name="b"),),
           timeout_ms=1000)
    assert fetch(h, with_b, 1).error_code == ErrorCode.fetch_session_id_not_found
    assert fetch(h, only_a, 1).error_code == 0
    # The client starts over with a full fetch; b is now unknown.
    again = listed(fetch(h, 0, 0, ALL))
    assert again[("b", 0)][0] == ErrorCode.unknown_topic_or_partition and again[("a", 0)][0] == 0


def test_errors_are_listed_every_time(topics):
    h = topics
    sid = fetch(h, 0, 0, [("a", 0, 0), ("a", 7, 0)]).session_id
    for epoch in (1, 2):
        assert listed(fetch(h, sid, epoch)) == {("a", 7): (ErrorCode.unknown_topic_or_partition, -1, -1, [])}


def test_long_poll_of_an_incremental_fetch_waits_for_any_session_partition(topics):
    h = topics
    sid = fetch(h, 0, 0, ALL).session_id
    request, op = fetch_op(h, sid, 1, max_wait=500, min_bytes=1)
    assert (op.watch, op.watch_session) == ([], sid)  # the whole session is watched, registered once
    assert op.attempt(final=False) is None  # nothing yet: the server waits
    produce(h, "a", 1)
    resp = decode(request, op.attempt(final=False))
    assert listed(resp) == {("a", 1): (0, 2, 0, [0, 1])}
    # Until the client moves its offset on, the records are listed again.
    assert set(listed(fetch(h, sid, 2))) == {("a", 1)}
    assert listed(fetch(h, sid, 3, [("a", 1, 2)])) == {}


def test_a_request_overtaken_by_the_next_epoch_answers_invalid_epoch(topics):
    h = topics
    sid = fetch(h, 0, 0, ALL).session_id
    request, parked = fetch_op(h, sid, 1, max_wait=500, min_bytes=1)
    assert parked.attempt(final=False) is None
    assert fetch(h, sid, 2).error_code == 0
    resp = decode(request, parked.attempt(final=True))
    assert (resp.error_code, resp.session_id) == (ErrorCode.invalid_fetch_session_epoch, sid)


def test_records_returned_move_a_partition_to_the_end(topics):
    h = topics
    for p in (0, 1):
        produce(h, "a", p)
    sid = fetch(h, 0, 0, [("a", 0, 2), ("a", 1, 2), ("a", 2, 0)]).session_id
    produce(h, "a", 0)
    produce(h, "a", 2)
    assert set(listed(fetch(h, sid, 1))) == {("a", 0), ("a", 2)}
    session = h.broker.fetch_sessions.get(sid)
    assert [(c.topic, c.partition) for c in session] == [("a", 1), ("a", 0), ("a", 2)]


def test_an_incremental_fetch_reads_only_what_changed(topics):
    h = topics
    sid = fetch(h, 0, 0, ALL).session_id
    session = h.broker.fetch_sessions.get(sid)
    assert listed(fetch(h, sid, 1)) == {}  # every partition read once more after the full fetch
    assert session.to_read(h.broker.clock()) == []  # then none: nothing changed
    produce(h, "b", 0)
    produce(h, "a", 2)
    assert [(c.topic, c.partition) for c in session.to_read(h.broker.clock())] == [("b", 0), ("a", 2)]


def test_a_partition_with_records_left_is_read_until_the_client_moves_on(topics):
    h = topics
    sid = fetch(h, 0, 0, ALL).session_id
    fetch(h, sid, 1)
    produce(h, "a", 0, n=3)
    assert listed(fetch(h, sid, 2))[("a", 0)][3] == [0, 1, 2]
    assert listed(fetch(h, sid, 3))[("a", 0)][3] == [0, 1, 2]  # same cached offset: listed again
    assert listed(fetch(h, sid, 4, [("a", 0, 3)])) == {}
    assert listed(fetch(h, sid, 5)) == {}


def test_a_change_nobody_announced_is_seen_within_the_full_scan_interval(make_broker):
    from logbroker.broker.fetch_sessions import FULL_SCAN_INTERVAL_MS

    now = [1_000_000]
    h = make_broker()
    h.broker.clock = lambda: now[0]
    create(h, "a", 2)
    produce(h, "a", 0, n=4)
    sid = fetch(h, 0, 0, [("a", 0, 4), ("a", 1, 0)]).session_id
    assert listed(fetch(h, sid, 1)) == {}
    h.broker.partition("a", 0).delete_records_before(2)  # under the handlers: no announcement
    assert listed(fetch(h, sid, 2)) == {}
    now[0] += FULL_SCAN_INTERVAL_MS
    assert listed(fetch(h, sid, 3)) == {("a", 0): (0, 4, 2, [])}


def test_sessions_holding_a_partition_are_the_ones_woken():
    cache = FetchSessionCache(10, rng=random.Random(3))
    first = cache.create(parts(3), False, 0)
    second = cache.create(parts(2), False, 0)
    assert cache.partitions_changed([("t", 2)]) == {first}
    assert cache.partitions_changed([("t", 0), ("x", 0)]) == {first, second}
    context = cache.new_context(12, first, 1, [], [("t", 2)], 0)
    assert isinstance(context, IncrementalFetch)
    assert cache.partitions_changed([("t", 2)]) == set()
    cache.remove(second)
    assert cache.partitions_changed([("t", 0)]) == {first}


# -- the cache alone ------------------------------------------------------------------


def parts(n, topic="t"):
    return [CachedPartition(PartitionRequest(topic, i, 0, 100)) for i in range(n)]


def test_cache_contexts():
    cache = FetchSessionCache(10, rng=random.Random(1))
    assert isinstance(cache.new_context(6, 0, 0, [], [], 0), Sessionless)
    assert isinstance(cache.new_context(12, 0, -1, [], [], 0), Sessionless)
    assert cache.new_context(12, 0, 0, [], [], 0) == FullFetch(uses_topic_ids=False)
    assert cache.new_context(13, 0, 0, [], [], 0) == FullFetch(uses_topic_ids=True)
    sid = cache.create(parts(3), False, 0)
    assert cache.new_context(12, sid + 1, 1, [], [], 0) == SessionErrorContext(FetchSessionError.NOT_FOUND)
    assert cache.new_context(12, sid, 2, [], [], 0) == SessionErrorContext(FetchSessionError.INVALID_EPOCH)
    # A session made without topic ids cannot go on with them (v13+), and the reverse.
    assert cache.new_context(13, sid, 1, [], [], 0) == SessionErrorContext(FetchSessionError.TOPIC_ID_ERROR)
    with_ids = cache.create(parts(2), True, 0)
    assert cache.new_context(12, with_ids, 1, [], [], 0) == SessionErrorContext(FetchSessionError.TOPIC_ID_ERROR)
    context = cache.new_context(13, with_ids, 1, [], [], 5)
    assert isinstance(context, IncrementalFetch) and context.epoch == 2 and context.session.last_used_ms == 5


def test_cache_epochs_wrap_to_one():
    assert next_epoch(0) == 1 and next_epoch(2**31 - 1) == 1 and next_epoch(-1) == -1


def test_cache_eviction_prefers_stale_then_smaller_old_sessions():
    cache = FetchSessionCache(2, eviction_ms=1000, rng=random.Random(2))
    small = cache.create(parts(2), False, now_ms=0)
    big = cache.create(parts(50), False, now_ms=0)
    # Full, every session young: no room for a newcomer of any size.
    assert cache.create(parts(100), False, now_ms=500) == 0
    # Old enough: a larger newcomer evicts the smallest; an equal or smaller one does not.
    cache.new_context(12, small, 1, [], [], 1500)
    cache.new_context(12, big, 1, [], [], 1500)
    assert cache.create(parts(2), False, now_ms=1600) == 0
    bigger = cache.create(parts(3), False, now_ms=1600)
    assert bigger and cache.get(small) is None and cache.get(big) is not None
    assert cache.evictions == 1
    # A session unused for longer than eviction_ms goes first, whatever its size.
    cache.new_context(12, bigger, 1, [], [], 2000)
    assert cache.create(parts(1), False, now_ms=2600) != 0  # big last used at 1500: stale
    assert cache.get(big) is None and cache.get(bigger) is not None


def test_cache_topic_deleted_closes_sessions_holding_it():
    cache = FetchSessionCache(10)
    a = cache.create(parts(2, "a"), False, 0)
    ab = cache.create(parts(2, "a") + parts(1, "b"), False, 0)
    assert cache.topic_deleted("b") == 1
    assert cache.get(ab) is None and cache.get(a) is not None


def test_session_topics_follow_added_and_forgotten_partitions():
    """A session knows its topics without a pass over its partitions (an
    incremental fetch asks for them every time, to decide read permissions)."""
    cache = FetchSessionCache(10)
    sid = cache.create(parts(2, "a") + parts(1, "b"), False, 0)
    session = cache.get(sid)
    assert set(session.topics()) == {"a", "b"}
    cache.new_context(12, sid, 1, [PartitionRequest("c", 0, 0, 100), PartitionRequest("a", 0, 5, 100)],
                      [("b", 0), ("a", 1), ("x", 9)], 0)
    assert set(session.topics()) == {"a", "c"}
    assert session.has_topic("c") and not session.has_topic("b")
    assert cache.topic_deleted("b") == 0  # no longer held: the session stays
    cache.new_context(12, sid, 2, [], [("a", 0)], 0)
    assert set(session.topics()) == {"c"} and len(session) == 1
