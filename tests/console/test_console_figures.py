"""The console's overview, topic list and a topic's partition table after a
restart: the same figures as before, read from the manager's figures, so the
pages open no partition (only the message browser opens the partitions it
reads). The console application is driven in this process over ASGI, so the
test can ask the manager how many partitions are open."""

from __future__ import annotations

import re

from logbroker.broker import Broker, BrokerConfig
from figures_support import write_mixed_partitions
from logbroker.server.console.app import console_app


async def _get(app, path: str, query: str = "") -> str:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": [(b"host", b"console.test")], "client": ("127.0.0.1", 1),
             "server": ("console.test", 80)}
    sent = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 200, b"".join(m.get("body", b"") for m in sent[1:]).decode()
    return b"".join(m.get("body", b"") for m in sent[1:]).decode()


def _part(page: str, pattern: str) -> str:
    found = re.search(pattern, page, re.DOTALL)
    assert found is not None, pattern
    return found.group(0)


async def _pages(app) -> dict[str, str]:
    """The parts of the pages that show partition figures."""
    overview = await _get(app, "/")
    return {
        "disk": _part(overview, r'<div class="label">Disk</div>.*?</div>'),
        "overview": _part(overview, r'<table id="topics">.*?</table>'),
        "list": _part(await _get(app, "/topics", "internal=1"), r'<table id="topics">.*?</table>'),
        "many": _part(await _get(app, "/topics/many", "partition=0"), r'<table id="partitions">.*?</table>'),
    }


async def test_pages_after_a_restart_open_no_partition_and_show_the_same_figures(tmp_path):
    config = BrokerConfig(data_dir=str(tmp_path / "data"))
    broker = Broker(config)
    try:
        write_mixed_partitions(broker)
        before = await _pages(console_app(broker))
    finally:
        broker.close()
    assert '<tr data-topic="many">' in before["overview"] and "<td>39</td>" not in before["many"]
    assert '<td class="num">39</td><td class="num">0</td><td class="num">5</td>' in before["many"]
    assert '<td class="num">6</td><td class="num">5</td><td class="num">7</td>' in before["many"]

    broker = Broker(config)
    try:
        manager = broker.log_manager
        opened = manager.open_partitions
        app = console_app(broker)
        await _get(app, "/")
        await _get(app, "/topics", "internal=1")
        assert manager.open_partitions == opened  # the overview and the list opened none
        assert await _pages(app) == before
        assert manager.open_partitions == opened + 1  # many-0, whose records the topic page browsed
        for _ in manager.iter_partitions():  # opens every one: their logs say the same
            pass
        assert await _pages(app) == before
    finally:
        broker.close()
