"""ConnectionLimits counts and refuses; the Watchdog closes what waited too long."""

from __future__ import annotations

import logging
import math

import trio

from logbroker.broker import BrokerConfig
from logbroker.server.limits import ConnectionLimits
from logbroker.server.metrics import Metrics
from logbroker.server.watchdog import Watch, Watchdog


def _config(tmp_path, **settings):
    return BrokerConfig(data_dir=str(tmp_path), **settings)


async def test_limits_in_all_per_address_and_before_login(tmp_path, caplog):
    metrics = Metrics()
    limits = ConnectionLimits(
        _config(tmp_path, max_connections=3, max_connections_per_ip=2, max_unauthenticated_connections_per_ip=1),
        metrics,
    )
    assert limits.admit("a", unauthenticated=True)
    assert not limits.admit("a", unauthenticated=True)  # one unauthenticated per address
    limits.authenticated("a")
    assert limits.admit("a", unauthenticated=True)
    assert not limits.admit("a", unauthenticated=False)  # two per address
    with caplog.at_level(logging.WARNING, logger="logbroker.server"):
        limits.log_refusals(trio.current_time() + 1)
    assert "the latest from a: max.connections.per.ip=2 reached" in caplog.text
    assert limits.admit("b", unauthenticated=False)
    assert not limits.admit("c", unauthenticated=False)  # three in all
    assert limits.connections == 3 and metrics.connections_refused == 3
    limits.release("b")
    assert limits.admit("c", unauthenticated=False)
    limits.authenticated("a")
    for host in ("a", "a", "c"):
        limits.release(host)
    assert limits.connections == 0 and "hosts=0" in repr(limits)


async def test_refusals_are_logged_once_a_second_and_the_rest_at_the_end_of_the_burst(tmp_path, caplog):
    limits = ConnectionLimits(_config(tmp_path, max_connections=1))
    assert limits.admit("a", unauthenticated=False)
    with caplog.at_level(logging.WARNING, logger="logbroker.server"):
        for _ in range(5):
            assert not limits.admit("b", unauthenticated=False)
        assert caplog.text.count("refused") == 1
        limits.log_refusals(trio.current_time() + 1)
    assert "refused 4 more connection(s)" in caplog.text


async def test_the_watchdog_closes_idle_not_reading_and_not_authenticated_connections(tmp_path):
    dog = Watchdog(_config(tmp_path))
    idle, sending, busy, late = (Watch(trio.CancelScope(), h) for h in ("idle", "sending", "busy", "late"))
    idle.since = 10.0
    sending.since, sending.sending = 10.0, True
    busy.since = math.inf  # handling a request
    late.login_deadline = 50.0
    for watch in (idle, sending, busy, late):
        dog.add(watch)
    dog.expire(now=100.0, too_old=20.0)
    assert (idle.expired, sending.expired, busy.expired, late.expired) == (
        "idle", "not reading", None, "not authenticated")
    assert idle.scope.cancel_called and not busy.scope.cancel_called
    dog.discard(idle)
    assert "connections=3" in repr(dog)


async def test_shutdown_closes_only_connections_waiting_for_a_request(tmp_path):
    dog = Watchdog(_config(tmp_path))
    waiting, working = Watch(trio.CancelScope(), "w"), Watch(trio.CancelScope(), "b")
    waiting.awaiting_request = True
    dog.add(waiting)
    dog.add(working)
    dog.close_awaiting()
    assert waiting.scope.cancel_called and not working.scope.cancel_called


def test_the_tick_is_a_tenth_of_the_shortest_limit(tmp_path):
    assert Watchdog(_config(tmp_path, connections_max_idle_ms=2000)).tick_seconds() == 0.2
    assert Watchdog(_config(tmp_path)).tick_seconds() == 1.0
