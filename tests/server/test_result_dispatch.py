"""The handler result family and the one place that completes it
(``Dispatcher.resolve``): Reply (with fsyncs, wake-ups, a fallback when an
fsync fails), FetchOperation (attempted now, again after the connection sent,
then long-polled), Deferred (waited for, then resolved like the rest), and a
bare body (made a Reply by ``dispatch``)."""

from __future__ import annotations

import pytest
import trio

from logbroker.broker.deferred import Deferred
from logbroker.broker.handlers import FetchOperation, Reply, as_result
from logbroker.errors import InternalError, StorageError
from logbroker.protocol import ApiKey, decode_request, encode_request

from server_support import req


@pytest.fixture
def env(make_env):
    return make_env()


@pytest.fixture
def request_():
    body = req(ApiKey.HEARTBEAT, 4, "HeartbeatRequest", group_id="g", generation_id=1, member_id="m")
    return decode_request(encode_request(ApiKey.HEARTBEAT, 4, 7, "c", body)[4:])


class FakeLog:
    """A partition log whose fsync is recorded, or fails."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.flushed: list[int] = []

    def flush(self, offset: int) -> None:
        if self.fail:
            raise StorageError("disk on fire")
        self.flushed.append(offset)


class FakeFetch(FetchOperation):
    """A FetchOperation whose attempts return the queued answers in turn."""

    __slots__ = ("answers", "finals", "flush")

    def __init__(self, answers, *, wait_ms=1000, watch=(("t", 0),), flush=()) -> None:
        self.answers = list(answers)
        self.finals: list[bool] = []
        self.wait_ms = wait_ms
        self.min_bytes = 1
        self.watch = list(watch)
        self.flush = list(flush)

    def attempt(self, *, final: bool):
        self.finals.append(final)
        return self.answers.pop(0) if self.answers else ("final" if final else None)


def test_a_bare_body_becomes_a_reply_and_members_pass_unchanged():
    assert as_result("body") == Reply("body")
    assert as_result(None) == Reply(None)
    for member in (Reply("x"), Deferred(), FakeFetch([])):
        assert as_result(member) is member


async def test_a_reply_wakes_the_fetches_of_what_it_appended(env, request_):
    woken = []
    env.waiters.notify = woken.extend
    assert await env.dispatcher.resolve(request_, Reply("body", appended=[("t", 0)])) == "body"
    assert woken == [("t", 0)]


async def test_a_reply_is_sent_after_its_fsyncs_and_the_connection_sends_first(env, request_):
    plog = FakeLog()
    order = []

    async def before_wait():
        order.append("sent held responses")
        return True

    body = await env.dispatcher.resolve(request_, Reply("body", flush=[(plog, 5)]), before_wait)
    assert body == "body" and plog.flushed == [5] and order == ["sent held responses"]


async def test_a_failed_fsync_answers_the_fallback_or_closes(env, request_):
    failing = [(FakeLog(fail=True), 5)]
    reply = Reply("acknowledged", flush=failing, if_flush_fails=lambda: "storage error")
    assert await env.dispatcher.resolve(request_, reply) == "storage error"
    with pytest.raises(InternalError, match="fsync failed"):
        await env.dispatcher.resolve(request_, Reply("acknowledged", flush=failing))


async def test_a_fetch_with_data_answers_at_once_without_waiting(env, request_):
    op = FakeFetch(["data"])

    async def before_wait():  # pragma: no cover - must not be called
        raise AssertionError("a fetch with data does not wait")

    assert await env.dispatcher.resolve(request_, op, before_wait) == "data"
    assert op.finals == [False]


async def test_a_fetch_is_attempted_again_after_the_connection_sent(env, request_):
    op = FakeFetch([None, "arrived while sending"])

    async def before_wait():
        return True

    assert await env.dispatcher.resolve(request_, op, before_wait) == "arrived while sending"


async def test_a_fetch_long_polls_until_a_watched_partition_grows(env, request_):
    op = FakeFetch([None, "grown"], wait_ms=10_000)
    async with trio.open_nursery() as nursery:
        got = []

        async def resolve():
            got.append(await env.dispatcher.resolve(request_, op))

        nursery.start_soon(resolve)
        await trio.sleep(0.01)
        assert not got
        env.waiters.notify([("t", 0)])
    assert got == ["grown"]


async def test_a_fetch_that_finds_nothing_answers_finally_after_its_wait(env, request_):
    op = FakeFetch([None], wait_ms=20)
    assert await env.dispatcher.resolve(request_, op) == "final"
    assert op.finals[-1] is True


async def test_a_fetch_flushes_before_its_first_attempt(env, request_):
    plog = FakeLog()
    op = FakeFetch(["data"], flush=[(plog, 3)])
    assert await env.dispatcher.resolve(request_, op) == "data"
    assert plog.flushed == [3]


async def test_a_deferred_is_waited_for_then_resolved_like_any_result(env, request_):
    deferred = Deferred()
    plog = FakeLog()
    sent = []

    async def before_wait():
        sent.append(True)
        return True

    async with trio.open_nursery() as nursery:
        got = []

        async def resolve():
            got.append(await env.dispatcher.resolve(request_, deferred, before_wait))

        nursery.start_soon(resolve)
        await trio.sleep(0.01)
        assert not got and sent == [True]  # the connection sent what it held before waiting
        deferred.complete(Reply("joined", flush=[(plog, 9)]))
    assert got == ["joined"] and plog.flushed == [9] and sent == [True]


async def test_a_completed_deferred_with_a_bare_body(env, request_):
    assert await env.dispatcher.resolve(request_, Deferred.completed("body")) == "body"
