"""Top-level click group; each subcommand lives in its own module."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="logbroker")
def main() -> None:
    """logbroker: a Kafka-compatible partitioned commit-log broker."""


def _register() -> None:
    from logbroker.cli import dump, serve

    main.add_command(serve.serve)
    main.add_command(dump.dump)


_register()
