"""The console's groups, queues and schema pages in a real browser: resetting a
group's offsets changes its lag as ``logbroker groups describe`` shows, a
dead-letter record sent back is consumed again, and a schema diff."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import trio
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import chrome, screenshot, start_console  # noqa: E402

from brokerproc import wait_until  # noqa: E402
from logbroker.cli.main import main as cli  # noqa: E402
from logbroker.client import Admin, SyncAdmin, SyncConsumer, SyncProducer  # noqa: E402
from logbroker.client.queue import SyncQueueConsumer  # noqa: E402


@pytest.fixture
def driver():
    d = chrome()
    yield d
    d.quit()


def _lag(bootstrap: str, group: str) -> dict[int, int]:
    result = CliRunner().invoke(cli, ["groups", "describe", group, "-b", bootstrap, "--format", "json"])
    assert result.exit_code == 0, result.output
    described = json.loads(result.output)
    return {row["partition"]: row["lag"] for row in described["partitions"]}


def test_reset_offsets_from_the_console(broker_factory, tmp_path, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    proc, url = start_console(broker_factory, tmp_path)
    with SyncAdmin(proc.bootstrap) as admin:
        admin.create_topic("orders", 2)
    with SyncProducer(proc.bootstrap, linger_ms=0) as producer:
        for i in range(20):
            producer.send("orders", b"o%d" % i, partition=i % 2).result(10)
    with SyncConsumer(proc.bootstrap, group_id="billing", auto_offset_reset="earliest",
                      enable_auto_commit=False) as consumer:
        consumer.subscribe(["orders"])
        got, deadline = 0, time.monotonic() + 30
        while got < 20 and time.monotonic() < deadline:
            got += len(consumer.getmany(timeout=2))
        consumer.commit(timeout=10)
    assert _lag(proc.bootstrap, "billing") == {0: 0, 1: 0}

    driver.get(url + "/groups")
    assert driver.find_element(By.CSS_SELECTOR, "#groups tr[data-group=billing]")
    driver.find_element(By.LINK_TEXT, "billing").click()
    wait_until(lambda: _text(driver, "total-lag") == "0", 10, what="the group page")
    Select(driver.find_element(By.ID, "reset-target")).select_by_value("earliest")
    driver.find_element(By.ID, "reset-preview").click()  # a form post: wait for the page it loads
    wait_until(lambda: _plan(driver), 10, what="the reset plan")
    assert _plan(driver) == [("10", "0"), ("10", "0")]
    screenshot(driver, "group-reset")
    assert _lag(proc.bootstrap, "billing") == {0: 0, 1: 0}  # a preview changes nothing
    driver.find_element(By.ID, "reset-apply").click()
    wait_until(lambda: _lag(proc.bootstrap, "billing") == {0: 10, 1: 10}, 10, what="the new lag")
    driver.get(url + "/groups/billing")
    assert driver.find_element(By.ID, "total-lag").text == "20"


def _plan(driver) -> list[tuple[str, str]]:
    """(current, new) offsets of the reset plan's rows; [] while the page is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        rows = driver.find_elements(By.CSS_SELECTOR, "#reset-plan tr[data-topic]")
        return sorted((r.get_attribute("data-current"), r.get_attribute("data-new")) for r in rows)
    except StaleElementReferenceException:
        return []


def _text(driver, element_id: str) -> str:
    """The element's text, or "" while the page it was on is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return " ".join(e.text for e in driver.find_elements(By.ID, element_id))
    except StaleElementReferenceException:
        return ""


def test_dead_letter_sent_back_is_consumed_again(broker_factory, tmp_path, driver):
    from selenium.webdriver.common.by import By

    proc, url = start_console(broker_factory, tmp_path)
    bootstrap = proc.bootstrap
    with SyncAdmin(bootstrap) as admin:
        admin.create_topic("jobs", 1)

    async def configure() -> None:
        async with Admin(bootstrap) as admin:
            await admin.alter_group_configs("workers", {
                "share.auto.offset.reset": "earliest", "share.delivery.count.limit": "2",
                "errors.deadletterqueue.topic.name": "jobs.dlq"})

    trio.run(configure)
    with SyncProducer(bootstrap) as producer:
        producer.send("jobs", b"poison", key=b"p1")
        producer.flush(timeout=10)
    with SyncQueueConsumer(bootstrap, "jobs", group_id="workers") as queue:
        queue.get(timeout=20).reject()

    driver.get(url + "/queues")
    driver.find_element(By.LINK_TEXT, "workers").click()
    wait_until(lambda: (driver.refresh() or True) and driver.find_elements(By.ID, "send-back"), 20,
               what="the dead letter on the page")
    driver.find_element(By.ID, "dlq-link").click()
    wait_until(lambda: "poison" in _text(driver, "records"), 10,
               what="the dead letters browsed")
    screenshot(driver, "dead-letters")
    driver.back()
    wait_until(lambda: driver.find_elements(By.ID, "send-back-submit"), 10, what="the queue page again")
    driver.find_element(By.ID, "send-back-submit").click()
    wait_until(lambda: "sent 1 dead letters back to jobs-0" in _text(driver, "message"), 10, what="the send-back message")
    with SyncQueueConsumer(bootstrap, "jobs", group_id="workers") as queue:
        again = queue.get(timeout=20)
        assert (again.value, again.key, again.delivery_count) == (b"poison", b"p1", 1)
        again.ack()


def test_schema_versions_and_diff(broker_factory, tmp_path, driver):
    from selenium.webdriver.common.by import By

    proc, url = start_console(broker_factory, tmp_path, registry=True)
    port = int(__import__("re").search(r"schema registry on http://\S+:(\d+)/", proc.log).group(1))
    v1 = {"type": "record", "name": "User", "fields": [{"name": "name", "type": "string"}]}
    v2 = {**v1, "fields": [*v1["fields"], {"name": "age", "type": "int", "default": 0}]}
    for schema in (v1, v2):
        request = urllib.request.Request(f"http://127.0.0.1:{port}/subjects/users-value/versions",
                                         data=json.dumps({"schema": json.dumps(schema)}).encode(), method="POST",
                                         headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
        urllib.request.urlopen(request, timeout=10).read()
    driver.get(url + "/schemas")
    driver.find_element(By.LINK_TEXT, "users-value").click()
    wait_until(lambda: _text(driver, "latest-version") == "2", 10, what="the subject page")
    added = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#diff .diff-add")]
    assert any('"age"' in line for line in added), added
    screenshot(driver, "schemas")
