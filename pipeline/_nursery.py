"""The one nursery pattern of every ``open_*`` block that owns background tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio


async def cancel_tasks(nursery: trio.Nursery) -> None:
    """The default ``close`` of ``open_owned_nursery``: cancel the background tasks."""
    nursery.cancel_scope.cancel()


@asynccontextmanager
async def open_owned_nursery(
    close: Callable[[trio.Nursery], Awaitable[None]] = cancel_tasks,
) -> AsyncIterator[trio.Nursery]:
    """A nursery for an ``open_*`` block's background tasks; the block runs inside it.

    When the block ends, normally or by an exception, ``await close(nursery)`` runs (stop
    taking work, then cancel the tasks or let them drain); then the nursery is left. An
    exception raised by the block comes out as itself, not wrapped in an ExceptionGroup, so a
    caller's ``except`` and ``pytest.raises`` see it; errors of the background tasks still
    come out in a group.

    Args:
        close: what ends the tasks (default: cancel them).
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        try:
            yield nursery
        except BaseException as exc:
            body_error = exc  # raised again below, once the tasks have stopped
        finally:
            await close(nursery)
    if body_error is not None:
        raise body_error
