"""Open the update sink for a sync mode: the buffer (batched) or direct sync."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from ._buffer import DEFAULT_CAPACITY, DEFAULT_FLUSH_INTERVAL, open_update_buffer
from ._direct import open_direct_sync
from ._sink import SyncMode, UpdateSink
from ._store import ExportStore


@asynccontextmanager
async def open_update_sink(
    store: ExportStore,
    mode: SyncMode | str = SyncMode.BATCHED,
    *,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    capacity: int = DEFAULT_CAPACITY,
    on_flush: Callable[[float], None] | None = None,
) -> AsyncIterator[UpdateSink]:
    """Open ``open_update_buffer`` (``batched``) or ``open_direct_sync`` (``direct``).

    Args:
        store: the export store to write to.
        mode: ``batched`` (default) or ``direct``.
        flush_interval: seconds between flushes (batched only).
        capacity: reports the buffer's channel holds (batched only).
        on_flush: called with each flush's store-write duration in seconds (batched only).

    Raises:
        ValueError: ``mode`` is neither ``batched`` nor ``direct``, or a setting is out of range.
    """
    try:
        mode = SyncMode(mode)
    except ValueError:
        raise ValueError(f"sync mode must be 'batched' or 'direct', not {mode!r}") from None
    if mode is SyncMode.BATCHED:
        async with open_update_buffer(
            store, flush_interval=flush_interval, capacity=capacity, on_flush=on_flush
        ) as buffer:
            yield buffer
    else:
        async with open_direct_sync(store) as direct:
            yield direct
