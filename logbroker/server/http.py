"""Every HTTP surface of the broker (metrics, schema registry, console) is an
ASGI application served by hypercorn on the broker's trio loop, each on its
own port. Handlers therefore run on the broker's thread and may read its
state directly, as request handlers do."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["serve_http"]

log = logging.getLogger("logbroker.http")
_HYPERCORN_LOG = logging.getLogger("logbroker.http.hypercorn")
_HYPERCORN_LOG.setLevel(logging.WARNING)  # its "Running on ..." repeats our own line


def _port_of(bind: str) -> int:
    """``http://127.0.0.1:8081`` or ``http://[::1]:8081`` -> 8081."""
    return int(bind.rpartition(":")[2])


async def serve_http(
    app: Any, host: str, port: int, *, name: str, path: str = "/", task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (0: any free port) until cancelled.

    ``task_status.started(bound_port)`` once listening; the log says
    ``{name} on http://HOST:PORT{path}``. A port in use raises OSError naming it.
    """
    config = Config()
    config.bind = [f"[{host}]:{port}" if ":" in host else f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = _HYPERCORN_LOG
    config.keep_alive_timeout = 30
    config.graceful_timeout = 1  # the broker's own shutdown already drained its clients
    config.include_server_header = False
    async with trio.open_nursery() as nursery:
        try:
            binds: list[str] = await nursery.start(partial(serve, app, config))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot serve {name} on {host}:{port}: {exc.strerror or exc}") from exc
        bound = _port_of(binds[0])
        log.info("%s on http://%s:%d%s", name, host, bound, path)
        task_status.started(bound)
