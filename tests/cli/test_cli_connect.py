"""Where a command's connection settings come from: options, the same options
before the command, LOGBROKER_* variables, --command-config files, defaults;
and how fast and how clearly a command fails when no broker answers."""

from __future__ import annotations

import os
import socket
import time

import click
import pytest
from click.testing import CliRunner

from logbroker.cli.connect import ClientSettings, client_options, load_command_config, root_client_options


@click.group()
@root_client_options
def _root() -> None:
    pass


@_root.command("show")
@client_options
def _show(client: ClientSettings) -> None:
    options = client.options()
    click.echo(repr({"bootstrap": client.bootstrap, "timeout": client.timeout_s, **options}))


def _settings(*args: str, env: dict[str, str] | None = None) -> dict:
    result = CliRunner().invoke(_root, list(args), env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return eval(result.output)  # the repr of a dict of plain values


def test_defaults_are_localhost_and_five_seconds():
    s = _settings("show")
    assert s["bootstrap"] == "localhost:9092"
    assert s["timeout"] == 5.0
    assert s["connect_timeout_ms"] == 5000
    assert s["request_timeout_ms"] == 30000  # a slow answer is not an unreachable broker
    assert "security_protocol" not in s


def test_client_id_names_the_command_the_host_and_the_process():
    s = _settings("show")
    assert s["client_id"] == f"logbroker-show-{socket.gethostname()}-{os.getpid()}"


def test_command_option_beats_root_option_beats_environment(tmp_path):
    env = {"LOGBROKER_BOOTSTRAP": "env:1", "LOGBROKER_TIMEOUT": "7"}
    assert _settings("show", env=env)["bootstrap"] == "env:1"
    assert _settings("show", env=env)["timeout"] == 7.0
    assert _settings("-b", "root:2", "show", env=env)["bootstrap"] == "root:2"
    assert _settings("-b", "root:2", "show", "-b", "cmd:3", env=env)["bootstrap"] == "cmd:3"
    assert _settings("--timeout", "2", "show")["timeout"] == 2.0


def test_properties_file_as_kafka_tools_take_it(tmp_path):
    props = tmp_path / "client.properties"
    props.write_text(
        "# written for kafka-console-consumer\n"
        "bootstrap.servers=broker:9093\n"
        "security.protocol=SASL_SSL\n"
        "sasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \\\n'
        '    username="alice" password="p\\"w";\n'
        "ssl.ca.location=/etc/ca.pem\n"
        "ssl.endpoint.identification.algorithm=\n"
    )
    s = _settings("show", "--command-config", str(props))
    assert s["bootstrap"] == "broker:9093"
    assert s["security_protocol"] == "SASL_SSL"
    assert s["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (s["sasl_username"], s["sasl_password"]) == ("alice", 'p"w')
    assert s["ssl_cafile"] == "/etc/ca.pem"
    assert s["ssl_check_hostname"] is False
    # an option still beats the file
    assert _settings("show", "--command-config", str(props), "-b", "other:1")["bootstrap"] == "other:1"


def test_toml_file_nested_or_dotted(tmp_path):
    conf = tmp_path / "client.toml"
    conf.write_text('timeout = 3\n[sasl]\nusername = "bob"\npassword = "pw"\nmechanism = "scram-sha-256"\n')
    s = _settings("show", "--command-config", str(conf))
    assert s["timeout"] == 3.0 and s["sasl_username"] == "bob"
    assert s["sasl_mechanism"] == "SCRAM-SHA-256"
    assert s["security_protocol"] == "SASL_PLAINTEXT"  # a user name implies SASL


def test_environment_gives_the_login():
    env = {"LOGBROKER_SASL_USERNAME": "carol", "LOGBROKER_SASL_PASSWORD": "x", "LOGBROKER_SSL_CA": "/ca.pem"}
    s = _settings("show", env=env)
    assert s["security_protocol"] == "SASL_SSL"  # a CA file and a user: SASL over TLS
    assert s["ssl_cafile"] == "/ca.pem"


def test_password_never_shown_in_descriptions():
    settings = ClientSettings(security={"sasl_username": "alice", "sasl_password": "hunter2"})
    assert "hunter2" not in settings.describe() and "alice" in settings.describe()


@pytest.mark.parametrize("text, message", [
    ("nonsense.setting=1\n", "unknown setting 'nonsense.setting'"),
    ("no separator here at all\n", "unknown setting 'no'"),
    ("request.timeout.ms=soon\n", "must be a number"),
])
def test_bad_files_are_one_line_errors(tmp_path, text, message):
    props = tmp_path / "bad.properties"
    props.write_text(text)
    with pytest.raises(click.BadParameter, match=message):
        load_command_config(str(props))


def test_missing_file_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(_root, ["show", "--command-config", str(tmp_path / "nope.properties")])
    assert result.exit_code == 2 and "cannot read" in result.output


def test_security_options_hidden_from_command_help_but_on_the_root():
    from logbroker.cli.main import main

    command_help = CliRunner().invoke(main, ["topics", "list", "--help"]).output
    assert "--bootstrap" in command_help and "LOGBROKER_BOOTSTRAP" in command_help
    assert "--sasl-username" not in command_help and "logbroker --help" in command_help
    root_help = CliRunner().invoke(main, ["--help"]).output
    for option in ("--sasl-username", "--sasl-password", "--ssl-ca", "--command-config", "LOGBROKER_BOOTSTRAP"):
        assert option in root_help


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", [["topics", "list"], ["groups", "list"], ["status"]])
def test_no_broker_fails_within_the_timeout_with_a_hint(command):
    from logbroker.cli.main import main

    started = time.monotonic()
    result = CliRunner().invoke(main, [*command, "-b", f"127.0.0.1:{_closed_port()}", "--timeout", "1"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 1
    assert "logbroker serve" in result.output and "Traceback" not in result.output
    assert elapsed < 5, elapsed


def test_an_unexpected_error_is_one_line_not_a_traceback(monkeypatch):
    from logbroker.cli import topics
    from logbroker.cli.main import main

    class Broken:
        def __init__(self, *args, **kwargs):
            raise TypeError("simulated bug")

    monkeypatch.setattr(topics, "Admin", Broken)
    result = CliRunner().invoke(main, ["topics", "list"])
    assert result.exit_code == 1
    assert "internal error: TypeError: simulated bug" in result.output and "LOGBROKER_DEBUG" in result.output
    monkeypatch.setenv("LOGBROKER_DEBUG", "1")
    assert isinstance(CliRunner().invoke(main, ["topics", "list"]).exception, TypeError)
