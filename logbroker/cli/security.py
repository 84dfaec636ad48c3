"""``logbroker users`` and ``logbroker acls``: edit the data directory's users.json
and acls.json. A running broker picks up changes without a restart."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

from logbroker.errors import LogbrokerError

if TYPE_CHECKING:
    from logbroker.broker.security import Acl

_F = TypeVar("_F", bound=Callable[..., Any])

_DATA_DIR = click.option(
    "--data-dir", default="./logbroker-data", show_default=True, envvar="LOGBROKER_DATA_DIR",
    help="Data directory of the broker.",
)


@contextmanager
def _one_line_errors() -> Iterator[None]:
    """Turn a LogbrokerError (a broken users.json or acls.json, a bad name) or an
    OSError into click's one-line "Error: ..." and exit status 1."""
    try:
        yield
    except LogbrokerError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {exc.filename or 'the file'}: {exc.strerror or exc}") from exc


@click.group()
def users() -> None:
    """Users who may log in with SASL PLAIN or SCRAM (salted credentials only)."""


@users.command("add")
@click.argument("name")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True,
              help="Password (prompted for when omitted).")
@click.option("--iterations", default=4096, show_default=True, help="SCRAM iterations.")
@_DATA_DIR
def users_add(name: str, password: str, iterations: int, data_dir: str) -> None:
    """Add NAME, or change its password."""
    from logbroker.broker.security import UserStore

    with _one_line_errors():
        UserStore(data_dir).add(name, password, iterations=iterations)
    click.echo(f"user {name} saved (SCRAM-SHA-256, SCRAM-SHA-512; PLAIN checks against them)")


@users.command("delete")
@click.argument("name")
@_DATA_DIR
def users_delete(name: str, data_dir: str) -> None:
    """Remove NAME."""
    from logbroker.broker.security import UserStore

    with _one_line_errors():
        deleted = UserStore(data_dir).delete(name)
    if not deleted:
        raise click.ClickException(f"no user {name}")
    click.echo(f"user {name} deleted")


@users.command("list")
@_DATA_DIR
def users_list(data_dir: str) -> None:
    """List users and their mechanisms."""
    from logbroker.broker.security import UserStore

    with _one_line_errors():
        found = UserStore(data_dir).users()
    for name, mechanisms in found.items():
        click.echo(f"{name}\t{', '.join(mechanisms)}")


# Kept equal to logbroker.broker.security.acls.OPERATIONS (a test checks); spelled
# out here so that ``--help`` does not import the broker.
_OPERATIONS = ("read", "write", "create", "delete", "describe", "alter",
               "describe_configs", "alter_configs", "idempotent_write", "all")


def _operation(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Accept Kafka's spellings too: DescribeConfigs, describe-configs, IDEMPOTENT_WRITE."""
    by_key = {op.replace("_", ""): op for op in _OPERATIONS}
    out = []
    for value in values:
        op = by_key.get(value.lower().replace("-", "").replace("_", ""))
        if op is None:
            raise click.BadParameter(f"{value!r} is not one of {', '.join(_OPERATIONS)}")
        out.append(op)
    return tuple(out)


def _acl_options(fn: _F) -> _F:
    for option in reversed([
        click.option("--principal", required=True, help="User:NAME or User:* (everyone)."),
        click.option("--topic", default=None, help="Topic name (or prefix with --prefixed; * = all)."),
        click.option("--group", default=None, help="Consumer or share group name."),
        click.option("--transactional-id", "transactional_id", default=None,
                     help="A transactional producer's id (write: produce in transactions; describe: see them)."),
        click.option("--cluster", is_flag=True,
                     help="The cluster itself (create topics, broker configs, idempotent writes, all groups)."),
        click.option("--operation", "operations", multiple=True, required=True, callback=_operation,
                     metavar="OPERATION",
                     help=f"Operation to allow or deny, one of {', '.join(_OPERATIONS)} "
                          "(Kafka's DescribeConfigs etc. work too); repeat for several."),
        click.option("--deny", is_flag=True, help="A DENY rule (wins over any ALLOW)."),
        click.option("--prefixed", is_flag=True, help="Match every name starting with the given one."),
        _DATA_DIR,
    ]):
        fn = option(fn)
    return fn


def _acls_from(principal: str, topic: str | None, group: str | None, transactional_id: str | None, cluster: bool,
               operations: tuple[str, ...], deny: bool, prefixed: bool) -> list[Acl]:
    from logbroker.broker.security import Acl
    from logbroker.broker.security.acls import CLUSTER, SUPPORTED_OPERATIONS

    targets = [(kind, name) for kind, name in (("topic", topic), ("group", group),
                                               ("transactional_id", transactional_id)) if name is not None]
    if cluster:
        targets.append(("cluster", CLUSTER))
    if len(targets) != 1:
        raise click.UsageError("give exactly one of --topic, --group, --transactional-id or --cluster")
    kind, name = targets[0]
    for op in operations:
        if op != "all" and op not in SUPPORTED_OPERATIONS[kind]:
            supported = ", ".join(o for o in SUPPORTED_OPERATIONS[kind] if o in _OPERATIONS)
            raise click.UsageError(f"a {kind} rule cannot grant {op}; use one of {supported} or all")
    try:
        return [Acl(principal, kind, name, op, "deny" if deny else "allow", "prefixed" if prefixed else "literal")
                for op in operations]
    except LogbrokerError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group()
def acls() -> None:
    """Permissions per principal on topics, groups and the cluster (with authorizer.enable)."""


@acls.command("add")
@_acl_options
def acls_add(principal: str, topic: str | None, group: str | None, transactional_id: str | None, cluster: bool,
             operations: tuple[str, ...], deny: bool, prefixed: bool, data_dir: str) -> None:
    """Add rules."""
    from logbroker.broker.security import Authorizer

    authorizer = Authorizer(data_dir)
    for acl in _acls_from(principal, topic, group, transactional_id, cluster, operations, deny, prefixed):
        with _one_line_errors():
            authorizer.add(acl)
        click.echo(f"added: {acl}")


@acls.command("remove")
@_acl_options
def acls_remove(principal: str, topic: str | None, group: str | None, transactional_id: str | None, cluster: bool,
                operations: tuple[str, ...], deny: bool, prefixed: bool, data_dir: str) -> None:
    """Remove rules."""
    from logbroker.broker.security import Authorizer

    authorizer = Authorizer(data_dir)
    for acl in _acls_from(principal, topic, group, transactional_id, cluster, operations, deny, prefixed):
        with _one_line_errors():
            removed = authorizer.remove(acl)
        click.echo(f"removed: {acl}" if removed else f"not found: {acl}")


@acls.command("list")
@_DATA_DIR
def acls_list(data_dir: str) -> None:
    """List every rule."""
    from logbroker.broker.security import Authorizer

    with _one_line_errors():
        found = Authorizer(data_dir).acls()
    for acl in found:
        click.echo(str(acl))
