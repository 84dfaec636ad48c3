"""Top-level click group; each subcommand lives in its own module."""

from __future__ import annotations

import os
from typing import Any

import click

from logbroker.cli.connect import root_client_options


class _Commands(click.Group):
    """The top-level group: Ctrl-C is a quiet exit 130, and an error no command
    turned into a message is still one line (a bug report, not a traceback),
    unless LOGBROKER_DEBUG is set."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            raise SystemExit(130) from None
        except BaseException as exc:
            if os.environ.get("LOGBROKER_DEBUG"):
                raise
            leaf = _first_leaf(exc)
            if isinstance(leaf, KeyboardInterrupt):
                raise SystemExit(130) from None
            if isinstance(leaf, (click.ClickException, SystemExit)):
                raise leaf from None
            raise click.ClickException(
                f"internal error: {type(leaf).__name__}: {leaf} (a bug in logbroker: please report it; "
                "LOGBROKER_DEBUG=1 shows the traceback)"
            ) from exc


def _first_leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="logbroker")
@root_client_options
def main() -> None:
    """logbroker: a Kafka-compatible partitioned commit-log broker.

    \b
    Start a broker:   logbroker serve            (data in ./logbroker-data, port 9092)
    Use it:           logbroker topics create orders -p 6
                      echo hello | logbroker produce orders
                      logbroker consume orders --from-beginning -e

    Commands that talk to a broker reach LOGBROKER_BOOTSTRAP (default
    localhost:9092; or --bootstrap/-b, before or after the command). Secured
    brokers: --security-protocol, --sasl-mechanism, --sasl-username,
    --sasl-password, --ssl-ca (or LOGBROKER_* variables, or --command-config
    FILE with Kafka's property names). --timeout SECONDS bounds the wait for
    an unreachable broker (default 5).
    """


def _register() -> None:
    from logbroker.cli import dump, repair, serve
    from logbroker.cli import consume, produce, topics

    main.add_command(serve.serve)
    main.add_command(dump.dump)
    main.add_command(repair.repair)
    main.add_command(topics.topics)
    main.add_command(produce.produce)
    main.add_command(consume.consume)

    from logbroker.cli import bench, groups, mirror, queue, reply, security

    main.add_command(bench.bench)

    main.add_command(queue.queue)

    main.add_command(mirror.mirror)

    main.add_command(reply.request)
    main.add_command(reply.reply)

    main.add_command(groups.groups)

    from logbroker.cli import transactions

    main.add_command(transactions.transactions)

    main.add_command(security.users)
    main.add_command(security.acls)

    from logbroker.cli import status

    main.add_command(status.status)

    from logbroker.cli import schemas
    main.add_command(schemas.schemas)


_register()
