"""Request-reply over topics against a real broker: many outstanding requests,
several responders, timeouts and handler errors."""

import contextlib

import pytest
import trio

from logbroker.client import Admin
from logbroker.client.reply import RemoteHandlerError, Requester, RequestTimeoutError, Responder


async def _topic(bootstrap, name, partitions=3):
    async with Admin(bootstrap) as admin:
        await admin.create_topic(name, partitions)


async def test_200_concurrent_requests_three_responders(broker):
    await _topic(broker.bootstrap, "rpc", 3)
    served_by = {}

    def make_handler(name):
        def handler(record):
            served_by.setdefault(name, 0)
            served_by[name] += 1
            return b"echo:" + record.value
        return handler

    replies = {}
    with trio.fail_after(60):
        async with contextlib.AsyncExitStack() as stack:
            responders = [
                await stack.enter_async_context(
                    Responder(broker.bootstrap, "rpc", make_handler(f"r{i}"), group_id="rpc-workers"))
                for i in range(3)
            ]
            requester = await stack.enter_async_context(Requester(broker.bootstrap, timeout_ms=30_000))
            async with trio.open_nursery() as nursery:
                for r in responders:
                    nursery.start_soon(r.run)

                async def one(i):
                    reply = await requester.request("rpc", b"%d" % i, key=b"%d" % i)
                    replies[i] = reply.value

                async with trio.open_nursery() as requests:
                    for i in range(200):
                        requests.start_soon(one, i)
                nursery.cancel_scope.cancel()
    assert replies == {i: b"echo:%d" % i for i in range(200)}
    assert sum(served_by.values()) == 200


async def test_timeout_and_handler_error(broker):
    await _topic(broker.bootstrap, "slow", 1)
    await _topic(broker.bootstrap, "failing", 1)

    async def fail(record):
        raise ValueError("no such order: " + record.value.decode())

    with trio.fail_after(60):
        async with Requester(broker.bootstrap, timeout_ms=500) as requester:
            with pytest.raises(RequestTimeoutError):
                await requester.request("slow", b"nobody answers")
            async with Responder(broker.bootstrap, "failing", fail, group_id="f") as responder:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(responder.run)
                    requester.timeout_ms = 20_000
                    with pytest.raises(RemoteHandlerError, match="ValueError: no such order: 42"):
                        await requester.request("failing", b"42")
                    nursery.cancel_scope.cancel()


def test_cli_request_and_reply(broker):
    import subprocess
    import sys
    import time

    from click.testing import CliRunner

    from logbroker.cli import main

    b = broker.bootstrap
    assert CliRunner().invoke(main, ["topics", "create", "upper", "-b", b]).exit_code == 0
    server = subprocess.Popen([sys.executable, "-m", "logbroker", "reply", "upper", "--max-requests", "1",
                               "-b", b, "--", "tr", "a-z", "A-Z"], stderr=subprocess.PIPE, text=True)
    try:
        assert "answering" in server.stderr.readline()
        time.sleep(0.5)
        result = subprocess.run([sys.executable, "-m", "logbroker", "request", "upper", "hello", "-b", b,
                                 "--timeout-ms", "20000"], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "HELLO"
        assert server.wait(timeout=30) == 0
    finally:
        server.kill()
