"""The console's overview and topic pages in a real browser: the data of a
broker the test filled, the message browser, the live tail, producing from
the form, and login, ACLs and CSRF when SASL is on."""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import chrome, screenshot, start_console  # noqa: E402
from brokerproc import wait_until  # noqa: E402

from logbroker.broker.security import Acl, Authorizer, UserStore  # noqa: E402
from logbroker.client import SyncAdmin, SyncConsumer, SyncProducer  # noqa: E402


@pytest.fixture
def driver():
    d = chrome()
    yield d
    d.quit()


def _fill(bootstrap: str) -> None:
    with SyncAdmin(bootstrap) as admin:
        admin.create_topic("orders", 3)
        admin.create_topic("audit", 1)
    with SyncProducer(bootstrap, linger_ms=0) as producer:
        for i in range(30):
            producer.send("orders", b'{"order": %d, "item": "lamp"}' % i, key=b"customer-%d" % (i % 3),
                          headers=[("source", b"shop")]).result(10)
        producer.send("audit", b"\x00\xff binary", partition=0).result(10)


def test_overview_topic_page_browser_and_tail(broker_factory, tmp_path, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    proc, url = start_console(broker_factory, tmp_path)
    _fill(proc.bootstrap)

    driver.get(url + "/")
    rows = {r.get_attribute("data-topic"): r for r in driver.find_elements(By.CSS_SELECTOR, "#topics tr[data-topic]")}
    assert set(rows) >= {"orders", "audit"}
    assert "30" in rows["orders"].text and rows["orders"].find_elements(By.TAG_NAME, "td")[1].text == "3"
    screenshot(driver, "overview")
    search = driver.find_element(By.CSS_SELECTOR, "#topic-search input[name=q]")
    search.send_keys("ord")
    search.submit()  # a form get: wait for the page it loads
    wait_until(lambda: _topics_listed(driver) == ["orders"], 10, what="the filtered topic list")
    assert "q=ord" in driver.current_url  # a link that can be shared

    driver.find_element(By.LINK_TEXT, "orders").click()
    assert driver.find_element(By.ID, "topic-name").text == "orders"
    partitions = driver.find_elements(By.CSS_SELECTOR, "#partitions tbody tr")
    assert len(partitions) == 3
    assert sum(int(r.find_elements(By.TAG_NAME, "td")[3].text) for r in partitions) == 30
    records = driver.find_elements(By.CSS_SELECTOR, "#records tr.record")
    assert len(records) == 30
    assert "customer-" in records[0].text and "source=shop" in records[0].text

    # filter by key text, pretty JSON view
    driver.get(url + "/topics/orders?key=customer-1&view=json&limit=5")
    shown = driver.find_elements(By.CSS_SELECTOR, "#records tr.record")
    assert len(shown) == 5 and all("customer-1" in r.text for r in shown)
    assert '"item": "lamp"' in shown[0].find_element(By.CSS_SELECTOR, "pre.value").text
    screenshot(driver, "messages")
    driver.back()
    assert driver.find_element(By.ID, "topic-name").text == "orders"

    # from an offset of one partition
    driver.get(url + "/topics/orders?partition=0&mode=offset&offset=2&limit=3")
    offsets = [int(r.get_attribute("data-offset")) for r in driver.find_elements(By.CSS_SELECTOR, "#records tr.record")]
    assert offsets and offsets[0] == 2 and len(offsets) <= 3

    # hex view shows binary bytes exactly
    driver.get(url + "/topics/audit?view=hex")
    assert driver.find_element(By.CSS_SELECTOR, "#records pre.value").text == "00 ff 20 62 69 6e 61 72 79"

    # live tail: a record produced after the page opened shows within a second
    driver.get(url + "/topics/orders")
    driver.find_element(By.ID, "tail-toggle").click()
    time.sleep(0.3)  # the event stream connects
    with SyncProducer(proc.bootstrap, linger_ms=0) as producer:
        producer.send("orders", b"tailed-record", partition=1).result(10)
        sent = time.monotonic()
    WebDriverWait(driver, 5, poll_frequency=0.05).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#records tr.tailed")))
    assert time.monotonic() - sent < 1.0
    assert "tailed-record" in driver.find_element(By.CSS_SELECTOR, "#records tr.tailed").text

    # produce from the form; a consumer reads it back
    driver.find_element(By.ID, "produce-key").send_keys("from-console")
    driver.find_element(By.ID, "produce-value").send_keys("hello from the browser")
    driver.find_element(By.ID, "produce-submit").click()
    WebDriverWait(driver, 10).until(lambda d: "message=" in d.current_url or "error-detail" in d.page_source)
    assert "produced offset" in driver.find_element(By.ID, "message").text, driver.page_source[-1500:]
    with SyncConsumer(proc.bootstrap, auto_offset_reset="earliest") as consumer:
        consumer.assign([("orders", 0)])
        values, deadline = [], time.monotonic() + 10
        while b"hello from the browser" not in values and time.monotonic() < deadline:
            values += [r.value for r in consumer.getmany(timeout=1)]
    assert b"hello from the browser" in values


def _secured(broker_factory, tmp_path):
    data = tmp_path / "secured"
    users = UserStore(data)
    users.add("alice", "alice-pw")
    users.add("bob", "bob-pw")
    acls = Authorizer(data)
    acls.add(Acl("User:alice", "topic", "*", "all"))
    acls.add(Acl("User:alice", "cluster", "kafka-cluster", "all"))
    acls.add(Acl("User:alice", "group", "*", "all"))
    acls.add(Acl("User:bob", "topic", "orders", "describe"))  # may see orders, not read it; not audit at all
    proc, url = start_console(broker_factory, tmp_path, 'security_protocol = "SASL_PLAINTEXT"',
                              "authorizer_enable = true", data_dir=data)
    login = dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                 sasl_username="alice", sasl_password="alice-pw")
    with SyncAdmin(proc.bootstrap, **login) as admin:
        admin.create_topic("orders", 1)
        admin.create_topic("audit", 1)
    with SyncProducer(proc.bootstrap, linger_ms=0, **login) as producer:
        producer.send("orders", b"secret order", partition=0).result(10)
    return proc, url


def _log_in(driver, url: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url + "/login")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def test_login_acls_and_csrf(broker_factory, tmp_path, driver):
    from selenium.webdriver.common.by import By

    proc, url = _secured(broker_factory, tmp_path)

    driver.get(url + "/topics/orders")
    assert "/login" in driver.current_url  # every page needs a login
    screenshot(driver, "login")
    _log_in(driver, url, "alice", "wrong")
    assert driver.find_element(By.ID, "login-error").text.startswith("Wrong user name or password")

    _log_in(driver, url, "bob", "bob-pw")
    driver.get(url + "/topics")
    names = [r.get_attribute("data-topic") for r in driver.find_elements(By.CSS_SELECTOR, "#topics tr[data-topic]")]
    assert names == ["orders"]  # audit: no DESCRIBE, so not even its name
    driver.get(url + "/topics/orders")
    assert driver.find_element(By.ID, "no-read").is_displayed()
    assert not driver.find_elements(By.CSS_SELECTOR, "#records")
    assert "secret order" not in driver.page_source
    driver.get(url + "/topics/audit")
    assert "404" in driver.title
    driver.get(url + "/topics/orders/tail")
    assert "secret order" not in driver.page_source

    driver.delete_all_cookies()
    _log_in(driver, url, "alice", "alice-pw")
    driver.get(url + "/topics/orders")
    assert "secret order" in driver.find_element(By.ID, "records").text, driver.page_source[:3000]

    # A page of another origin posting to the console with alice's cookie: refused.
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    body = urllib.parse.urlencode({"partition": "0", "value": "forged", "csrf": "guess"}).encode()
    for headers in ({"Origin": "http://evil.example"}, {}):
        request = urllib.request.Request(url + "/topics/orders/produce", data=body, method="POST", headers={
            "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()), **headers})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 403
    # and the same from a real page of another origin, in the browser
    evil = tmp_path / "evil.html"
    evil.write_text(f'<form id="f" method="post" action="{url}/topics/orders/produce">'
                    '<input name="partition" value="0"><input name="value" value="forged"></form>'
                    "<script>document.getElementById('f').submit()</script>")
    driver.get(evil.as_uri())
    time.sleep(1.0)
    driver.get(url + "/topics/orders")
    assert "forged" not in driver.find_element(By.ID, "records").text


def test_read_only_console_refuses_actions(broker_factory, tmp_path, driver):
    from selenium.webdriver.common.by import By

    proc, url = start_console(broker_factory, tmp_path, "console_read_only = true")
    _fill(proc.bootstrap)
    driver.get(url + "/topics/orders")
    assert not driver.find_elements(By.ID, "produce")  # no form offered
    request = urllib.request.Request(url + "/topics/orders/produce", method="POST",
                                     data=b"partition=0&value=x&csrf=x")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403


def _topics_listed(driver) -> list[str]:
    """The topics of the list on the page; [] while the page is being replaced."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        return [r.get_attribute("data-topic") for r in driver.find_elements(By.CSS_SELECTOR, "#topics tr[data-topic]")]
    except StaleElementReferenceException:
        return []
