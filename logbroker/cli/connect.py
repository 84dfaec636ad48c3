"""How every client command reaches the broker: address, timeout, security.

Each setting comes from, in order: the command's own option, the same option
given before the command (``logbroker --timeout 3 topics list``), its
``LOGBROKER_*`` environment variable, the ``--command-config`` file, then the
default. The file is a Java properties file (``security.protocol=SASL_SSL``,
as Kafka's own tools take) or TOML (``*.toml``: the same names, dotted or
nested, or the Python names of the client's settings).
"""

from __future__ import annotations

import functools
import os
import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from click.core import ParameterSource

__all__ = ["ClientSettings", "client_options", "load_command_config", "root_client_options"]

_F = TypeVar("_F", bound=Callable[..., Any])

DEFAULT_BOOTSTRAP = "localhost:9092"
DEFAULT_TIMEOUT_S = 5.0
_REQUEST_TIMEOUT_FLOOR_S = 30.0  # a slow answer (fsync, a big fetch) is not an unreachable broker

# Kafka (and librdkafka) property names -> the client's setting names.
_PROPERTY_NAMES = {
    "bootstrap.servers": "bootstrap",
    "security.protocol": "security_protocol",
    "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism",
    "sasl.username": "sasl_username",
    "sasl.password": "sasl_password",
    "ssl.ca.location": "ssl_cafile",
    "ssl.cafile": "ssl_cafile",
    "ssl.certificate.location": "ssl_certfile",
    "ssl.certfile": "ssl_certfile",
    "ssl.key.location": "ssl_keyfile",
    "ssl.keyfile": "ssl_keyfile",
    "ssl.check.hostname": "ssl_check_hostname",
    "request.timeout.ms": "request_timeout_ms",
    "client.id": "client_id",
}
_SETTINGS = frozenset(_PROPERTY_NAMES.values()) | {"timeout"}
_JAAS = re.compile(r'(username|password)\s*=\s*"((?:[^"\\]|\\.)*)"')


def _parse_properties(text: str, where: str) -> dict[str, str]:
    """Java properties as Kafka's tools write them: ``name=value`` or ``name: value``,
    ``#``/``!`` comments, a trailing backslash continues the line."""
    out: dict[str, str] = {}
    pending = ""
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#!":
            continue
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        match = re.match(r"([^=:\s]+)\s*[=:\s]\s*(.*)$", line)
        if match is None:
            raise click.BadParameter(f"{where}:{lineno}: {raw.strip()!r} is not NAME=VALUE",
                                     param_hint="--command-config")
        out[match.group(1)] = match.group(2)
    return out


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def load_command_config(path: str) -> dict[str, Any]:
    """Client settings (by the client's names) read from a properties or TOML file.

    :raises click.BadParameter: unreadable file, bad syntax or an unknown name.
    """
    where = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise click.BadParameter(f"cannot read {where}: {exc.strerror or exc}", param_hint="--command-config") from None
    raw: dict[str, Any]
    if where.endswith(".toml"):
        try:
            raw = _flatten(tomllib.loads(text))
        except tomllib.TOMLDecodeError as exc:
            raise click.BadParameter(f"{where}: {exc}", param_hint="--command-config") from None
    else:
        raw = dict(_parse_properties(text, where))
    settings: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "sasl.jaas.config":  # ... ScramLoginModule required username="u" password="p";
            for key, found in _JAAS.findall(str(value)):
                settings[f"sasl_{key}"] = found.replace('\\"', '"')
            continue
        if name == "ssl.endpoint.identification.algorithm":  # Kafka: empty turns the hostname check off
            settings["ssl_check_hostname"] = str(value).strip().lower() not in ("", "none")
            continue
        target = _PROPERTY_NAMES.get(name, name)
        if target not in _SETTINGS:
            known = ", ".join(sorted(_PROPERTY_NAMES))
            raise click.BadParameter(f"{where}: unknown setting {name!r} (known: {known}, sasl.jaas.config, "
                                     "ssl.endpoint.identification.algorithm)", param_hint="--command-config")
        settings[target] = value
    if "ssl_check_hostname" in settings and isinstance(settings["ssl_check_hostname"], str):
        settings["ssl_check_hostname"] = settings["ssl_check_hostname"].strip().lower() in ("true", "1", "yes")
    for name in ("request_timeout_ms",):
        if name in settings:
            settings[name] = _as_number(settings[name], name, where)
    if "timeout" in settings:
        settings["timeout"] = float(_as_number(settings["timeout"], "timeout", where))
    return settings


def _as_number(value: Any, name: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise click.BadParameter(f"{where}: {name} must be a number, got {value!r}",
                                 param_hint="--command-config") from None


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """What a command needs to build a client: ``Admin(settings.bootstrap, **settings.options())``."""

    bootstrap: str = DEFAULT_BOOTSTRAP
    timeout_s: float = DEFAULT_TIMEOUT_S
    role: str = "cli"
    security: dict[str, Any] = field(default_factory=dict)
    """Security and other client settings (the client's keyword names)."""

    def options(self, **extra: Any) -> dict[str, Any]:
        """Keyword options for Producer, Consumer, Admin and the other clients.

        ``client_id`` is distinct per process (host and pid), so the members of a
        group show who they are; ``extra`` wins over everything else.
        """
        timeout_ms = max(1, int(self.timeout_s * 1000))
        options: dict[str, Any] = {
            "client_id": f"logbroker-{self.role}-{socket.gethostname()}-{os.getpid()}",
            "bootstrap_timeout_ms": timeout_ms,
            "connect_timeout_ms": timeout_ms,
            "request_timeout_ms": max(timeout_ms, int(_REQUEST_TIMEOUT_FLOOR_S * 1000)),
        }
        options.update(self.security)
        options.update(extra)
        return options

    def describe(self) -> str:
        """The address and login, for messages (never the password)."""
        protocol = self.security.get("security_protocol", "PLAINTEXT")
        user = self.security.get("sasl_username")
        return f"{self.bootstrap} ({protocol}{f' as {user}' if user else ''})"


_OPTION_HELP: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--bootstrap", "-b"), dict(envvar="LOGBROKER_BOOTSTRAP", metavar="HOST:PORT[,...]",
                                 help=f"Broker address(es) [env LOGBROKER_BOOTSTRAP; default: {DEFAULT_BOOTSTRAP}].")),
    (("--timeout",), dict(type=float, envvar="LOGBROKER_TIMEOUT", metavar="SECONDS",
                          help=f"Give up reaching the broker after this long [env LOGBROKER_TIMEOUT; default: {DEFAULT_TIMEOUT_S:g}].")),
    (("--command-config",), dict(type=click.Path(dir_okay=False), envvar="LOGBROKER_COMMAND_CONFIG", metavar="FILE",
                                 help="Client settings from a properties file (security.protocol=..., "
                                 "sasl.jaas.config=...) or a .toml file.")),
    (("--security-protocol",), dict(type=click.Choice(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"],
                                                      case_sensitive=False),
                                    envvar="LOGBROKER_SECURITY_PROTOCOL",
                                    help="How to talk to the broker [default: PLAINTEXT; SSL with --ssl-ca; "
                                    "SASL_PLAINTEXT with a SASL user, SASL_SSL with both].")),
    (("--sasl-mechanism",), dict(type=click.Choice(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"], case_sensitive=False),
                                 envvar="LOGBROKER_SASL_MECHANISM", help="SASL login mechanism [default: PLAIN].")),
    (("--sasl-username",), dict(envvar="LOGBROKER_SASL_USERNAME", help="SASL user name.")),
    (("--sasl-password",), dict(envvar="LOGBROKER_SASL_PASSWORD",
                                             help="SASL password (prefer the environment variable or the file).")),
    (("--ssl-ca",), dict(type=click.Path(dir_okay=False), envvar="LOGBROKER_SSL_CA",
                         help="PEM file of the CA(s) that signed the broker's certificate [default: the system's].")),
    (("--ssl-cert",), dict(type=click.Path(dir_okay=False), envvar="LOGBROKER_SSL_CERT",
                           help="PEM client certificate, for brokers that ask for one.")),
    (("--ssl-key",), dict(type=click.Path(dir_okay=False), envvar="LOGBROKER_SSL_KEY",
                          help="PEM private key of --ssl-cert.")),
    (("--ssl-check-hostname/--no-ssl-check-hostname",), dict(default=None, envvar="LOGBROKER_SSL_CHECK_HOSTNAME",
                                                            help="Check that the broker's certificate names the "
                                                            "host [default: check].")),
]
_OPTION_NAMES = ("bootstrap", "timeout", "command_config", "security_protocol", "sasl_mechanism", "sasl_username",
                 "sasl_password", "ssl_ca", "ssl_cert", "ssl_key", "ssl_check_hostname")
_TO_CLIENT = {"ssl_ca": "ssl_cafile", "ssl_cert": "ssl_certfile", "ssl_key": "ssl_keyfile"}


_ALWAYS_SHOWN = ("--bootstrap", "--timeout")


def _add_options(f: _F, *, hide_security: bool) -> _F:
    """Commands list only the address and timeout in ``--help``: the security
    options are the same everywhere and ``logbroker --help`` describes them."""
    for decls, attrs in reversed(_OPTION_HELP):
        hidden = hide_security and decls[0] not in _ALWAYS_SHOWN
        if hide_security and decls[0] == "--timeout":
            attrs = {**attrs, "help": attrs["help"] + " Secured brokers (SASL, TLS): see `logbroker --help`."}
        f = click.option(*decls, hidden=hidden, **attrs)(f)
    return f


def root_client_options(f: _F) -> _F:
    """The same options on the top-level group: they apply to every command after it."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name) for name in _OPTION_NAMES}
        click.get_current_context().obj = {k: v for k, v in given.items() if v is not None}
        return f(*args, **kwargs)

    return _add_options(wrapper, hide_security=False)  # type: ignore[return-value]  # functools.wraps keeps f's signature for click


def _resolve(given: dict[str, Any], role: str) -> ClientSettings:
    ctx = click.get_current_context()
    outer = ctx.find_root().obj if isinstance(ctx.find_root().obj, dict) else {}
    values = {**outer, **{k: v for k, v in given.items() if v is not None}}
    from_file = load_command_config(values["command_config"]) if values.get("command_config") else {}
    merged: dict[str, Any] = dict(from_file)
    for name in _OPTION_NAMES:
        if name in ("command_config",) or values.get(name) is None:
            continue
        merged[_TO_CLIENT.get(name, name)] = values[name]
    bootstrap = str(merged.pop("bootstrap", DEFAULT_BOOTSTRAP))
    timeout = float(merged.pop("timeout", DEFAULT_TIMEOUT_S))
    if timeout <= 0:
        raise click.BadParameter("must be more than 0 seconds", param_hint="--timeout")
    if "security_protocol" in merged:
        merged["security_protocol"] = str(merged["security_protocol"]).upper()
    elif merged.get("sasl_username"):
        merged["security_protocol"] = "SASL_SSL" if merged.get("ssl_cafile") else "SASL_PLAINTEXT"
    elif merged.get("ssl_cafile") or merged.get("ssl_certfile"):
        merged["security_protocol"] = "SSL"
    if "sasl_mechanism" in merged:
        merged["sasl_mechanism"] = str(merged["sasl_mechanism"]).upper()
    return ClientSettings(bootstrap=bootstrap, timeout_s=timeout, role=role, security=merged)


def client_options(f: _F) -> _F:
    """Add the connection options to a command and pass it ``client: ClientSettings``
    instead of them."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = click.get_current_context()
        given = {name: kwargs.pop(name) for name in _OPTION_NAMES}
        # only what was typed after the command beats the group's values: the
        # group read the same environment variables already
        given = {name: value for name, value in given.items()
                 if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
                 or not isinstance(ctx.find_root().obj, dict)}
        names = []
        level: click.Context | None = ctx
        while level is not None and level.parent is not None:  # the command's names, not the program's
            names.append(level.info_name or "")
            level = level.parent
        role = "-".join(reversed(names)) or "cli"
        kwargs["client"] = _resolve(given, role)
        return f(*args, **kwargs)

    return _add_options(wrapper, hide_security=True)  # type: ignore[return-value]  # functools.wraps keeps f's signature for click
