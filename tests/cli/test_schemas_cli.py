"""``logbroker schemas`` against a real ``logbroker serve`` with its schema
registry on: register, list, get, check (compatible and not), config,
soft and permanent deletes, the three schema types and references, HTTP
Basic logins, and errors as one line with exit status 1."""

from __future__ import annotations

import json
import re
import time
import uuid

import pytest
from click.testing import CliRunner

from brokerproc import BrokerProcess
from logbroker.broker.security import UserStore
from logbroker.cli.main import main

_REGISTRY_LINE = re.compile(r"schema registry on (http://\S+:\d+)/")
_CLEAN_ENV = {"LOGBROKER_SCHEMA_REGISTRY": None, "LOGBROKER_SCHEMA_REGISTRY_USER": None,
              "LOGBROKER_SCHEMA_REGISTRY_PASSWORD": None, "LOGBROKER_SASL_USERNAME": None,
              "LOGBROKER_SASL_PASSWORD": None}

USER_V1 = {"type": "record", "name": "User", "namespace": "shop", "fields": [{"name": "name", "type": "string"}]}
USER_V2 = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "age", "type": "int", "default": 0}]}
USER_BAD = {**USER_V1, "fields": [*USER_V1["fields"], {"name": "email", "type": "string"}]}
ORDER_PROTO = 'syntax = "proto3";\npackage shop;\n\nmessage Order {\n  int64 id = 1;\n  string item = 2;\n}\n'


def _start(data_dir, *extra: str) -> tuple[BrokerProcess, str]:
    config = data_dir.parent / f"{data_dir.name}.toml"
    config.write_text("schema_registry_port = 0\n" + "".join(line + "\n" for line in extra))
    proc = BrokerProcess(data_dir, "--config", str(config)).start()
    deadline = time.monotonic() + 15
    while not (found := _REGISTRY_LINE.search(proc.log)):
        assert time.monotonic() < deadline, proc.log
        time.sleep(0.02)
    return proc, found.group(1)


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    proc, found = _start(tmp_path_factory.mktemp("schemas-cli") / "data")
    yield found
    proc.kill()


@pytest.fixture
def subject() -> str:
    return f"users-{uuid.uuid4().hex[:8]}-value"


def run(url: str | None, *args: str, input: str | None = None, env: dict | None = None, code: int = 0):
    argv = ["schemas", *args] + (["--schema-registry", url] if url else [])
    result = CliRunner().invoke(main, argv, input=input, env={**_CLEAN_ENV, **(env or {})})
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def one_line_error(result, *fragments: str) -> None:
    err = result.stderr
    assert err.startswith("Error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def _file(tmp_path, name: str, content) -> str:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_register_list_get_check_config_delete(url, subject, tmp_path):
    v1, v2, bad = (_file(tmp_path, f"{n}.avsc", s) for n, s in (("v1", USER_V1), ("v2", USER_V2), ("bad", USER_BAD)))
    first = run(url, "register", subject, v1).stdout
    found = re.fullmatch(rf"registered {subject} version 1 \(schema id (\d+)\)\n", first)
    assert found, first
    first_id = int(found.group(1))
    assert run(url, "register", subject, v1).stdout == first  # the same schema: the same version

    listed = run(url, "list").stdout.splitlines()
    assert listed[0].split() == ["SUBJECT", "VERSION", "ID", "TYPE"]
    assert [subject, "1", str(first_id), "AVRO"] in [line.split() for line in listed]

    shown = run(url, "get", subject).stdout
    assert shown.startswith(f"subject  {subject}\nversion  1\nid       {first_id}\ntype     AVRO\n")
    assert json.loads(shown.split("type     AVRO\n", 1)[1]) == USER_V1
    as_json = json.loads(run(url, "get", subject, "--version", "1", "--format", "json").stdout)
    assert as_json == {"subject": subject, "version": 1, "id": first_id, "schema": json.dumps(USER_V1)}
    by_id = run(url, "get", "--id", str(first_id)).stdout
    assert f"used by  {subject} v1\n" in by_id and json.loads(by_id.split("\n", 3)[3]) == USER_V1

    compatible = run(url, "check", subject, v2)
    assert compatible.stdout == f"compatible with {subject} (version latest)\n"
    incompatible = run(url, "check", subject, bad, code=1)
    assert incompatible.stdout.startswith(f"incompatible with {subject} (version latest):\n"
                                          "  - READER_FIELD_MISSING_DEFAULT_VALUE: ")
    verdict = json.loads(run(url, "check", subject, bad, "--format", "json", code=1).stdout)
    assert verdict["is_compatible"] is False and "'email'" in verdict["messages"][0]

    assert run(url, "register", subject, v2, "--format", "json").stdout.startswith(
        f'{{"id": {first_id + 1}, "subject": "{subject}", "version": 2}}')
    rows = json.loads(run(url, "list", "--prefix", subject[:14], "--format", "json").stdout)
    assert rows == [{"subject": subject, "version": 2, "id": first_id + 1, "schemaType": "AVRO"}]

    # without `name` (no default): new readers read old data (BACKWARD), old readers not new data (FULL)
    no_name = _file(tmp_path, "no-name.avsc", {**USER_V2, "fields": USER_V2["fields"][1:]})
    assert run(url, "config").stdout == "global: BACKWARD\n"
    assert run(url, "config", subject).stdout == \
        f"{subject}: BACKWARD (the global level; the subject has none of its own)\n"
    assert run(url, "check", subject, no_name).stdout.startswith("compatible")
    assert run(url, "config", subject, "--set", "full").stdout == f"{subject}: set to FULL\n"
    assert json.loads(run(url, "config", subject, "--format", "json").stdout) == {
        "subject": subject, "compatibility": "FULL", "inherited": False}
    assert "'name'" in run(url, "check", subject, no_name, code=1).stdout
    assert run(url, "config", subject, "--unset").stdout == f"{subject}: unset (was FULL); the global level applies\n"
    assert run(url, "config", subject, "--format", "json").stdout == \
        f'{{"compatibility": "BACKWARD", "inherited": true, "subject": "{subject}"}}\n'

    assert run(url, "delete", subject, "--version", "1").stdout == f"deleted {subject} version 1\n"
    too_soon = run(url, "delete", subject, "--permanent", code=1)
    one_line_error(too_soon, "was not deleted first", "40405")
    assert run(url, "delete", subject).stdout == f"deleted {subject} version 2\n"
    assert run(url, "list", "--prefix", subject).stderr == "(no subjects)\n"
    assert subject in run(url, "list", "--deleted").stdout
    assert json.loads(run(url, "delete", subject, "--permanent", "--format", "json").stdout) == {
        "subject": subject, "versions": [1, 2], "permanent": True}
    assert subject not in run(url, "list", "--deleted").stdout


def test_global_level_and_transitive_checks(url, subject, tmp_path):
    v1, v2 = _file(tmp_path, "v1.avsc", USER_V1), _file(tmp_path, "v2.avsc", USER_V2)
    run(url, "register", subject, v1)
    run(url, "config", subject, "--set", "FORWARD")
    run(url, "register", subject, v2)
    no_age = _file(tmp_path, "no-age.avsc", USER_V1)
    # FORWARD: v2's readers (the old schema) read data of the new: dropping `age` is fine for v2
    assert run(url, "check", subject, no_age).stdout.startswith("compatible")
    assert run(url, "check", subject, no_age, "--version", "all").stdout == f"compatible with {subject} (all)\n"
    assert run(url, "check", subject, _file(tmp_path, "int.avsc", '"int"'), "--version", "1", code=1).stdout \
        .startswith(f"incompatible with {subject} (version 1):\n  - ")


def test_protobuf_json_references_and_stdin(url, tmp_path):
    tag = uuid.uuid4().hex[:8]
    proto = _file(tmp_path, "order.proto", ORDER_PROTO)
    run(url, "register", f"orders-{tag}-value", proto)
    shown = run(url, "get", f"orders-{tag}-value").stdout
    assert "type     PROTOBUF\n" in shown and shown.endswith(ORDER_PROTO)

    json_schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    run(url, "register", f"numbers-{tag}-value", _file(tmp_path, "n.json", json_schema), "--type", "json")
    assert json.loads(run(url, "get", f"numbers-{tag}-value", "--format", "json").stdout)["schemaType"] == "JSON"

    line = {"type": "record", "name": "Line", "namespace": "shop", "fields": [{"name": "qty", "type": "int"}]}
    assert run(url, "register", f"line-{tag}", "-", input=json.dumps(line)).stdout.startswith(
        f"registered line-{tag} version 1")
    order = {"type": "record", "name": "Order", "namespace": "shop", "fields": [{"name": "l", "type": "shop.Line"}]}
    order_file = _file(tmp_path, "order.avsc", order)
    missing = run(url, "register", f"order-{tag}-value", order_file, code=1)
    one_line_error(missing, "42201")
    run(url, "register", f"order-{tag}-value", order_file, "--reference", f"shop.Line=line-{tag}:latest")
    assert f"uses     shop.Line=line-{tag}:1\n" in run(url, "get", f"order-{tag}-value").stdout
    assert run(url, "check", f"order-{tag}-value", order_file, "--reference", f"shop.Line=line-{tag}:1").stdout \
        .startswith("compatible")


def test_errors_are_one_line(url, subject, tmp_path):
    one_line_error(run(url, "get", "no-such-subject", code=1), "Subject 'no-such-subject' not found", "40401")
    one_line_error(run(url, "get", "--id", "999999", code=1), "40403")
    one_line_error(run(url, "register", subject, "-", input='{"type": "recrod"}', code=1), "42201")
    one_line_error(run(url, "delete", "no-such-subject", code=1), "40401")
    v1 = _file(tmp_path, "v1.avsc", USER_V1)
    run(url, "register", subject, v1)
    one_line_error(run(url, "get", subject, "--version", "7", code=1), "40402")

    unreachable = run("http://127.0.0.1:1", "list", code=1)
    assert unreachable.stderr.startswith("Error: cannot reach the schema registry at http://127.0.0.1:1: ")
    assert "--schema-registry URL (or LOGBROKER_SCHEMA_REGISTRY)" in unreachable.stderr
    # the environment names the registry when the option does not
    assert subject in run(None, "list", env={"LOGBROKER_SCHEMA_REGISTRY": url}).stdout

    for args, fragment in [
        (("get",), "give SUBJECT (and --version) or --id N"),
        (("get", subject, "--id", "1"), "not both"),
        (("get", subject, "--version", "zero"), "not a version number"),
        (("register", subject, str(tmp_path / "missing.avsc")), "cannot read"),
        (("register", subject, _file(tmp_path, "empty.avsc", " ")), "is empty"),
        (("register", subject, v1, "--reference", "shop.Line"), "NAME=SUBJECT:VERSION"),
        (("register", subject, v1, "--type", "xml"), "'xml' is not one of"),
        (("config", "--set", "SIDEWAYS"), "'SIDEWAYS' is not one of"),
        (("config", "--unset"), "--unset needs a SUBJECT"),
    ]:
        result = run(url, *args, code=2)
        assert fragment in result.stderr, (args, result.stderr)
    bad_url = run("localhost:8081", "list", code=2)
    assert "is not http://HOST:PORT" in bad_url.stderr


def test_basic_auth_from_options_environment_or_the_sasl_login(tmp_path):
    data = tmp_path / "secured"
    UserStore(data).add("alice", "s3cret")
    proc, secured = _start(data, 'security_protocol = "SASL_PLAINTEXT"')
    try:
        refused = run(secured, "list", code=1)
        assert refused.stderr.startswith("Error: Unauthorized") and "--user/--password" in refused.stderr
        wrong = run(secured, "list", "--user", "alice", "--password", "nope", code=1)
        assert "(error 40101)\nGive a broker user with --user/--password" in wrong.stderr
        assert run(secured, "list", "--user", "alice", "--password", "s3cret").stderr == "(no subjects)\n"
        env = {"LOGBROKER_SCHEMA_REGISTRY_USER": "alice", "LOGBROKER_SCHEMA_REGISTRY_PASSWORD": "s3cret"}
        run(secured, "register", "x-value", "-", input='"string"', env=env)
        via_sasl = CliRunner().invoke(main, ["--sasl-username", "alice", "--sasl-password", "s3cret", "schemas",
                                             "list", "--schema-registry", secured], env=_CLEAN_ENV)
        assert via_sasl.exit_code == 0 and "x-value" in via_sasl.stdout, via_sasl.output
    finally:
        proc.kill()
