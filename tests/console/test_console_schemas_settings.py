"""The console's schema pages (/schemas, /schemas/{subject}) and broker page
(/settings) over HTTP against a real ``logbroker serve``: the subjects and
versions a test registered, the diff of two versions, the settings it
configured, and SVG charts of the requests it caused; the ACL rules; and the
pure parts (percentiles from buckets, the sample ring, the line diff)."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from html import unescape
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import start_console  # noqa: E402

from logbroker.broker.security import Acl, Authorizer, UserStore  # noqa: E402
from logbroker.client import SyncAdmin, SyncProducer  # noqa: E402
from logbroker.server.console.schemas import schema_diff, pretty_schema, topic_of  # noqa: E402
from logbroker.server.console.settings import MetricsHistory, line_chart, percentile  # noqa: E402
from logbroker.server.metrics import Metrics  # noqa: E402

CT = "application/vnd.schemaregistry.v1+json"
_REGISTRY_LINE = re.compile(r"schema registry on http://\S+:(\d+)/")

ORDER_V1 = {"type": "record", "name": "Order", "namespace": "shop", "fields": [{"name": "id", "type": "long"}]}
ORDER_V2 = {**ORDER_V1, "fields": [*ORDER_V1["fields"], {"name": "note", "type": "string", "default": ""}]}
PAYMENT = {"type": "object", "properties": {"amount": {"type": "number"}}}


def _registry_url(proc, timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = _REGISTRY_LINE.search(proc.log)
        if found:
            return f"http://127.0.0.1:{found.group(1)}"
        time.sleep(0.02)
    raise AssertionError(f"no schema registry line in the broker log:\n{proc.log}")


def _registry(url: str, method: str, path: str, body=None, auth: tuple[str, str] | None = None):
    request = urllib.request.Request(url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", CT)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _register(url: str, subject: str, schema: dict, auth=None, **extra) -> int:
    return _registry(url, "POST", f"/subjects/{subject}/versions", {"schema": json.dumps(schema), **extra},
                     auth)["id"]


def _get(url: str, opener=None) -> tuple[int, str]:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _rows(page: str, attribute: str) -> dict[str, str]:
    """The ``<tr data-ATTRIBUTE=...>`` rows of a page, by that attribute's value."""
    return {m.group(1): m.group(2) for m in re.finditer(rf'<tr {attribute}="([^"]+)"[^>]*>(.*?)</tr>', page, re.S)}


def _cells(row: str) -> list[str]:
    return [unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def _diff_lines(page: str, kind: str) -> list[str]:
    return [unescape(t) for t in re.findall(rf'<div class="diff-{kind}">(.*?)</div>', page)]


# -- schemas -------------------------------------------------------------------------


def test_schema_pages_show_subjects_versions_and_diff(broker_factory, tmp_path):
    proc, url = start_console(broker_factory, tmp_path, registry=True)
    registry = _registry_url(proc)
    assert _register(registry, "orders-value", ORDER_V1) == 1
    assert _register(registry, "orders-value", ORDER_V2) == 2
    assert _register(registry, "payments-value", PAYMENT, schemaType="JSON") == 3
    assert _register(registry, "refunds-value", {"type": "string"}) == 4
    _registry(registry, "PUT", "/config/orders-value", {"compatibility": "FULL"})
    _registry(registry, "DELETE", "/subjects/refunds-value")  # soft delete

    status, page = _get(url + "/schemas")
    assert status == 200
    rows = _rows(page, "data-subject")
    assert set(rows) == {"orders-value", "payments-value"}  # refunds-value is soft-deleted
    assert _cells(rows["orders-value"]) == ["orders-value", "orders", "2", "2", "AVRO", "2", "FULL"]
    assert _cells(rows["payments-value"]) == ["payments-value", "payments", "1", "1", "JSON", "3", "BACKWARD (global)"]
    assert 'id="global-compatibility">BACKWARD<' in page
    with_deleted = _rows(_get(url + "/schemas?deleted=1")[1], "data-subject")
    assert "deleted" in _cells(with_deleted["refunds-value"])[0]
    assert set(_rows(_get(url + "/schemas?q=pay")[1], "data-subject")) == {"payments-value"}

    status, page = _get(url + "/schemas/orders-value")
    assert status == 200
    assert 'id="compatibility">FULL<' in page and 'id="latest-version">2<' in page
    assert set(_rows(page, "data-version")) == {"1", "2"}
    # each version pretty-printed, as the registry holds it
    texts = [unescape(t) for t in re.findall(r'<pre class="schema-text">(.*?)</pre>', page, re.S)]
    assert [json.loads(t) for t in texts] == [ORDER_V2, ORDER_V1] and texts[0] == json.dumps(ORDER_V2, indent=2)
    # by default, the latest version against the one before: the added field, nothing removed
    added = _diff_lines(page, "add")
    assert any('"name": "note"' in line for line in added) and any('"default": ""' in line for line in added)
    assert _diff_lines(page, "del") == []
    assert any('"name": "id"' in line for line in _diff_lines(page, "ctx"))  # unchanged lines, unmarked
    # the other way round, the same lines are removed
    status, page = _get(url + "/schemas/orders-value?from=2&to=1")
    assert status == 200 and _diff_lines(page, "add") == []
    assert [line[2:] for line in _diff_lines(page, "del")] == [line[2:] for line in added]

    status, page = _get(url + "/schemas/payments-value")
    assert status == 200 and "diff-form" not in page  # one version: nothing to compare
    assert unescape(re.search(r'<pre class="schema-text">(.*?)</pre>', page, re.S).group(1)) == json.dumps(
        PAYMENT, indent=2)

    assert _get(url + "/schemas/orders-value?from=7")[0] == 404
    assert _get(url + "/schemas/orders-value?to=two")[0] == 400
    assert _get(url + "/schemas/nothing-value")[0] == 404
    status, page = _get(url + "/schemas/refunds-value")  # soft-deleted versions are shown, marked
    assert status == 200 and "deleted" in _cells(_rows(page, "data-version")["1"])[-1]


def test_schema_page_without_registry_says_how_to_turn_it_on(broker_factory, tmp_path):
    _, url = start_console(broker_factory, tmp_path)
    status, page = _get(url + "/schemas")
    assert status == 200 and 'id="registry-off"' in page and "schema_registry_port" in page
    assert _get(url + "/schemas/orders-value")[0] == 404


def _login(url: str, user: str, password: str):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    with opener.open(urllib.request.Request(url + "/login", data=body, method="POST"), timeout=10) as response:
        assert response.status == 200 and "/login" not in response.url
    return opener


def test_subjects_and_settings_follow_acls(broker_factory, tmp_path):
    data = tmp_path / "secured"
    users = UserStore(data)
    users.add("alice", "alice-pw")
    users.add("bob", "bob-pw")
    acls = Authorizer(data)
    acls.add(Acl("User:alice", "topic", "*", "all"))
    acls.add(Acl("User:alice", "cluster", "kafka-cluster", "all"))
    acls.add(Acl("User:bob", "topic", "orders", "describe"))
    proc, url = start_console(broker_factory, tmp_path, 'security_protocol = "SASL_PLAINTEXT"',
                              "authorizer_enable = true", data_dir=data, registry=True)
    registry = _registry_url(proc)
    for subject, schema in (("orders-value", ORDER_V1), ("orders-key", {"type": "string"}),
                            ("payments-value", ORDER_V1)):
        _register(registry, subject, schema, auth=("alice", "alice-pw"))

    assert "/login" in urllib.request.urlopen(url + "/schemas", timeout=10).url  # a login first
    alice, bob = _login(url, "alice", "alice-pw"), _login(url, "bob", "bob-pw")
    assert set(_rows(_get(url + "/schemas", alice)[1], "data-subject")) == {"orders-key", "orders-value",
                                                                           "payments-value"}
    assert set(_rows(_get(url + "/schemas", bob)[1], "data-subject")) == {"orders-key", "orders-value"}
    assert _get(url + "/schemas/orders-value", bob)[0] == 200
    status, page = _get(url + "/schemas/payments-value", bob)
    assert status == 404 and "Order" not in page  # no DESCRIBE on payments: as if it did not exist

    assert _get(url + "/settings", alice)[0] == 200
    status, page = _get(url + "/settings", bob)
    assert status == 403 and "DESCRIBE_CONFIGS" in page and 'id="configs"' not in page


# -- settings ------------------------------------------------------------------------


def test_settings_show_configured_values_and_charts_of_requests(broker_factory, tmp_path):
    proc, url = start_console(broker_factory, tmp_path, "num_partitions = 3", "log_retention_ms = 3600000")
    status, page = _get(url + "/settings")
    assert status == 200
    configs = _rows(page, "data-name")
    assert _cells(configs["num.partitions"])[:3] == ["num.partitions", "3", "config file / flags"]
    assert _cells(configs["log.retention.ms"])[1] == "3600000"
    assert _cells(configs["message.max.bytes"])[1:3] == ["1048588", "default"]
    assert "Produce" not in _rows(page, "data-api")

    with SyncAdmin(proc.bootstrap) as admin:
        admin.create_topic("charted", 1)  # created first, so no Produce is refused and retried
    with SyncProducer(proc.bootstrap, linger_ms=0) as producer:
        for i in range(7):  # one Produce request each: every send is waited for
            producer.send("charted", b"record %d" % i, partition=0).result(10)

    status, page = _get(url + "/settings")
    assert status == 200
    apis = _rows(page, "data-api")
    assert _cells(apis["Produce"])[1] == "7"
    assert int(_cells(apis["Metadata"])[1]) >= 1
    svgs = re.findall(r"<svg .*?</svg>", page, re.S)
    assert len(svgs) == 4
    for svg in svgs:
        ET.fromstring(svg)  # well-formed SVG
    charts = {m.group(1): m.group(2) for m in re.finditer(r'<figure class="chart" id="([^"]+)">(.*?)</figure>',
                                                          page, re.S)}
    assert set(charts) == {"chart-requests", "chart-latency", "chart-fsync", "chart-connections"}
    requests = ET.fromstring(re.search(r"<svg .*?</svg>", charts["chart-requests"], re.S).group(0))
    ns = {"svg": "http://www.w3.org/2000/svg"}
    produce = requests.find("svg:g[@data-series='Produce']", ns)
    assert produce is not None and produce.findall("svg:polyline", ns)
    # the points' counts add up to the requests made since the broker started
    assert sum(int(c.get("data-count")) for c in produce.findall("svg:circle", ns)) == 7
    assert any(float(c.get("data-value")) > 0 for c in produce.findall("svg:circle", ns))
    latency = ET.fromstring(re.search(r"<svg .*?</svg>", charts["chart-latency"], re.S).group(0))
    assert latency.find("svg:g[@data-series='Produce']/svg:polyline", ns) is not None
    connections = ET.fromstring(re.search(r"<svg .*?</svg>", charts["chart-connections"], re.S).group(0))
    assert connections.find("svg:g[@data-series='open']/svg:polyline", ns) is not None
    assert int(re.search(r'id="connections-open">(\d+)<', page).group(1)) == 0  # the producer has closed

    # the appends are fsynced within flush.interval.ms; the page shows the rounds
    def fsynced() -> bool:
        return int(re.search(r'id="fsync-rounds">([\d,]+)<', _get(url + "/settings")[1]).group(1)
                   .replace(",", "")) > 0
    deadline = time.monotonic() + 15
    while not fsynced():
        assert time.monotonic() < deadline, "no fsync round shown"
        time.sleep(0.3)

    filtered = _rows(_get(url + "/settings?q=retention&changed=1")[1], "data-name")
    assert set(filtered) == {"log.retention.ms"}
    assert 'data-refresh="5"' in _get(url + "/settings?refresh=5")[1]


# -- the pure parts ------------------------------------------------------------------


def test_percentile_interpolates_in_buckets():
    bounds = (0.001, 0.01, 0.1)
    assert percentile(bounds, [0, 0, 0, 0], 0.5) is None
    assert percentile(bounds, [0, 10, 0, 0], 0.5) == pytest.approx(0.0055)  # halfway through (1 ms, 10 ms]
    assert percentile(bounds, [10, 0, 0, 0], 1.0) == pytest.approx(0.001)
    assert percentile(bounds, [90, 0, 10, 0], 0.99) == pytest.approx(0.01 + 0.09 * 9 / 10)
    assert percentile(bounds, [0, 0, 0, 5], 0.5) == 0.1  # +Inf: the highest bound


def test_history_keeps_a_sample_every_interval_for_the_window():
    metrics = Metrics()
    history = MetricsHistory(every_s=5, keep_s=60)
    start = metrics.started
    first = history.sample(metrics, start + 1)
    assert [s.at for s in first] == [start, start + 1]  # the zero totals at start, and now
    metrics.observe_request(0, 0.002)
    assert [s.at for s in history.sample(metrics, start + 3)] == [start, start + 3]  # now, not kept: too soon
    assert [s.at for s in history.sample(metrics, start + 7)] == [start, start + 7]
    assert history.sample(metrics, start + 7)[-1].requests(0) == 1
    for t in range(10, 200, 5):
        samples = history.sample(metrics, start + t)
    assert samples[0].at >= start + 195 - 60 and samples[-1].at == start + 195
    assert all(b.at - a.at >= 5 for a, b in zip(samples, samples[1:]))


def test_line_chart_breaks_lines_at_gaps_and_scales():
    chart = line_chart("c", "t", "ms", [0, 10, 20, 30], 30, {"a": [(10, 1.0, 1), (20, None, 0), (30, 3.0, 2)]})
    (series,) = chart.series
    assert len(series.segments) == 2 and len(series.points) == 2
    assert [label for _, label in chart.y_ticks] == ["0", "2.5", "5"]
    assert series.points[1].y == chart.top + (chart.height - chart.top - chart.bottom) * (1 - 3 / 5)
    assert chart.x_ticks[0][0] == chart.left and chart.x_ticks[-1][0] == chart.width - chart.right


def test_diff_marks_added_and_removed_lines():
    old = pretty_schema("AVRO", json.dumps(ORDER_V1))
    new = pretty_schema("AVRO", json.dumps({**ORDER_V1, "fields": [{"name": "id", "type": "int"}]}))
    kinds = {(d.kind, d.text.strip()) for d in schema_diff(old, new)}
    assert ("del", '"type": "long"') in kinds and ("add", '"type": "int"') in kinds
    assert ("ctx", '"name": "id",') in kinds
    assert schema_diff(old, old) == []
    assert pretty_schema("PROTOBUF", 'syntax = "proto3";\n') == 'syntax = "proto3";'
    assert [topic_of(s) for s in ("orders-value", "orders-key", "orders", "a-key-value")] == [
        "orders", "orders", "orders", "a-key"]
