"""The console's consumer-group pages (/groups, /groups/{id}: members, offsets,
lag; resetting offsets with a preview; deleting) and queue pages (/queues,
/queues/{group}: share-partition counts, configs, dead letters sent back to
their source topic) over HTTP against a real ``logbroker serve`` filled by
real clients; the ACL rules, the CSRF check and the read-only console."""

from __future__ import annotations

import http.cookiejar
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from html import unescape
from pathlib import Path

import trio
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser import start_console  # noqa: E402

from brokerproc import wait_until  # noqa: E402
from logbroker.broker.security import Acl, Authorizer, UserStore  # noqa: E402
from logbroker.cli.main import main as cli  # noqa: E402
from logbroker.client import Admin, SyncAdmin, SyncConsumer, SyncProducer  # noqa: E402
from logbroker.client.queue import SyncQueueConsumer  # noqa: E402
from logbroker.server.console.groups import parse_assignment  # noqa: E402

BASE_MS = 1_700_000_000_000  # record i of every partition is stamped BASE_MS + i s


# -- HTTP helpers ----------------------------------------------------------------------


def _get(url: str, opener=None) -> tuple[int, str]:
    try:
        with (opener or urllib.request.build_opener()).open(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _post(url: str, fields: dict[str, str], opener=None, origin: str | None = None) -> tuple[int, str, str]:
    """(status, body, final URL) of a form POST; a 303 is followed, as a browser does."""
    request = urllib.request.Request(url, data=urllib.parse.urlencode(fields).encode(), method="POST")
    if origin is not None:
        request.add_header("Origin", origin)
    try:
        with (opener or urllib.request.build_opener()).open(request, timeout=30) as response:
            return response.status, response.read().decode(), response.url
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), url


def _rows(page: str, attribute: str, table: str | None = None) -> dict[str, dict[str, str]]:
    """The ``<tr data-ATTRIBUTE=...>`` rows of a page (or of its table ``id``), by that
    attribute's value, each as its data- attributes and its cells' text (``cells``)."""
    if table is not None:
        found = re.search(rf'<table id="{table}">(.*?)</table>', page, re.S)
        assert found, f"no table {table}"
        page = found.group(1)
    out = {}
    for m in re.finditer(rf'<tr ([^>]*\b{attribute}="[^"]*"[^>]*)>(.*?)</tr>', page, re.S):
        data = {k: unescape(v) for k, v in re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1))}
        data["cells"] = [unescape(re.sub(r"<[^>]+>", "", c)).strip()
                         for c in re.findall(r"<td[^>]*>(.*?)</td>", m.group(2), re.S)]
        out[data[attribute.removeprefix("data-")]] = data
    return out


def _plan(page: str) -> dict[tuple[str, int], dict[str, str]]:
    rows = re.search(r'<table id="reset-plan">(.*?)</table>', page, re.S)
    assert rows, "no preview table"
    out = {}
    for m in re.finditer(r"<tr (data-topic[^>]*)>", rows.group(1)):
        data = dict(re.findall(r'data-([\w-]+)="([^"]*)"', m.group(1)))
        out[(data["topic"], int(data["partition"]))] = data
    return out


def _numbers(plan: dict[tuple[str, int], dict[str, str]], field: str) -> list[int | None]:
    return [int(plan[k][field]) if plan[k][field] != "" else None for k in sorted(plan)]


def _text(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>(.*?)</', page, re.S)
    assert found, f"no #{element_id}"
    return unescape(re.sub(r"<[^>]+>", "", found.group(1))).strip()


def _hidden_fields(page: str, form_id: str) -> dict[str, str]:
    form = re.search(rf'<form [^>]*id="{form_id}"[^>]*>(.*?)</form>', page, re.S)
    assert form, f"no form #{form_id}"
    return {unescape(n): unescape(v) for n, v in
            re.findall(r'<input type="hidden" name="([^"]+)"[^>]*value="([^"]*)"', form.group(1))}


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, "no form with a token on the page"
    return found.group(1)


def _login(url: str, user: str, password: str):
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    body = urllib.parse.urlencode({"username": user, "password": password}).encode()
    with opener.open(urllib.request.Request(url + "/login", data=body, method="POST"), timeout=10) as response:
        assert response.status == 200 and "/login" not in response.url
    return opener


def _describe_json(bootstrap: str, group: str) -> dict:
    result = CliRunner().invoke(cli, ["groups", "describe", group, "--format", "json", "-b", bootstrap],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def _fill(bootstrap: str, topic: str, counts: list[int], **options) -> None:
    """``counts[p]`` records in partition ``p``, record i stamped BASE_MS + i s."""
    with SyncAdmin(bootstrap, **options) as admin:
        admin.create_topic(topic, len(counts))
    with SyncProducer(bootstrap, **options) as producer:
        for p, count in enumerate(counts):
            for i in range(count):
                producer.send(topic, f"{topic}-{p}-{i}", partition=p, timestamp_ms=BASE_MS + i * 1000)
        producer.flush(timeout=10)


def _dead_letters(url: str, group: str, opener=None) -> int:
    """The end offset of partition 0 of the group's dead-letter topic, as its page shows it (-1: none yet)."""
    page = _get(f"{url}/queues/{group}", opener)[1]
    if 'id="dlq-partitions"' not in page:
        return -1
    return int(_rows(page, "data-partition", "dlq-partitions")["0"]["end"])


def _group_configs(bootstrap: str, group: str, configs: dict[str, str], **options) -> None:
    async def main() -> None:
        async with Admin(bootstrap, **options) as admin:
            await admin.alter_group_configs(group, configs)

    trio.run(main)


# -- consumer groups ---------------------------------------------------------------------


def test_group_pages_show_members_offsets_and_lag_then_reset_and_delete(broker_factory, tmp_path):
    proc, url = start_console(broker_factory, tmp_path)
    bootstrap = proc.bootstrap
    _fill(bootstrap, "orders", [10, 6, 4])
    billing = SyncConsumer(bootstrap, group_id="billing", client_id="billing-app", enable_auto_commit=False,
                           auto_offset_reset="earliest")
    audit = SyncConsumer(bootstrap, group_id="audit", client_id="audit-app", group_protocol="consumer",
                         enable_auto_commit=False)
    try:
        billing.subscribe(["orders"])
        assert len(billing.wait_assignment(timeout=30)) == 3
        billing.commit({("orders", 0): 7, ("orders", 1): 6, ("orders", 2): 1}, timeout=10)
        audit.subscribe(["orders"])
        wait_until(lambda: len(audit.wait_assignment(timeout=30)) == 3, 30, what="the consumer group's assignment")
        audit.commit({("orders", 0): 10}, timeout=10)

        status, page = _get(url + "/groups")
        assert status == 200
        rows = _rows(page, "data-group")
        assert set(rows) == {"billing", "audit"}
        assert rows["billing"]["cells"] == ["billing", "classic", "Stable", "1", "3", "6"]
        assert (rows["audit"]["type"], rows["audit"]["members"], rows["audit"]["lag"]) == ("consumer", "1", "0")
        assert set(_rows(_get(url + "/groups?q=bill")[1], "data-group")) == {"billing"}

        status, page = _get(url + "/groups/billing")
        assert status == 200
        assert (_text(page, "group-type"), _text(page, "group-state"), _text(page, "group-protocol")) == \
            ("classic", "Stable", "range")
        assert _text(page, "total-lag") == "6"
        [member] = _rows(page, "data-member", "members").values()
        assert member["client"] == "billing-app" and "orders: 0, 1, 2" in member["cells"][-1]
        assert member["cells"][3] == "/127.0.0.1"  # as Kafka reports hosts
        offsets = _rows(page, "data-partition", "offsets")
        assert [(r["committed"], r["end"], r["lag"], r["cells"][-1]) for _, r in sorted(offsets.items())] == [
            ("7", "10", "3", "billing-app"), ("6", "6", "0", "billing-app"), ("1", "4", "3", "billing-app")]
        cli_view = _describe_json(bootstrap, "billing")
        assert [(p["committed"], p["log_end"], p["lag"]) for p in cli_view["partitions"]] == \
            [(7, 10, 3), (6, 6, 0), (1, 4, 3)]

        status, page = _get(url + "/groups/audit")
        assert status == 200 and _text(page, "group-type") == "consumer"
        assert _text(page, "group-state") == "Stable" and _text(page, "group-protocol") == "uniform"
        [member] = _rows(page, "data-member", "members").values()
        assert member["client"] == "audit-app" and "orders: 0, 1, 2" in member["cells"][-1]
        offsets = _rows(page, "data-partition", "offsets")
        assert [(r["committed"], r["lag"]) for _, r in sorted(offsets.items())] == [("10", "0"), ("", ""), ("", "")]

        # A group with members: the preview says why it cannot be applied, and a forced apply is refused.
        status, page = _get(url + "/groups/billing/reset?topic=orders&target=earliest")
        assert status == 200 and "reset-blocked" in page and 'id="reset-apply"' not in page
        token = _csrf(page)
        status, page, _ = _post(url + "/groups/billing/reset", {"csrf": token, "plan": "orders:0=0"})
        assert status == 409 and "stop its consumers" in _text(page, "group-error")
        status, page, _ = _post(url + "/groups/billing/delete", {"csrf": token, "confirm": "yes"})
        assert status == 409 and "Stable" in _text(page, "group-error")
        assert _rows(_get(url + "/groups/billing")[1], "data-partition", "offsets")["0"]["committed"] == "7"
    finally:
        billing.close()
        audit.close()

    wait_until(lambda: _rows(_get(url + "/groups")[1], "data-group")["billing"]["state"] == "Empty", 30,
               what="billing to be Empty after its member left")

    def preview(query: str) -> tuple[str, dict]:
        status, page = _get(url + "/groups/billing/reset?" + query)
        assert status == 200, page
        return page, _plan(page)

    _, plan = preview("topic=orders&target=earliest")
    assert _numbers(plan, "current") == [7, 6, 1]
    assert _numbers(plan, "new") == [0, 0, 0] and _numbers(plan, "lag-after") == [10, 6, 4]
    _, plan = preview("topic=orders&target=latest")
    assert _numbers(plan, "new") == [10, 6, 4] and _numbers(plan, "lag-after") == [0, 0, 0]
    _, plan = preview("topic=orders&target=offset&value=5")
    assert _numbers(plan, "new") == [5, 5, 4]  # clamped to the log end
    _, plan = preview("target=shift&value=-3")  # all topics of the group
    assert _numbers(plan, "new") == [4, 3, 0] and _numbers(plan, "lag-after") == [6, 3, 4]
    _, plan = preview(f"topic=orders&target=time&value={BASE_MS + 4000}")
    assert _numbers(plan, "new") == [4, 4, 4]  # the first record at or after; p2 has none: its end
    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime((BASE_MS + 2000) / 1000))
    _, plan = preview(f"topic=orders&target=time&value=&time={urllib.parse.quote(when)}")  # the datetime-local field
    assert _numbers(plan, "new") == [2, 2, 2]
    assert _get(url + "/groups/billing/reset?topic=orders&target=offset&value=five")[0] == 400
    assert _get(url + "/groups/billing/reset?topic=nope&target=earliest")[0] == 404
    assert _get(url + "/groups/billing/reset?target=sideways")[0] == 400

    page, plan = preview("topic=orders&target=shift&value=-3")
    fields = _hidden_fields(page, "reset-apply-form")
    assert fields["plan"] == "orders:0=4,orders:1=3,orders:2=0"
    status, page, landed = _post(url + "/groups/billing/reset", fields)
    assert status == 200 and landed.endswith("/groups/billing?message=reset+3+offsets")
    shown = _rows(page, "data-partition", "offsets")
    assert [(r["committed"], r["lag"]) for _, r in sorted(shown.items())] == [("4", "6"), ("3", "3"), ("0", "4")]
    cli_view = _describe_json(bootstrap, "billing")
    assert [(p["partition"], p["committed"], p["lag"]) for p in cli_view["partitions"]] == [
        (int(k[1]), int(plan[k]["new"]), int(plan[k]["lag-after"])) for k in sorted(plan)]
    assert cli_view["total_lag"] == 13 and _text(page, "total-lag") == "13"

    # Deleting needs the box ticked; then the group and its offsets are gone.
    token = _csrf(page)
    assert _post(url + "/groups/billing/delete", {"csrf": token})[0] == 400
    status, page, landed = _post(url + "/groups/billing/delete", {"csrf": token, "confirm": "yes"})
    assert status == 200 and landed.endswith("/groups?message=deleted+group+billing")
    assert "billing" not in _rows(page, "data-group") and "audit" in _rows(page, "data-group")
    assert _get(url + "/groups/billing")[0] == 404


def test_posts_need_the_token_and_a_read_only_console_refuses_them(broker_factory, tmp_path):
    for read_only in (False, True):
        proc, url = start_console(broker_factory, tmp_path, f"console_read_only = {str(read_only).lower()}",
                                  name=f"console-{read_only}.toml", data_dir=tmp_path / f"data-{read_only}")
        _fill(proc.bootstrap, "orders", [5])
        for group in ("idle", "team/a"):
            with SyncConsumer(proc.bootstrap, group_id=group, enable_auto_commit=False) as consumer:
                consumer.commit({("orders", 0): 3}, timeout=10)  # a group that only stores offsets: Empty
        assert 'href="/groups/team%2Fa"' in _get(url + "/groups")[1]  # ids with "/" have pages too
        status, page = _get(url + "/groups/team%2Fa/reset?target=latest")
        assert status == 200 and _text(page, "group-id") == "team/a" and _numbers(_plan(page), "new") == [5]
        _group_configs(proc.bootstrap, "jobs", {"errors.deadletterqueue.topic.name": "jobs.dlq"})
        status, page = _get(url + "/groups/idle/reset?topic=orders&target=earliest")
        assert status == 200
        status, page_ = _get(url + "/groups/jobs")  # a share group's id: its queue page
        assert status == 200 and _text(page_, "queue-id") == "jobs"
        if read_only:
            assert 'id="reset-apply"' not in page and "reset-read-only" in page and 'id="delete-group"' not in page
            for path, fields in (("/groups/idle/reset", {"plan": "orders:0=0"}), ("/groups/idle/delete", {}),
                                 ("/queues/jobs/send-back", {})):
                status, page, _ = _post(url + path, {**fields, "csrf": "anything", "confirm": "yes"})
                assert status == 403 and "read-only" in page, path
        else:
            token = _csrf(page)
            assert 'id="reset-apply"' in page
            forged = [({"plan": "orders:0=0"}, None), ({"plan": "orders:0=0", "csrf": "guess"}, None),
                      ({"plan": "orders:0=0", "csrf": token}, "http://evil.example")]
            for fields, origin in forged:
                status, page, _ = _post(url + "/groups/idle/reset", fields, origin=origin)
                assert status == 403, (fields, origin)
            assert _post(url + "/groups/idle/delete", {"confirm": "yes"})[0] == 403
            assert _post(url + "/queues/jobs/send-back", {})[0] == 403
        # Nothing changed either way.
        offsets = _rows(_get(url + "/groups/idle")[1], "data-partition", "offsets")
        assert offsets["0"]["committed"] == "3"
        proc.stop()


def test_group_pages_follow_acls(broker_factory, tmp_path):
    data = tmp_path / "secured"
    users = UserStore(data)
    for user in ("alice", "bob", "carol"):
        users.add(user, f"{user}-pw")
    acls = Authorizer(data)
    acls.add(Acl("User:alice", "topic", "*", "all"))
    acls.add(Acl("User:alice", "group", "*", "all"))
    acls.add(Acl("User:alice", "cluster", "kafka-cluster", "all"))
    acls.add(Acl("User:bob", "group", "billing", "describe"))
    acls.add(Acl("User:bob", "topic", "orders", "describe"))
    acls.add(Acl("User:bob", "topic", "scratch", "write"))  # a page with a form, for his token
    acls.add(Acl("User:carol", "group", "billing", "read"))
    acls.add(Acl("User:carol", "topic", "orders", "read"))
    acls.add(Acl("User:carol", "topic", "secret", "describe"))
    proc, url = start_console(broker_factory, tmp_path, 'security_protocol = "SASL_PLAINTEXT"',
                              "authorizer_enable = true", data_dir=data)
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "alice", "sasl_password": "alice-pw"}
    _fill(proc.bootstrap, "orders", [5], **sasl)
    _fill(proc.bootstrap, "secret", [5], **sasl)
    _fill(proc.bootstrap, "scratch", [1], **sasl)
    for group, offsets in (("billing", {("orders", 0): 2, ("secret", 0): 1}), ("hidden", {("orders", 0): 1})):
        with SyncConsumer(proc.bootstrap, group_id=group, enable_auto_commit=False, **sasl) as consumer:
            consumer.commit(offsets, timeout=10)

    bob, carol, alice = (_login(url, u, f"{u}-pw") for u in ("bob", "carol", "alice"))
    assert set(_rows(_get(url + "/groups", alice)[1], "data-group")) == {"billing", "hidden"}
    rows = _rows(_get(url + "/groups", bob)[1], "data-group")
    assert set(rows) == {"billing"} and rows["billing"]["lag"] == "3"  # secret's lag is not his to see
    status, page = _get(url + "/groups/billing", bob)
    assert status == 200 and "secret" not in page
    assert set(_rows(page, "data-topic", "offsets")) == {"orders"} and "hidden-partitions" in page
    assert 'id="reset-form"' not in page and 'id="delete-form"' not in page  # no READ, no DELETE
    status, page = _get(url + "/groups/hidden", bob)
    assert status == 404 and "orders" not in page
    bob_token = _csrf(_get(url + "/topics/scratch", bob)[1])
    assert _post(url + "/groups/billing/reset", {"csrf": bob_token, "plan": "orders:0=0"}, bob)[0] == 403
    assert _post(url + "/groups/billing/delete", {"csrf": bob_token, "confirm": "yes"}, bob)[0] == 403
    assert _post(url + "/groups/hidden/delete", {"csrf": bob_token, "confirm": "yes"}, bob)[0] == 404

    # carol may read the group and orders, only describe secret: all topics means orders for her.
    status, page = _get(url + "/groups/billing/reset?target=earliest", carol)
    assert status == 200 and set(_plan(page)) == {("orders", 0)} and _text(page, "reset-left-out").startswith("1 ")
    fields = _hidden_fields(page, "reset-apply-form")
    assert _post(url + "/groups/billing/reset", {**fields, "plan": "secret:0=0"}, carol)[0] == 403
    status, page, _ = _post(url + "/groups/billing/reset", fields, carol)
    assert status == 200 and "reset 1 offsets" in page
    offsets = _rows(_get(url + "/groups/billing", alice)[1], "data-topic", "offsets")
    assert (offsets["orders"]["committed"], offsets["secret"]["committed"]) == ("0", "1")
    assert _post(url + "/groups/billing/delete", {"csrf": fields["csrf"], "confirm": "yes"}, carol)[0] == 403
    status, page = _get(url + "/groups/billing/reset?topic=secret&target=earliest", carol)
    assert status == 200 and "you may not read secret" in page and 'id="reset-apply"' not in page

    token = _csrf(_get(url + "/groups/billing", alice)[1])
    status, page, _ = _post(url + "/groups/billing/delete", {"csrf": token, "confirm": "yes"}, alice)
    assert status == 200 and set(_rows(page, "data-group")) == {"hidden"}


def test_parse_assignment_reads_the_consumer_protocol():
    import struct

    def string(s: str) -> bytes:
        return struct.pack(">h", len(s)) + s.encode()

    data = (struct.pack(">hi", 3, 2) + string("a") + struct.pack(">iii", 2, 0, 2) + string("b")
            + struct.pack(">ii", 1, 5) + struct.pack(">i", -1))
    assert parse_assignment(data) == [("a", 0), ("a", 2), ("b", 5)]
    assert parse_assignment(data[:9]) is None


# -- queues ------------------------------------------------------------------------------


def test_queue_pages_show_counts_and_dead_letters_go_back_to_the_source(broker_factory, tmp_path):
    proc, url = start_console(broker_factory, tmp_path)
    bootstrap = proc.bootstrap
    with SyncAdmin(bootstrap) as admin:
        admin.create_topic("jobs", 1)
    _group_configs(bootstrap, "workers", {
        "share.auto.offset.reset": "earliest", "share.delivery.count.limit": "2",
        "share.record.lock.duration.ms": "15000", "errors.deadletterqueue.topic.name": "jobs.dlq",
    })
    with SyncProducer(bootstrap) as producer:
        for i in range(4):
            producer.send("jobs", f"job-{i}", key=f"k{i}", headers=[("trace", f"t{i}".encode())])
        producer.flush(timeout=10)

    with SyncQueueConsumer(bootstrap, "jobs", group_id="workers", client_id="worker-1") as queue:
        got = {}
        while len(got) < 4:
            msg = queue.get(timeout=20)
            got[msg.value] = msg
        held = _rows(_get(url + "/queues/workers")[1], "data-partition", "queue-partitions")["0"]
        assert (held["start"], held["end"], held["available"], held["in-flight"]) == ("0", "4", "0", "4")
        got[b"job-0"].ack()
        got[b"job-1"].reject()  # dead-lettered: REJECTED
        got[b"job-3"].ack()
        got[b"job-2"].release()
        again = queue.get(timeout=20)
        assert (again.value, again.delivery_count) == (b"job-2", 2)
        again.release()  # the second delivery was the last: dead-lettered, DELIVERY_COUNT_EXCEEDED

        wait_until(lambda: _dead_letters(url, "workers") == 2, 30, what="two dead letters")
        rows = _rows(_get(url + "/queues")[1], "data-queue")
        assert rows["workers"]["cells"] == ["workers", "Stable", "1", "1", "0", "0", "2", "2", "jobs.dlq"]
        status, page = _get(url + "/queues/workers")
        assert status == 200
        assert (_text(page, "queue-state"), _text(page, "member-count")) == ("Stable", "1")
        assert (_text(page, "delivery-limit"), _text(page, "lock-duration"), _text(page, "dlq-topic")) == \
            ("2", "15000 ms", "jobs.dlq")
        assert 'href="/topics/jobs.dlq" id="dlq-link"' in page
        [member] = _rows(page, "data-member", "members").values()
        assert member["client"] == "worker-1" and "jobs: 0" in member["cells"][-1]
        part = _rows(page, "data-partition", "queue-partitions")["0"]
        assert {k: part[k] for k in ("start", "end", "available", "in-flight", "acknowledged-total",
                                     "archived-total")} == {"start": "4", "end": "4", "available": "0",
                                                            "in-flight": "0", "acknowledged-total": "2",
                                                            "archived-total": "2"}
        assert _rows(page, "data-name", "configs")["share.delivery.count.limit"]["cells"][1:] == ["2", "group"]
        dlq = _rows(page, "data-partition", "dlq-partitions")["0"]
        assert (dlq["start"], dlq["end"]) == ("0", "2")
        token = _csrf(page)
    assert _get(url + "/topics/jobs.dlq")[0] == 200  # where the link goes
    assert _get(url + "/queues/nobody")[0] == 404

    # Dead letter 0 only (job-1), then all of them.
    status, page, landed = _post(url + "/queues/workers/send-back", {"csrf": token, "from": "0", "to": "0"})
    assert status == 200 and "/queues/workers?message=" in landed
    assert _text(page, "message") == "sent 1 dead letters back to jobs-0 (1)"
    status, page, _ = _post(url + "/queues/workers/send-back", {"csrf": token, "partition": "all"})
    assert status == 200 and _text(page, "message") == "sent 2 dead letters back to jobs-0 (2)"
    assert _rows(page, "data-partition", "queue-partitions")["0"]["available"] == "3"

    with SyncQueueConsumer(bootstrap, "jobs", group_id="workers") as queue:
        back = [queue.get(timeout=20) for _ in range(3)]
        assert [(m.value, m.key, m.offset, m.delivery_count) for m in back] == [
            (b"job-1", b"k1", 4, 1), (b"job-1", b"k1", 5, 1), (b"job-2", b"k2", 6, 1)]
        assert all(dict(m.headers) == {"trace": m.value.replace(b"job-", b"t")} for m in back)
        for m in back:
            m.ack()


def test_queue_pages_follow_acls(broker_factory, tmp_path):
    data = tmp_path / "secured"
    users = UserStore(data)
    for user in ("alice", "bob", "carol"):
        users.add(user, f"{user}-pw")
    acls = Authorizer(data)
    acls.add(Acl("User:alice", "topic", "*", "all"))
    acls.add(Acl("User:alice", "group", "*", "all"))
    acls.add(Acl("User:alice", "cluster", "kafka-cluster", "all"))
    acls.add(Acl("User:bob", "group", "workers", "describe"))
    acls.add(Acl("User:carol", "group", "workers", "describe_configs"))
    acls.add(Acl("User:carol", "group", "workers", "describe"))
    acls.add(Acl("User:carol", "topic", "jobs", "describe"))
    acls.add(Acl("User:carol", "topic", "jobs.dlq", "read"))
    proc, url = start_console(broker_factory, tmp_path, 'security_protocol = "SASL_PLAINTEXT"',
                              "authorizer_enable = true", data_dir=data)
    sasl = {"security_protocol": "SASL_PLAINTEXT", "sasl_username": "alice", "sasl_password": "alice-pw"}
    with SyncAdmin(proc.bootstrap, **sasl) as admin:
        admin.create_topic("jobs", 1)
    for group in ("workers", "others"):
        _group_configs(proc.bootstrap, group, {"share.auto.offset.reset": "earliest",
                                               "errors.deadletterqueue.topic.name": "jobs.dlq"}, **sasl)
    with SyncProducer(proc.bootstrap, **sasl) as producer:
        producer.send("jobs", "job-0").result(10)
    with SyncQueueConsumer(proc.bootstrap, "jobs", group_id="workers", **sasl) as queue:
        queue.get(timeout=20).reject()
        alice = _login(url, "alice", "alice-pw")
        wait_until(lambda: _dead_letters(url, "workers", alice) == 1, 30, what="a dead letter")

    bob, carol = _login(url, "bob", "bob-pw"), _login(url, "carol", "carol-pw")
    rows = _rows(_get(url + "/queues", bob)[1], "data-queue")
    assert set(rows) == {"workers"} and rows["workers"]["cells"][-1] == "?"  # no DESCRIBE_CONFIGS
    status, page = _get(url + "/queues/workers", bob)
    assert status == 200 and "no-configs" in page and "jobs.dlq" not in page
    assert _rows(page, "data-partition", "queue-partitions") == {}  # no DESCRIBE on jobs
    assert _get(url + "/queues/others", bob)[0] == 404

    status, page = _get(url + "/queues/workers", carol)
    assert status == 200 and _text(page, "dlq-topic") == "jobs.dlq" and set(_rows(page, "data-topic")) == {"jobs"}
    token = _csrf(page)  # she may read the dead letters, not write to jobs
    status, page, _ = _post(url + "/queues/workers/send-back", {"csrf": token}, carol)
    assert status == 403 and "you may not write to jobs" in page
    assert _rows(_get(url + "/queues/workers", alice)[1], "data-partition", "queue-partitions")["0"]["end"] == "1"
