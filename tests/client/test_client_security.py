"""The client's security settings: TLS, SASL logins (PLAIN, SCRAM-SHA-256/512) and the bootstrap timeout.

First without sockets: config validation, the SCRAM client against RFC 7677's
example, logins and TLS against a scripted broker in memory. Then real
``logbroker serve`` processes with SASL_PLAINTEXT, SASL_SSL and SSL listeners
(certificates made with openssl, as tests/security/test_sasl_interop.py does).
"""

from __future__ import annotations

import base64
import dataclasses
import re
import shutil
import socket
import ssl
import subprocess
import time

import pytest
import trio
import trio.testing

from logbroker.broker.security import SCRAM_MECHANISMS, ScramCredential, UserStore, new_mechanism
from logbroker.broker.security import AuthenticationError as BrokerAuthenticationError
from logbroker.client import Admin, Consumer, Producer, SyncAdmin, SyncConsumer, SyncProducer, TopicPartition
from logbroker.client._sasl import PlainExchange, SaslCredentials, ScramExchange, new_exchange
from logbroker.client.cluster import Cluster
from logbroker.client.config import AdminConfig, ClientConfig, ConsumerConfig, ProducerConfig
from logbroker.errors import AuthenticationError, InvalidConfigError, KafkaConnectionError
from logbroker.protocol import ApiKey, ErrorCode, build

from brokerproc import wait_until
from client_fakes import FakeBroker, metadata_answer

MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="the openssl command makes the test certificates")


def _login(protocol: str = "SASL_PLAINTEXT", mechanism: str = "SCRAM-SHA-256", password: str = "s3cret",
           **tls: object) -> dict:
    return dict(security_protocol=protocol, sasl_mechanism=mechanism, sasl_username="alice",
                sasl_password=password, **tls)


# -- config ---------------------------------------------------------------------------------


def test_security_settings_are_validated_and_normalised():
    c = ClientConfig(security_protocol="sasl_ssl", sasl_mechanism="scram-sha-512", sasl_username="alice",
                     sasl_password="pw", ssl_cafile="ca.pem", bootstrap_timeout_ms=5000)
    assert (c.security_protocol, c.sasl_mechanism) == ("SASL_SSL", "SCRAM-SHA-512")
    assert c.uses_ssl and c.uses_sasl and c.bootstrap_timeout_ms == 5000
    plain = ClientConfig()
    assert (plain.security_protocol, plain.sasl_mechanism, plain.ssl_check_hostname) == ("PLAINTEXT", "PLAIN", True)
    assert not plain.uses_ssl and not plain.uses_sasl and plain.bootstrap_timeout_ms is None
    assert ClientConfig(security_protocol="Ssl", ssl_cafile="ca.pem", ssl_certfile="c.pem").uses_ssl

    bad = [
        (dict(security_protocol="TLS"), "security_protocol must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
        (dict(security_protocol=None), "security_protocol must be one of"),
        (dict(sasl_mechanism="GSSAPI"), "sasl_mechanism must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
        (dict(security_protocol="SASL_PLAINTEXT"), "missing: sasl_username, sasl_password"),
        (dict(security_protocol="SASL_SSL", sasl_username="alice"), "missing: sasl_password"),
        (dict(security_protocol="SASL_SSL", sasl_username="", sasl_password="pw"), "missing: sasl_username"),
        (dict(sasl_username="alice", sasl_password="pw"), "use SASL_PLAINTEXT or SASL_SSL"),
        (dict(security_protocol="SASL_PLAINTEXT", sasl_username="alice", sasl_password="pw", ssl_cafile="ca.pem"),
         "ssl_cafile set but security_protocol=SASL_PLAINTEXT does not use TLS"),
        (dict(security_protocol="SSL", ssl_keyfile="k.pem"), "ssl_keyfile needs ssl_certfile"),
        (dict(security_protocol="SSL", ssl_cafile=3), "ssl_cafile must be a string or None"),
        (dict(security_protocol="SSL", ssl_check_hostname="no"), "ssl_check_hostname must be True or False"),
        (dict(bootstrap_timeout_ms=0), "bootstrap_timeout_ms must be a positive int"),
        (dict(bootstrap_timeout_ms=-5), "bootstrap_timeout_ms must be a positive int"),
        (dict(bootstrap_timeout_ms="5000"), "bootstrap_timeout_ms must be a positive int"),
    ]
    for options, message in bad:
        with pytest.raises(InvalidConfigError, match=re.escape(message)):
            ClientConfig(**options)


@pytest.mark.parametrize("cls", [ClientConfig, ProducerConfig, ConsumerConfig, AdminConfig])
def test_the_password_never_shows_in_a_repr(cls):
    config = cls.from_options("h:1", _login(password="hunter2-secret"))
    assert "hunter2-secret" not in repr(config) and "sasl_username='alice'" in repr(config)
    assert config.sasl_password == "hunter2-secret"
    credentials = SaslCredentials("PLAIN", "alice", "hunter2-secret")
    assert "hunter2-secret" not in repr(credentials) and "hunter2-secret" not in repr(new_exchange(credentials))


def test_every_client_takes_the_security_options_by_name():
    options = dict(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="alice",
                   sasl_password="pw", ssl_cafile="ca.pem", ssl_certfile="c.pem", ssl_keyfile="k.pem",
                   ssl_check_hostname=False, bootstrap_timeout_ms=5000)
    for client in (Admin("h:1", **options), Producer("h:1", **options), Consumer("h:1", **options)):
        assert {name: getattr(client.config, name) for name in options} == options
    with pytest.raises(InvalidConfigError, match="missing: sasl_password"):
        Admin("h:1", security_protocol="SASL_PLAINTEXT", sasl_username="alice")


async def test_unusable_tls_files_are_reported_when_the_client_starts(tmp_path, nursery):
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("no certificate here\n")
    cases = [
        (dict(ssl_cafile=str(tmp_path / "missing.pem")), "ssl_cafile .*missing.pem.* cannot be used"),
        (dict(ssl_cafile=str(not_pem)), "ssl_cafile .*not.pem.* cannot be used"),
        (dict(ssl_certfile=str(not_pem)), "ssl_certfile .*not.pem.* cannot be used"),
    ]
    for options, message in cases:
        with pytest.raises(InvalidConfigError, match=message):
            Cluster(ClientConfig(security_protocol="SSL", **options), nursery)
        with pytest.raises(InvalidConfigError, match=message):
            async with Admin("h:1", security_protocol="SSL", **options):
                pass


# -- the SASL client, sans I/O -----------------------------------------------------------------

# RFC 7677 section 3: SCRAM-SHA-256, user "user", password "pencil".
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def _rfc_exchange(password: str = "pencil") -> ScramExchange:
    return ScramExchange(SaslCredentials("SCRAM-SHA-256", "user", password), nonce=RFC_CLIENT_NONCE)


def test_scram_sha_256_matches_rfc_7677():
    exchange = _rfc_exchange()
    assert exchange.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert exchange.step(RFC_SERVER_FIRST) == RFC_CLIENT_FINAL
    assert exchange.step(RFC_SERVER_FINAL) is None
    with pytest.raises(AuthenticationError, match="after the exchange ended"):
        exchange.step(b"v=again")


def test_scram_refuses_a_server_that_does_not_know_the_password():
    forged = base64.b64encode(bytes(32)).decode()
    cases = [
        (RFC_SERVER_FIRST, f"v={forged}".encode(), "signature is wrong: it does not know the password"),
        (RFC_SERVER_FIRST, b"e=invalid-proof", "ended the SCRAM exchange: invalid-proof"),
        (RFC_SERVER_FIRST, b"v=", "signature is wrong"),
        (RFC_SERVER_FIRST, b"v=!!!", "not base64"),
        (b"r=someone-elses-nonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", None, "nonce does not extend ours"),
        (b"r=" + RFC_CLIENT_NONCE.encode() + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", None, "nonce does not extend"),
        (RFC_SERVER_FIRST.replace(b"i=4096", b"i=1024"), None, "1024 SCRAM iterations, fewer than the minimum 4096"),
        (RFC_SERVER_FIRST.replace(b"i=4096", b"i=x"), None, "malformed SCRAM server-first"),
        (RFC_SERVER_FIRST.replace(b"s=W22ZaJ0SNY7soEsUEjb6gQ==", b"s=*"), None, "salt is not base64"),
        (b"\xff\xfe", None, "not UTF-8"),
    ]
    for server_first, server_final, message in cases:
        exchange = _rfc_exchange()
        exchange.first()
        with pytest.raises(AuthenticationError, match=message):
            exchange.step(server_first)
            exchange.step(server_final or b"")


@pytest.mark.parametrize("mechanism", sorted(SCRAM_MECHANISMS))
def test_scram_client_and_the_brokers_scram_agree(mechanism):
    credential = ScramCredential.create("s3cret", mechanism)
    for password, logged_in in (("s3cret", True), ("wrong", False)):
        server = new_mechanism(mechanism, lambda user, mech: credential if user == "a,b=c" else None)
        client = new_exchange(SaslCredentials(mechanism, "a,b=c", password))  # a name that needs escaping
        first = client.first()
        assert first.startswith(b"n,,n=a=2Cb=3Dc,r=")
        final = client.step(server.step(first))
        assert final is not None
        if logged_in:
            assert client.step(server.step(final)) is None and server.principal == "a,b=c"
        else:
            with pytest.raises(BrokerAuthenticationError):
                server.step(final)


def test_plain_sends_one_message():
    exchange = new_exchange(SaslCredentials("PLAIN", "alice", "pä55"))
    assert isinstance(exchange, PlainExchange)
    assert exchange.first() == b"\x00alice\x00p\xc3\xa455" and exchange.step(b"") is None
    with pytest.raises(AuthenticationError, match="unsupported SASL mechanism 'GSSAPI'"):
        new_exchange(SaslCredentials("GSSAPI", "alice", "pw"))


# -- logins against a scripted broker in memory -------------------------------------------------


def _sasl_fake(nursery, *, offered=tuple(MECHANISMS), forge_signature=False) -> FakeBroker:
    """A FakeBroker that checks logins with the broker's own mechanisms (alice / s3cret)."""
    fake = FakeBroker(nursery)
    credentials = {m: ScramCredential.create("s3cret", m) for m in SCRAM_MECHANISMS}
    exchanges = []

    def lookup(user, mechanism):
        return credentials[mechanism] if user == "alice" else None

    def handshake(r):
        mechanism = r.body.mechanism
        if mechanism not in offered:
            return build(r.response_module.SaslHandshakeResponse, error_code=ErrorCode.unsupported_sasl_mechanism,
                         mechanisms=list(offered))
        exchanges.append(new_mechanism(mechanism, lookup))
        return build(r.response_module.SaslHandshakeResponse, error_code=ErrorCode.none, mechanisms=list(offered))

    def authenticate(r):
        m = r.response_module
        try:
            reply = exchanges[-1].step(bytes(r.body.auth_bytes))
        except BrokerAuthenticationError as exc:
            return build(m.SaslAuthenticateResponse, error_code=ErrorCode.sasl_authentication_failed,
                         error_message=str(exc), auth_bytes=b"")
        if forge_signature and reply.startswith(b"v="):
            reply = b"v=" + base64.b64encode(bytes(len(base64.b64decode(reply[2:]))))
        return build(m.SaslAuthenticateResponse, error_code=ErrorCode.none, error_message=None, auth_bytes=reply,
                     session_lifetime=0)

    fake.handlers[ApiKey.SASL_HANDSHAKE] = handshake
    fake.handlers[ApiKey.SASL_AUTHENTICATE] = authenticate
    fake.handlers[ApiKey.METADATA] = lambda r: metadata_answer(r, {"t": 1})
    return fake


def _keys(fake: FakeBroker) -> list[str]:
    return [ApiKey(r.api_key).name for r in fake.requests]


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_each_mechanism_logs_in_before_anything_else(nursery, mechanism):
    fake = _sasl_fake(nursery)
    cluster = Cluster(ClientConfig(bootstrap="fake:9092", **_login(mechanism=mechanism)), nursery,
                      connector=fake.connector)
    meta = await cluster.refresh(["t"])
    assert "t" in meta.topics
    rounds = 1 if mechanism == "PLAIN" else 2
    assert _keys(fake) == ["API_VERSIONS", "SASL_HANDSHAKE"] + ["SASL_AUTHENTICATE"] * rounds + ["METADATA"]
    auth = [r for r in fake.requests if r.api_key == ApiKey.SASL_AUTHENTICATE]
    assert {r.api_version for r in auth} == {2} and fake.requests[1].api_version == 1
    conn = await cluster.any_connection()
    assert conn.user == "alice" and "user='alice'" in repr(conn) and "s3cret" not in repr(conn)
    await cluster.aclose()


async def test_a_refused_login_is_raised_at_once_and_not_retried(nursery):
    fake = _sasl_fake(nursery)
    cluster = Cluster(ClientConfig(bootstrap="fake:9092", request_timeout_ms=30_000, **_login(password="nope")),
                      nursery, connector=fake.connector)
    started = trio.current_time()
    with pytest.raises(AuthenticationError) as caught:
        await cluster.refresh(["t"])
    assert trio.current_time() - started < 2
    assert str(caught.value).startswith("login as alice failed at fake:9092: SASL authentication failed "
                                        "(wrong user name or password?)")
    assert "nope" not in str(caught.value)
    assert not caught.value.retriable and caught.value.code == ErrorCode.sasl_authentication_failed
    assert _keys(fake).count("SASL_HANDSHAKE") == 1 and "METADATA" not in _keys(fake)


async def test_callers_waiting_for_a_refused_login_share_its_error(nursery):
    fake = _sasl_fake(nursery)
    cluster = Cluster(ClientConfig(bootstrap="fake:9092", **_login(password="nope")), nursery,
                      connector=fake.connector)
    errors = []

    async def caller():
        try:
            await cluster.any_connection()
        except AuthenticationError as exc:
            errors.append(exc)

    async with trio.open_nursery() as callers:
        for _ in range(3):
            callers.start_soon(caller)
    assert len(errors) == 3 and len({str(e) for e in errors}) == 1
    assert _keys(fake).count("SASL_HANDSHAKE") == 1  # one login tried, not three
    with pytest.raises(AuthenticationError):  # a later call tries again (users may change)
        await cluster.any_connection()
    assert _keys(fake).count("SASL_HANDSHAKE") == 2


async def test_a_mechanism_the_broker_does_not_offer_is_named(nursery):
    fake = _sasl_fake(nursery, offered=("SCRAM-SHA-512",))
    cluster = Cluster(ClientConfig(bootstrap="fake:9092", **_login(mechanism="PLAIN")), nursery,
                      connector=fake.connector)
    with pytest.raises(AuthenticationError, match=r"login as alice failed at fake:9092: the broker does not "
                                                  r"offer PLAIN \(it offers: SCRAM-SHA-512\)") as caught:
        await cluster.refresh()
    assert caught.value.code == ErrorCode.unsupported_sasl_mechanism and not caught.value.retriable


async def test_a_broker_that_fakes_the_scram_signature_is_refused(nursery):
    fake = _sasl_fake(nursery, forge_signature=True)
    cluster = Cluster(ClientConfig(bootstrap="fake:9092", **_login(mechanism="SCRAM-SHA-512")), nursery,
                      connector=fake.connector)
    with pytest.raises(AuthenticationError, match="SCRAM signature is wrong: it does not know the password"):
        await cluster.refresh()
    assert "METADATA" not in _keys(fake)


async def test_a_broker_without_sasl_apis_is_a_clear_refusal(nursery):
    from logbroker.protocol import SUPPORTED_VERSIONS

    versions = {k: v for k, v in SUPPORTED_VERSIONS.items() if k != ApiKey.SASL_AUTHENTICATE}
    fake = FakeBroker(nursery, versions)
    cluster = Cluster(ClientConfig(bootstrap="fake:9092", **_login()), nursery, connector=fake.connector)
    with pytest.raises(AuthenticationError, match="offers no SASL login this client speaks"):
        await cluster.refresh()


# -- TLS in memory: the client's stream relayed to a FakeBroker by a TLS server ---------------------


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Self-signed certificates (each its own CA): "ip" names 127.0.0.1 and the host "fake",
    "other" only other.example, "client" is a client's."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command makes the test certificates")
    where = tmp_path_factory.mktemp("certs")
    made = {}
    for name, subject, san in (("ip", "/CN=127.0.0.1", "IP:127.0.0.1,DNS:fake"),
                               ("other", "/CN=other.example", "DNS:other.example"),
                               ("client", "/CN=client", "DNS:client")):
        cert, key = where / f"{name}.pem", where / f"{name}-key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "2", "-subj", subject, "-addext", f"subjectAltName={san}"],
                       check=True, capture_output=True)
        made[name] = (str(cert), str(key))
    return made


async def _pump(source, sink) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        await trio.aclose_forcefully(sink)


def _tls_relay(nursery, fake: FakeBroker, server_cert, *, client_ca=None, peers=None):
    """A connector whose streams a TLS server (``server_cert``; asking for a client
    certificate signed by ``client_ca`` if given) relays to ``fake``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*server_cert)
    if client_ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(client_ca)

    async def serve(server_end, host, port):
        tls = trio.SSLStream(server_end, context, server_side=True, https_compatible=True)
        try:
            await tls.do_handshake()
        except trio.BrokenResourceError:
            return
        if peers is not None:
            peers.append(tls.getpeercert())
        plain = await fake.connector(host, port)
        async with trio.open_nursery() as pumps:
            pumps.start_soon(_pump, tls, plain)
            pumps.start_soon(_pump, plain, tls)

    async def connector(host, port):
        client_end, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(serve, server_end, host, port)
        return client_end

    return connector


async def test_tls_checks_the_broker_and_shows_the_client_certificate(nursery, certs):
    fake = _sasl_fake(nursery)
    peers = []
    connector = _tls_relay(nursery, fake, certs["ip"], client_ca=certs["client"][0], peers=peers)
    config = ClientConfig(bootstrap="fake:9092", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256",
                          sasl_username="alice", sasl_password="s3cret", ssl_cafile=certs["ip"][0],
                          ssl_certfile=certs["client"][0], ssl_keyfile=certs["client"][1])
    cluster = Cluster(config, nursery, connector=connector)
    assert "t" in (await cluster.refresh(["t"])).topics
    assert peers and dict(x[0] for x in peers[0]["subject"])["commonName"] == "client"
    assert _keys(fake)[:2] == ["API_VERSIONS", "SASL_HANDSHAKE"]  # the login ran inside TLS
    await cluster.aclose()


async def test_a_certificate_for_another_host_fails_at_once_unless_the_check_is_off(nursery, certs):
    fake = _sasl_fake(nursery)
    connector = _tls_relay(nursery, fake, certs["other"])
    checked = ClientConfig(bootstrap="fake:9092", security_protocol="SSL", ssl_cafile=certs["other"][0],
                           request_timeout_ms=30_000)
    started = trio.current_time()
    with pytest.raises(KafkaConnectionError) as caught:
        await Cluster(checked, nursery, connector=connector).refresh()
    assert trio.current_time() - started < 2 and not caught.value.retriable
    assert str(caught.value) == ("TLS handshake with fake:9092 failed: the broker's certificate does not verify: "
                                 "Hostname mismatch, certificate is not valid for 'fake'.")
    assert fake.requests == []

    unchecked = dataclasses.replace(checked, ssl_check_hostname=False)
    assert "t" in (await Cluster(unchecked, nursery, connector=connector).refresh(["t"])).topics

    # The check off still checks the chain: a certificate no given CA signed is refused.
    wrong_ca = dataclasses.replace(unchecked, ssl_cafile=certs["ip"][0])
    with pytest.raises(KafkaConnectionError, match="certificate does not verify: self.signed certificate"):
        await Cluster(wrong_ca, nursery, connector=connector).refresh()


async def test_tls_to_a_listener_that_is_not_tls_is_a_retriable_connection_error(nursery, autojump_clock):
    connections = []

    async def plain_listener(host, port):  # reads the TLS hello, hangs up (as a PLAINTEXT broker does)
        client_end, server_end = trio.testing.memory_stream_pair()

        async def hang_up():
            await server_end.receive_some(65536)
            await server_end.aclose()

        connections.append((host, port))
        nursery.start_soon(hang_up)
        return client_end

    config = ClientConfig(bootstrap="fake:9092", security_protocol="SSL", request_timeout_ms=2000)
    with pytest.raises(KafkaConnectionError, match=r"no broker reachable: TLS handshake with fake:9092 failed: "
                                                   r".*\(is it a TLS listener\?\)") as caught:
        await Cluster(config, nursery, connector=plain_listener).refresh()
    assert caught.value.retriable and "\n" not in str(caught.value)
    assert len(connections) > 3  # retried until request_timeout_ms


# -- real brokers -------------------------------------------------------------------------------


def _secured(broker_factory, tmp_path, protocol, extra=()):
    data = tmp_path / "data"
    UserStore(data).add("alice", "s3cret")
    config = tmp_path / "broker.toml"
    config.write_text("\n".join([f'security_protocol = "{protocol}"', *extra]) + "\n")
    return broker_factory("--config", str(config), data_dir=data)


def _tls_listener(cert) -> list[str]:
    return [f'ssl_certfile = "{cert[0]}"', f'ssl_keyfile = "{cert[1]}"']


async def _round_trip(bootstrap: str, topic: str, **security) -> list[bytes]:
    """Admin creates ``topic``, a producer writes two records, a consumer in a group
    reads them and commits (the coordinator's connection logs in too)."""
    async with Admin(bootstrap, **security) as admin:
        await admin.create_topic(topic, 1)
        assert topic in await admin.list_topics()
    async with Producer(bootstrap, **security) as producer:
        await producer.send_and_wait(topic, b"classified")
        await producer.send_and_wait(topic, b"secret")
    tp = TopicPartition(topic, 0)
    async with Consumer(bootstrap, group_id="readers", auto_offset_reset="earliest", **security) as consumer:
        consumer.assign([tp])
        values: list[bytes] = []
        with trio.fail_after(15):
            while len(values) < 2:
                values += [r.value for r in await consumer.getmany()]
        await consumer.commit()
        assert await consumer.committed(tp) == 2
    return values


async def _refused_fast(bootstrap: str, **security) -> None:
    """Admin, producer and consumer with a wrong password: AuthenticationError, each at once."""
    async def admin():
        async with Admin(bootstrap, **security) as client:
            await client.list_topics()

    async def producer():
        async with Producer(bootstrap, **security) as client:
            await client.send_and_wait("secret-topic", b"x")

    async def consumer():
        async with Consumer(bootstrap, **security) as client:
            await client.topics()

    for use in (admin, producer, consumer):
        started = time.monotonic()
        with pytest.raises(AuthenticationError, match=r"login as alice failed at 127\.0\.0\.1:\d+: SASL "
                                                      r"authentication failed \(wrong user name or password\?\)"):
            await use()
        assert time.monotonic() - started < 5, use.__name__


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_sasl_plaintext_round_trip_and_wrong_password(broker_factory, tmp_path, mechanism):
    broker = _secured(broker_factory, tmp_path, "SASL_PLAINTEXT")
    login = _login(mechanism=mechanism)
    assert await _round_trip(broker.bootstrap, f"secret-{mechanism.lower()}", **login) == [b"classified", b"secret"]
    await _refused_fast(broker.bootstrap, **_login(mechanism=mechanism, password="wrong"))
    wait_until(lambda: f"{mechanism} login of user 'alice' failed" in broker.log, timeout=5)
    # Without logging in nothing is answered; the broker says so in its log.
    with pytest.raises(KafkaConnectionError):
        async with Admin(broker.bootstrap, bootstrap_timeout_ms=1000) as admin:
            await admin.list_topics()
    wait_until(lambda: "before SASL authentication" in broker.log, timeout=5)


def _blocking_round_trip(bootstrap: str, login: dict) -> None:
    """The blocking facade takes the same options."""
    with SyncAdmin(bootstrap, **login) as admin:
        admin.create_topic("secret-sync", 1, timeout=10)
        assert "secret-sync" in admin.list_topics(timeout=10)
    with SyncProducer(bootstrap, **login) as producer:
        assert producer.send("secret-sync", b"blocking", timeout=10).result(timeout=10).offset == 0
    with SyncConsumer(bootstrap, auto_offset_reset="earliest", **login) as consumer:
        consumer.assign([TopicPartition("secret-sync", 0)])
        assert [r.value for r in consumer.getmany(timeout=10)] == [b"blocking"]
    with SyncAdmin(bootstrap, **dict(login, sasl_password="wrong")) as admin:
        with pytest.raises(AuthenticationError, match="login as alice failed"):
            admin.list_topics(timeout=10)


@needs_openssl
async def test_sasl_ssl_with_a_ca_file_and_the_sync_facade(broker_factory, tmp_path, certs):
    broker = _secured(broker_factory, tmp_path, "SASL_SSL", _tls_listener(certs["ip"]))
    login = _login("SASL_SSL", "SCRAM-SHA-512", ssl_cafile=certs["ip"][0])
    assert await _round_trip(broker.bootstrap, "secret-ssl", **login) == [b"classified", b"secret"]
    await _refused_fast(broker.bootstrap, **dict(login, sasl_password="wrong"))

    await trio.to_thread.run_sync(_blocking_round_trip, broker.bootstrap, login)  # the facade runs its own loop

    # TLS without a CA file that signs the broker's certificate: refused at once, not retried.
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match=r"TLS handshake with 127\.0\.0\.1:\d+ failed: the broker's "
                                                   r"certificate does not verify: self.signed certificate"):
        async with Admin(broker.bootstrap, **dict(login, ssl_cafile=certs["other"][0])) as admin:
            await admin.list_topics()
    assert time.monotonic() - started < 5


@needs_openssl
async def test_ssl_listener_hostname_check(broker_factory, tmp_path, certs):
    broker = _secured(broker_factory, tmp_path, "SSL", _tls_listener(certs["other"]))
    tls = dict(security_protocol="SSL", ssl_cafile=certs["other"][0])
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError) as caught:
        async with Admin(broker.bootstrap, **tls) as admin:
            await admin.list_topics()
    assert time.monotonic() - started < 5 and not caught.value.retriable
    assert str(caught.value) == (f"TLS handshake with {broker.bootstrap} failed: the broker's certificate does "
                                 "not verify: IP address mismatch, certificate is not valid for '127.0.0.1'.")
    values = await _round_trip(broker.bootstrap, "tls-only", **tls, ssl_check_hostname=False)
    assert values == [b"classified", b"secret"]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_bootstrap_timeout_against_a_closed_port():
    port = _closed_port()
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError) as caught:
        async with Admin(f"127.0.0.1:{port}", bootstrap_timeout_ms=1000, request_timeout_ms=30_000) as admin:
            await admin.list_topics()
    assert time.monotonic() - started < 2
    message = str(caught.value)
    assert message.startswith(f"no broker reachable: cannot connect to 127.0.0.1:{port}: ") and "\n" not in message

    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="no broker reachable"):
        async with Consumer(f"127.0.0.1:{port}", bootstrap_timeout_ms=1000) as consumer:
            await consumer.topics()
    assert time.monotonic() - started < 2


async def test_bootstrap_timeout_cuts_a_silent_broker_short():
    with socket.socket() as silent:  # accepts connections (the kernel does) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(KafkaConnectionError, match=r"no broker reachable within 1000 ms"):
            async with Admin(f"127.0.0.1:{port}", bootstrap_timeout_ms=1000) as admin:
                await admin.list_topics()
        assert time.monotonic() - started < 2
