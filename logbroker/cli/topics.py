"""``logbroker topics create|list|describe|alter|delete``: topic administration.

Each subcommand opens an :class:`~logbroker.client.Admin` for one call.
Output is aligned text on a terminal and one JSON document with
``--format json``. Client errors exit with status 1 and a one-line message.
Also holds the options and helpers that ``produce`` and ``consume`` share.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, TypeVar

import click
import trio

from logbroker.cli.connect import ClientSettings, client_options
from logbroker.client import Admin, TopicDescription
from logbroker.errors import InvalidConfigError, KafkaConnectionError, KafkaError, LogbrokerError

T = TypeVar("T")

format_option = click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="Output: text for people, json for programs.",
)


def run_client(main: Callable[[], Awaitable[T]]) -> T:
    """``trio.run(main)``, turning client and usage errors into one line on stderr and
    exit status 1 (with a hint when the broker cannot be reached or refuses the
    login), and a closed output pipe (``| head``) into a quiet exit."""
    try:
        return trio.run(main)
    except BaseExceptionGroup as group:
        leaf = _first_leaf(group)
        if isinstance(leaf, (LogbrokerError, BrokenPipeError, ValueError, click.ClickException)):
            _fail(leaf)
        raise
    except (LogbrokerError, BrokenPipeError, ValueError) as exc:
        _fail(exc)


_UNREACHABLE_HINT = (
    "Is a broker running at that address? Start one with `logbroker serve`, or name yours with "
    "--bootstrap HOST:PORT (or LOGBROKER_BOOTSTRAP)."
)
_LOGIN_HINT = (
    "Check --sasl-username/--sasl-password and --sasl-mechanism (or LOGBROKER_SASL_* variables, "
    "or --command-config)."
)


def print_table(headers: list[str], rows: Sequence[Sequence[object]]) -> None:
    """Columns padded to their widest cell; columns of numbers (or sizes like
    ``1.2 MiB``, or ``-`` for none) after the first are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [i > 0 and bool(cells) and all(r[i].lstrip("-")[:1].isdigit() or r[i] in ("-", "?") for r in cells)
               for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if numeric[i] else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths)))

    click.echo(line(headers).rstrip())
    for row in cells:
        click.echo(line(row).rstrip())


async def run_until_signalled(body: Callable[[], Awaitable[Any]]) -> None:
    """Await ``body()`` until it returns or SIGINT/SIGTERM arrives; a signal
    cancels it, so the ``async with`` blocks around this call close cleanly
    (a queue consumer releases its records, a group member leaves)."""
    async with trio.open_nursery() as nursery:
        async def watch() -> None:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

        nursery.start_soon(watch)
        await body()
        nursery.cancel_scope.cancel()


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first


def _fail(exc: BaseException) -> NoReturn:
    if isinstance(exc, BrokenPipeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes stdout at exit
        sys.exit(0)
    if isinstance(exc, click.ClickException):
        raise exc
    if isinstance(exc, KafkaConnectionError) and "no broker reachable" in str(exc):
        raise click.ClickException(f"{exc}\n{_UNREACHABLE_HINT}") from exc
    if type(exc).__name__ in ("AuthenticationError", "SaslAuthenticationError"):
        raise click.ClickException(f"{exc}\n{_LOGIN_HINT}") from exc
    if isinstance(exc, (ValueError, InvalidConfigError)):
        raise click.ClickException(str(exc)) from exc
    raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc


def parse_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    """``("a=1", "b=2")`` -> ``{"a": "1", "b": "2"}``; a missing ``=`` is a usage error."""
    out = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=what)
        out[name] = value
    return out


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, sort_keys=True))


@click.group()
def topics() -> None:
    """Create, list, describe, alter and delete topics."""


@topics.command("create")
@click.argument("names", nargs=-1, required=True)
@click.option("--partitions", "-p", type=int, default=-1, help="Partitions [default: the broker's].")
@click.option("--replication-factor", "-r", type=int, default=-1, help="Replicas [default: the broker's].")
@click.option("--config", "-c", "configs", multiple=True, metavar="NAME=VALUE", help="Topic config (repeatable).")
@click.option("--if-not-exists", is_flag=True, help="Succeed if the topic already exists.")
@client_options
@format_option
def create(names: tuple[str, ...], partitions: int, replication_factor: int, configs: tuple[str, ...],
           if_not_exists: bool, client: ClientSettings, fmt: str) -> None:
    """Create topics NAMES."""
    from logbroker.client import NewTopic

    config_map = parse_pairs(configs, "--config")

    async def main() -> dict[str, KafkaError | None]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            return await admin.create_topics(
                [NewTopic(n, partitions, replication_factor, config_map) for n in names]
            )

    errors = run_client(main)
    failed = {n: e for n, e in errors.items() if e is not None
              and not (if_not_exists and getattr(e, "code", None) == 36)}
    if fmt == "json":
        emit_json({n: (None if e is None or n not in failed else str(e)) for n, e in errors.items()})
    else:
        for n, e in errors.items():
            if n in failed:
                click.echo(f"failed   {n}: {e}", err=True)
            elif e is None:
                click.echo(f"created  {n}")
            else:
                click.echo(f"exists   {n}")
    if failed:
        sys.exit(1)


@topics.command("list")
@click.option("--internal", is_flag=True, help="Include internal topics (__consumer_offsets).")
@client_options
@format_option
def list_(internal: bool, client: ClientSettings, fmt: str) -> None:
    """List topic names."""

    async def main() -> list[str]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            return await admin.list_topics(internal=internal)

    names = run_client(main)
    if fmt == "json":
        emit_json(names)
    else:
        for n in names:
            click.echo(n)


@topics.command("describe")
@click.argument("names", nargs=-1)
@client_options
@format_option
def describe(names: tuple[str, ...], client: ClientSettings, fmt: str) -> None:
    """Show partitions, leaders, end offsets and non-default configs of NAMES (default: all)."""

    async def main() -> tuple[list[TopicDescription], dict[str, dict[int, tuple[int, int]]]]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            found = await admin.describe_topics(list(names) or None, configs=True)
            ends: dict[str, dict[int, tuple[int, int]]] = {}
            for t in found:
                latest = await admin.topic_offsets(t.name, "latest")
                starts = await admin.topic_offsets(t.name, "earliest")
                ends[t.name] = {p: (starts[p], latest[p]) for p in latest}
            return found, ends

    found, offsets = run_client(main)
    if fmt == "json":
        emit_json([
            {
                "name": t.name,
                "topic_id": t.topic_id,
                "configs": t.configs,
                "partitions": [
                    {"partition": p.partition, "leader": p.leader, "replicas": list(p.replicas), "isr": list(p.isr),
                     "start_offset": offsets[t.name][p.partition][0], "end_offset": offsets[t.name][p.partition][1]}
                    for p in t.partitions
                ],
            }
            for t in found
        ])
        return
    for t in found:
        configs = ", ".join(f"{k}={v}" for k, v in sorted(t.configs.items())) or "(defaults)"
        click.secho(t.name, bold=True, nl=False)
        click.echo(f"  partitions={len(t.partitions)}  id={t.topic_id}  configs: {configs}")
        click.echo(f"  {'partition':>9}  {'leader':>6}  {'replicas':<10}  {'start':>10}  {'end':>10}")
        for p in t.partitions:
            start, end = offsets[t.name][p.partition]
            replicas = ",".join(map(str, p.replicas))
            click.echo(f"  {p.partition:>9}  {p.leader:>6}  {replicas:<10}  {start:>10}  {end:>10}")


@topics.command("alter")
@click.argument("name")
@click.option("--partitions", "-p", type=int, help="Grow to this many partitions.")
@click.option("--config", "-c", "configs", multiple=True, metavar="NAME=VALUE", help="Set a config (repeatable).")
@click.option("--delete-config", multiple=True, metavar="NAME", help="Reset a config to its default (repeatable).")
@client_options
@format_option
def alter(name: str, partitions: int | None, configs: tuple[str, ...], delete_config: tuple[str, ...],
          client: ClientSettings, fmt: str) -> None:
    """Grow topic NAME or change its configs."""
    changes: dict[str, str | None] = dict(parse_pairs(configs, "--config"))
    changes.update({k: None for k in delete_config})
    if partitions is None and not changes:
        raise click.UsageError("nothing to change: give --partitions, --config or --delete-config")

    async def main() -> None:
        async with Admin(client.bootstrap, **client.options()) as admin:
            await admin.alter_topic(name, partitions=partitions, configs=changes or None)

    run_client(main)
    if fmt == "json":
        emit_json({"altered": name, "partitions": partitions, "configs": changes})
    else:
        click.echo(f"altered  {name}")


@topics.command("delete")
@click.argument("names", nargs=-1, required=True)
@click.option("--if-exists", is_flag=True, help="Succeed if a topic does not exist.")
@client_options
@format_option
def delete(names: tuple[str, ...], if_exists: bool, client: ClientSettings, fmt: str) -> None:
    """Delete topics NAMES."""

    async def main() -> dict[str, KafkaError | None]:
        async with Admin(client.bootstrap, **client.options()) as admin:
            return await admin.delete_topics(list(names))

    errors = run_client(main)
    failed = {n: e for n, e in errors.items() if e is not None and not (if_exists and getattr(e, "code", None) == 3)}
    if fmt == "json":
        emit_json({n: (str(e) if n in failed else None) for n, e in errors.items()})
    else:
        for n, e in errors.items():
            if n in failed:
                click.echo(f"failed   {n}: {e}", err=True)
            else:
                click.echo(f"deleted  {n}" if e is None else f"absent   {n}")
    if failed:
        sys.exit(1)
