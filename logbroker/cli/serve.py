"""``logbroker serve``: run the broker until SIGINT or SIGTERM."""

from __future__ import annotations

import errno
import logging
import signal
import sys
from typing import Any

import click

from logbroker.errors import LogbrokerError


@click.command()
@click.option("--data-dir", default=None, help="Data directory [default: ./logbroker-data].")
@click.option("--host", default=None, help="Address to bind [default: 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port to bind [default: 9092; 0 = any free port].")
@click.option("--advertised-host", default=None, help="Host clients are told to use [default: --host].")
@click.option("--advertised-port", type=int, default=None, help="Port clients are told to use [default: bound port].")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics on http://HOST:PORT/metrics [default: off; 0 = any free port].")
@click.option("--metrics-host", default=None, help="Address the metrics endpoint binds [default: 127.0.0.1].")
@click.option("--schema-registry-port", type=int, default=None,
              help="Serve a schema registry (Confluent's REST API) on http://HOST:PORT/ [default: off; 0 = any "
              "free port].")
@click.option("--console-port", type=int, default=None,
              help="Serve the web console on http://HOST:PORT/ [default: off; 0 = any free port].")
@click.option("--console-read-only", is_flag=True, default=None, help="The console only shows: every action is off.")
@click.option(
    "--flush", type=click.Choice(["always", "interval", "never"]), default=None,
    help="Durability: fsync before every ack, every --flush-interval-ms, or never [default: interval].",
)
@click.option("--flush-interval-ms", type=int, default=None, help="fsync period with --flush interval [default: 1000].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              envvar="LOGBROKER_CONFIG", help="TOML file of settings (Kafka or Python names).")
@click.option("--log-level", default="INFO", show_default=True, help="Logging level.")
def serve(config_file: str | None, log_level: str, **options: Any) -> None:
    """Run a Kafka-compatible broker. Settings come from flags, then LOGBROKER_* variables,
    then the config file, then defaults."""
    import trio

    from logbroker.broker import BrokerConfig
    from logbroker.server import serve as serve_broker

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        flags = {name: "--" + name.replace("_", "-") for name in options}
        config = BrokerConfig.load(config_file=config_file, overrides=options, override_names=flags)
    except LogbrokerError as exc:
        raise click.ClickException(str(exc)) from exc

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_broker, config)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    logging.getLogger("logbroker.server").info("received %s", signal.Signals(signum).name)
                    server.shutdown()
                    break

    try:
        trio.run(main)
    except BaseExceptionGroup as group:
        found = _first_user_error(group)
        if found is None:
            raise
        raise click.ClickException(_describe(found)) from group
    except (LogbrokerError, OSError) as exc:
        raise click.ClickException(_describe(exc)) from exc


_LISTEN_HINTS = {
    errno.EADDRINUSE: "is another broker running? choose another with --port",
    errno.EACCES: "ports below 1024 need privileges; choose another with --port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address; check --host",
}


def _describe(exc: BaseException) -> str:
    """One line for a start-up failure, with what to do where we know it."""
    from logbroker.server import ListenError

    if isinstance(exc, ListenError):
        hint = _LISTEN_HINTS.get(exc.errno or 0)
        return f"{exc} ({hint})" if hint else str(exc)
    return str(exc) if isinstance(exc, LogbrokerError) else f"cannot start: {exc}"


def _first_user_error(group: BaseExceptionGroup) -> BaseException | None:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found = _first_user_error(exc)
            if found is not None:
                return found
        elif isinstance(exc, (LogbrokerError, OSError)):
            return exc
    return None
