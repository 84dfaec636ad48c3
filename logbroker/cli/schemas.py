"""``logbroker schemas list|get|register|check|delete|config``: a schema
registry (logbroker's ``serve --schema-registry-port``, or Confluent's) from
the command line, through :class:`~logbroker.client.serde.SchemaRegistryClient`.

The registry is ``--schema-registry URL`` (or ``LOGBROKER_SCHEMA_REGISTRY``,
default ``http://localhost:8081``); HTTP Basic credentials come from
``--user``/``--password`` (or ``LOGBROKER_SCHEMA_REGISTRY_USER``/``_PASSWORD``,
else the SASL user given to ``logbroker`` itself). Errors are one line and
exit status 1; so is a ``check`` that finds the schema incompatible.
Also holds :func:`registry_options`, for other commands that need a registry.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import trio

from logbroker.cli.topics import emit_json, format_option, print_table, run_client
from logbroker.client.serde import (
    Schema,
    SchemaReference,
    SchemaRegistryClient,
    SchemaRegistryError,
    SchemaRegistryUnreachableError,
    SubjectVersion,
)

__all__ = ["registry_options", "schemas"]

T = TypeVar("T")
_F = TypeVar("_F", bound=Callable[..., Any])
_Refs = list[tuple[str, str, str]]  # (name, subject, version as typed)

DEFAULT_REGISTRY = "http://localhost:8081"
_LEVELS = ["NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"]
_TYPES = ["AVRO", "JSON", "PROTOBUF"]
_UNREACHABLE_HINT = ("Is a schema registry running there? Start one with `logbroker serve --schema-registry-port "
                     "8081`, or name yours with --schema-registry URL (or LOGBROKER_SCHEMA_REGISTRY).")
_LOGIN_HINT = "Give a broker user with --user/--password (or LOGBROKER_SCHEMA_REGISTRY_USER/_PASSWORD)."


def registry_options(f: _F) -> _F:
    """Add ``--schema-registry``, ``--user``, ``--password`` and
    ``--schema-registry-ca`` to a command and pass it ``registry:
    SchemaRegistryClient`` instead of them."""

    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        url = kwargs.pop("schema_registry")
        user = kwargs.pop("registry_user")
        password = kwargs.pop("registry_password")
        ca_file = kwargs.pop("registry_ca")
        root = click.get_current_context().find_root().obj
        outer = root if isinstance(root, dict) else {}
        if user is None and outer.get("sasl_username"):  # the broker's users are the registry's
            user, password = outer["sasl_username"], password or outer.get("sasl_password")
        timeout = float(outer.get("timeout") or 10.0)
        try:
            kwargs["registry"] = SchemaRegistryClient(url, user=user, password=password, ca_file=ca_file,
                                                      timeout=timeout)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--schema-registry") from None
        return f(*args, **kwargs)

    options = [
        click.option("--schema-registry", "schema_registry", envvar="LOGBROKER_SCHEMA_REGISTRY", metavar="URL",
                     default=DEFAULT_REGISTRY,
                     help=f"Schema registry [env LOGBROKER_SCHEMA_REGISTRY; default: {DEFAULT_REGISTRY}]."),
        click.option("--user", "registry_user", envvar="LOGBROKER_SCHEMA_REGISTRY_USER", metavar="NAME",
                     help="HTTP Basic user [env LOGBROKER_SCHEMA_REGISTRY_USER; default: the SASL user, if any]."),
        click.option("--password", "registry_password", envvar="LOGBROKER_SCHEMA_REGISTRY_PASSWORD",
                     help="HTTP Basic password (prefer LOGBROKER_SCHEMA_REGISTRY_PASSWORD)."),
        click.option("--schema-registry-ca", "registry_ca", envvar="LOGBROKER_SCHEMA_REGISTRY_CA",
                     type=click.Path(dir_okay=False), metavar="FILE",
                     help="PEM file of the CA(s) of an https registry [default: the system's]."),
    ]
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper  # type: ignore[return-value]  # functools.wraps keeps f's signature for click


def _call(registry: SchemaRegistryClient, work: Callable[[], T]) -> T:
    """``work()`` (blocking registry calls) in a worker thread of a trio run,
    registry errors as one line (with a hint when there is no registry or
    the login is refused)."""

    async def main() -> T:
        try:
            return await trio.to_thread.run_sync(work)
        except SchemaRegistryUnreachableError as exc:
            raise click.ClickException(f"{exc}\n{_UNREACHABLE_HINT}") from None
        except SchemaRegistryError as exc:
            hint = f"\n{_LOGIN_HINT}" if exc.status == 401 else ""
            raise click.ClickException(f"{exc}{hint}") from None

    return run_client(main)


def _read_schema(path: str, schema_type: str | None, references: tuple[str, ...]) -> tuple[str, str, _Refs]:
    """``(text, type, [(name, subject, version)])`` of a schema file (``-``: stdin)."""
    if path == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path}: {exc.strerror or exc}", param_hint="FILE") from None
        except UnicodeDecodeError:
            raise click.BadParameter(f"{path} is not UTF-8 text", param_hint="FILE") from None
    if not text.strip():
        raise click.BadParameter(f"{path if path != '-' else 'stdin'} is empty", param_hint="FILE")
    kind = (schema_type or ("PROTOBUF" if path.endswith(".proto") else "AVRO")).upper()
    refs = []
    for item in references:
        name, eq, rest = item.partition("=")
        subject, colon, version = rest.rpartition(":")
        if not (eq and colon and name and subject and (version.isdigit() or version == "latest")):
            raise click.BadParameter(f"{item!r} is not NAME=SUBJECT:VERSION (VERSION a number or latest)",
                                     param_hint="--reference")
        refs.append((name, subject, version))
    return text, kind, refs


def _schema(registry: SchemaRegistryClient, text: str, kind: str, refs: _Refs) -> Schema:
    """The schema to send, ``latest`` references turned into version numbers (blocking)."""
    resolved = tuple(SchemaReference(name, subject, int(v) if v.isdigit() else registry.latest(subject).version)
                     for name, subject, v in refs)
    return Schema(text, kind, resolved)


def _pretty(schema: Schema) -> str:
    if schema.schema_type == "PROTOBUF":
        return schema.text.rstrip("\n")
    try:
        return json.dumps(json.loads(schema.text), indent=2, ensure_ascii=False)
    except ValueError:
        return schema.text


def _version_arg(value: str) -> int | str:
    if value == "latest":
        return value
    if value.isdigit() and int(value) > 0:
        return int(value)
    raise click.BadParameter(f"{value!r} is not a version number or latest", param_hint="--version")


_SCHEMA_FILE_OPTIONS = [
    click.option("--type", "schema_type", type=click.Choice(_TYPES, case_sensitive=False),
                 help="Schema type [default: PROTOBUF for a .proto file, else AVRO]."),
    click.option("--reference", "references", multiple=True, metavar="NAME=SUBJECT:VERSION",
                 help="A schema this one uses: an Avro type name, a JSON $ref, a Protobuf import path "
                 "(repeatable; VERSION may be latest)."),
]


def _schema_file_options(f: _F) -> _F:
    for option in reversed(_SCHEMA_FILE_OPTIONS):
        f = option(f)
    return f


@click.group()
def schemas() -> None:
    """Manage a schema registry: subjects, versions, compatibility.

    \b
    logbroker schemas register orders-value order.avsc
    logbroker schemas list
    logbroker schemas get orders-value --version latest
    logbroker schemas check orders-value order-v2.avsc
    logbroker schemas config orders-value --set FULL
    logbroker schemas delete orders-value [--permanent]
    """


@schemas.command("list")
@click.option("--prefix", default="", help="Only subjects whose names start with this.")
@click.option("--deleted", is_flag=True, help="Include soft-deleted subjects.")
@registry_options
@format_option
def list_(prefix: str, deleted: bool, registry: SchemaRegistryClient, fmt: str) -> None:
    """List subjects with their latest version, schema id and type."""
    found = _call(registry, lambda: registry.schemas(prefix, latest_only=True, deleted=deleted))
    if fmt == "json":
        emit_json([{"subject": v.subject, "version": v.version, "id": v.schema_id, "schemaType": v.schema.schema_type}
                   for v in found])
    elif found:
        print_table(["SUBJECT", "VERSION", "ID", "TYPE"],
                    [[v.subject, v.version, v.schema_id, v.schema.schema_type] for v in found])
    else:
        click.echo("(no subjects)", err=True)


@schemas.command("get")
@click.argument("subject", required=False)
@click.option("--version", "version", default="latest", show_default=True, metavar="N|latest",
              help="The subject's version.")
@click.option("--id", "schema_id", type=click.IntRange(min=0), help="The schema with this id (no SUBJECT needed).")
@click.option("--deleted", is_flag=True, help="Also find a soft-deleted version.")
@registry_options
@format_option
def get(subject: str | None, version: str, schema_id: int | None, deleted: bool, registry: SchemaRegistryClient,
        fmt: str) -> None:
    """Show a version of SUBJECT, or the schema with --id."""
    if schema_id is None and subject is None:
        raise click.UsageError("give SUBJECT (and --version) or --id N")
    if schema_id is not None:
        if subject is not None:
            raise click.UsageError("give SUBJECT or --id, not both")
        wanted = schema_id

        def by_id() -> tuple[Schema, list[tuple[str, int]]]:
            return registry.schema(wanted), registry.schema_uses(wanted)

        schema, uses = _call(registry, by_id)
        if fmt == "json":
            emit_json({"id": schema_id, **schema.as_json(),
                       "versions": [{"subject": s, "version": v} for s, v in uses]})
            return
        click.echo(f"id       {schema_id}")
        click.echo(f"type     {schema.schema_type}")
        click.echo(f"used by  {', '.join(f'{s} v{v}' for s, v in uses) or '-'}")
        _echo_schema(schema)
        return
    assert subject is not None
    number = _version_arg(version)
    found: SubjectVersion = _call(registry, lambda: registry.version(subject, number, deleted=deleted))
    if fmt == "json":
        emit_json(found.as_json())
        return
    click.echo(f"subject  {found.subject}")
    click.echo(f"version  {found.version}")
    click.echo(f"id       {found.schema_id}")
    click.echo(f"type     {found.schema.schema_type}")
    _echo_schema(found.schema)


def _echo_schema(schema: Schema) -> None:
    if schema.references:
        refs = ", ".join(f"{r.name}={r.subject}:{r.version}" for r in schema.references)
        click.echo(f"uses     {refs}")
    click.echo(_pretty(schema))


@schemas.command("register")
@click.argument("subject")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_schema_file_options
@click.option("--normalize", is_flag=True, help="Ask the registry to normalize the schema first.")
@registry_options
@format_option
def register(subject: str, file: str, schema_type: str | None, references: tuple[str, ...], normalize: bool,
             registry: SchemaRegistryClient, fmt: str) -> None:
    """Register the schema in FILE (- for stdin) under SUBJECT.

    A schema the subject has already keeps its version and id.
    """
    text, kind, refs = _read_schema(file, schema_type, references)

    def work() -> SubjectVersion:
        schema = _schema(registry, text, kind, refs)
        registry.register(subject, schema, normalize=normalize)
        return registry.lookup(subject, schema, normalize=normalize)

    found = _call(registry, work)
    if fmt == "json":
        emit_json({"subject": found.subject, "version": found.version, "id": found.schema_id})
    else:
        click.echo(f"registered {found.subject} version {found.version} (schema id {found.schema_id})")


@schemas.command("check")
@click.argument("subject")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_schema_file_options
@click.option("--version", "version", default="latest", show_default=True, metavar="N|latest|all",
              help="Check against this version (all: every version).")
@registry_options
@format_option
def check(subject: str, file: str, schema_type: str | None, references: tuple[str, ...], version: str,
          registry: SchemaRegistryClient, fmt: str) -> None:
    """Tell whether the schema in FILE may be registered under SUBJECT, under its
    compatibility level. Exit status 1 when it may not."""
    text, kind, refs = _read_schema(file, schema_type, references)
    against = "all" if version == "all" else _version_arg(version)
    result = _call(registry, lambda: registry.check_compatibility(subject, _schema(registry, text, kind, refs),
                                                                  against))
    if fmt == "json":
        emit_json({"is_compatible": result.is_compatible, "messages": list(result.messages)})
    elif result.is_compatible:
        click.echo(f"compatible with {subject} ({version if version == 'all' else 'version ' + version})")
    else:
        click.echo(f"incompatible with {subject} ({version if version == 'all' else 'version ' + version}):")
        for message in result.messages or ("(the registry gave no reason)",):
            click.echo(f"  - {message}")
    if not result.is_compatible:
        sys.exit(1)


@schemas.command("delete")
@click.argument("subject")
@click.option("--version", "version", default=None, metavar="N|latest", help="Delete only this version.")
@click.option("--permanent", is_flag=True,
              help="Remove for good (the registry wants a soft delete first: run without it, then with it).")
@registry_options
@format_option
def delete(subject: str, version: str | None, permanent: bool, registry: SchemaRegistryClient, fmt: str) -> None:
    """Delete SUBJECT (every version) or one --version of it; soft unless --permanent."""
    if version is None:
        deleted = _call(registry, lambda: registry.delete_subject(subject, permanent=permanent))
    else:
        number = _version_arg(version)
        deleted = [_call(registry, lambda: registry.delete_version(subject, number, permanent=permanent))]
    if fmt == "json":
        emit_json({"subject": subject, "versions": deleted, "permanent": permanent})
    else:
        how = "permanently deleted" if permanent else "deleted"
        plural = "s" if len(deleted) != 1 else ""
        click.echo(f"{how} {subject} version{plural} {', '.join(map(str, deleted))}")


@schemas.command("config")
@click.argument("subject", required=False)
@click.option("--set", "level", type=click.Choice(_LEVELS, case_sensitive=False),
              help="Set the compatibility level.")
@click.option("--unset", is_flag=True, help="Drop SUBJECT's own level (the global one applies again).")
@registry_options
@format_option
def config(subject: str | None, level: str | None, unset: bool, registry: SchemaRegistryClient, fmt: str) -> None:
    """Show or set the compatibility level of SUBJECT, or the global one."""
    if level is not None and unset:
        raise click.UsageError("give --set or --unset, not both")
    if unset and subject is None:
        raise click.UsageError("--unset needs a SUBJECT (the global level cannot be unset)")
    if level is not None:
        wanted = level.upper()
        now = _call(registry, lambda: registry.set_compatibility(wanted, subject))
        _show_level(fmt, subject, now, inherited=False, verb="set to ")
        return
    if unset:
        assert subject is not None
        before = _call(registry, lambda: registry.delete_compatibility(subject))
        if fmt == "json":
            emit_json({"subject": subject, "unset": before})
        else:
            click.echo(f"{subject}: unset (was {before}); the global level applies")
        return

    def effective() -> tuple[str, bool]:
        if subject is None:
            return registry.compatibility(), False
        try:
            return registry.compatibility(subject), False
        except SchemaRegistryError as exc:
            if exc.error_code != 40408:  # the subject has no level of its own
                raise
            return registry.compatibility(), True

    current, inherited = _call(registry, effective)
    _show_level(fmt, subject, current, inherited=inherited)


def _show_level(fmt: str, subject: str | None, level: str, *, inherited: bool, verb: str = "") -> None:
    if fmt == "json":
        emit_json({"subject": subject, "compatibility": level, "inherited": inherited})
    else:
        note = " (the global level; the subject has none of its own)" if inherited else ""
        click.echo(f"{subject or 'global'}: {verb}{level}{note}")
