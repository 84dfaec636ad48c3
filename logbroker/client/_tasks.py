"""A nursery for a client's background tasks that the owner's own code is not inside.

``async with`` a client opens an outer nursery in the caller's task; its body
is the caller's code. Cancelling that nursery would cancel the caller too, so
the client's tasks live in an inner nursery hosted by one task of the outer
one: cancelling the inner nursery stops the client's tasks and nothing else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import trio

__all__ = ["close_background", "leaves", "open_background"]


async def _host(*, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as nursery:
        task_status.started(nursery)
        await trio.sleep_forever()


async def open_background(stack: contextlib.AsyncExitStack) -> trio.Nursery:
    """Return a nursery whose cancel scope covers only the tasks started in it.

    The outer nursery is entered on ``stack``; closing the stack waits for the
    inner nursery, which ends once its cancel scope is cancelled.
    """
    outer = await stack.enter_async_context(trio.open_nursery())
    inner = await outer.start(_host)
    stack.callback(inner.cancel_scope.cancel)  # runs before the outer nursery's exit
    return inner


async def close_background(stack: contextlib.AsyncExitStack, exc: BaseException | None) -> None:
    """Exit ``stack`` (opened by :func:`open_background`); re-raise ``exc`` itself, not a group.

    A nursery wraps an error of its body in an ExceptionGroup, so an error of
    the caller's own code inside ``async with client`` would come out wrapped.
    When the group holds nothing but ``exc``, this returns and the caller's
    ``__aexit__`` lets ``exc`` propagate unchanged; a group with errors of the
    client's own tasks propagates as is.
    """
    try:
        await stack.__aexit__(type(exc) if exc is not None else None, exc, exc.__traceback__ if exc else None)
    except BaseExceptionGroup as group:
        if exc is None or list(leaves(group)) != [exc]:
            raise


def leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    """The exceptions of ``group`` and of the groups nested in it, depth first."""
    for inner in group.exceptions:
        if isinstance(inner, BaseExceptionGroup):
            yield from leaves(inner)
        else:
            yield inner
