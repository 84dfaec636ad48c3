"""Console views: schemas (filled in by their own change)."""

from __future__ import annotations

from starlette.routing import BaseRoute

from logbroker.server.console.app import Console

__all__ = ["routes"]


def routes(console: Console) -> list[BaseRoute]:
    return []
