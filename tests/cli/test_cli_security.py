"""The command line against secured brokers: SASL_PLAINTEXT and SASL_SSL
listeners, the login from options, LOGBROKER_* variables or a properties
file, and a wrong password refused at once with a hint."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from click.testing import CliRunner

from logbroker.broker.security import UserStore
from logbroker.cli.main import main


def _secured(broker_factory, tmp_path, protocol, extra=()):
    data = tmp_path / "data"
    UserStore(data).add("alice", "s3cret")
    config = tmp_path / "broker.toml"
    config.write_text("\n".join([f'security_protocol = "{protocol}"', *extra]) + "\n")
    return broker_factory("--config", str(config), data_dir=data)


def _cli(*args, input=None, env=None):
    return CliRunner().invoke(main, list(args), input=input, env=env or {})


def _round_trip(bootstrap: str, topic: str, *login: str, env=None) -> None:
    created = _cli("topics", "create", topic, "-p", "2", "-b", bootstrap, *login, env=env)
    assert created.exit_code == 0, created.output
    sent = _cli("produce", topic, "-b", bootstrap, *login, input="one\ntwo\nthree\n", env=env)
    assert sent.exit_code == 0, sent.output
    read = _cli("consume", topic, "--from-beginning", "-e", "-b", bootstrap, *login, env=env)
    assert read.exit_code == 0, read.output
    assert sorted(read.stdout.split()) == ["one", "three", "two"]
    listed = _cli("topics", "list", "-b", bootstrap, *login, env=env)
    assert topic in listed.stdout.split()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sasl_plaintext_with_options(broker_factory, tmp_path, mechanism):
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    _round_trip(broker.bootstrap, f"t-{mechanism.lower()}", "--sasl-mechanism", mechanism,
                "--sasl-username", "alice", "--sasl-password", "s3cret")


def test_login_from_environment_and_from_a_properties_file(broker_factory, tmp_path):
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    env = {"LOGBROKER_SASL_MECHANISM": "SCRAM-SHA-256", "LOGBROKER_SASL_USERNAME": "alice",
           "LOGBROKER_SASL_PASSWORD": "s3cret"}
    _round_trip(broker.bootstrap, "from-env", env=env)
    props = tmp_path / "client.properties"
    props.write_text(
        f"bootstrap.servers={broker.bootstrap}\nsecurity.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\n"
        'sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required '
        'username="alice" password="s3cret";\n'
    )
    status = _cli("status", "--command-config", str(props))
    assert status.exit_code == 0, status.output
    # the group's option applies to the command after it
    groups = _cli("--command-config", str(props), "groups", "list")
    assert groups.exit_code == 0, groups.output


def test_wrong_password_fails_at_once_with_a_hint(broker_factory, tmp_path):
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    started = time.monotonic()
    result = _cli("topics", "list", "-b", broker.bootstrap, "--sasl-mechanism", "SCRAM-SHA-256",
                  "--sasl-username", "alice", "--sasl-password", "wrong")
    assert result.exit_code == 1
    assert "login as alice failed" in result.output and "--sasl-password" in result.output
    assert "Traceback" not in result.output
    assert time.monotonic() - started < 5


def test_no_login_against_a_sasl_listener_says_so(broker_factory, tmp_path):
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    started = time.monotonic()
    result = _cli("topics", "list", "-b", broker.bootstrap, "--timeout", "2")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert time.monotonic() - started < 10


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command makes the test certificate")
def test_sasl_ssl_with_a_ca_file(broker_factory, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    broker = _secured(broker_factory, tmp_path, "SASL_SSL", [f'ssl_certfile = "{cert}"', f'ssl_keyfile = "{key}"'])
    login = ("--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", "alice", "--sasl-password", "s3cret")
    # a CA file and a user name mean SASL_SSL without saying so
    _round_trip(broker.bootstrap, "over-tls", "--ssl-ca", str(cert), *login)
    # without the CA the broker's certificate does not verify: one clear line
    refused = _cli("topics", "list", "-b", broker.bootstrap, "--security-protocol", "SASL_SSL", *login)
    assert refused.exit_code == 1 and "certificate" in refused.output and "Traceback" not in refused.output
