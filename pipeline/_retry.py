"""Retrying a store write while the store is unavailable, with backoff: written once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio

from ._errors import StoreUnavailableError

FIRST_RETRY_DELAY = 0.1
"""Seconds before the first retry; each next one waits twice as long."""
MAX_RETRY_DELAY = 5.0
"""The longest wait between two tries, in seconds."""

T = TypeVar("T")


async def retry_while_unavailable(
    attempt: Callable[[], Awaitable[T]],
    *,
    retry_for: float,
    on_unavailable: Callable[[StoreUnavailableError], None] | None = None,
) -> T:
    """Await ``attempt()``; while it raises ``StoreUnavailableError``, try again later.

    The waits double from ``FIRST_RETRY_DELAY`` up to ``MAX_RETRY_DELAY`` seconds (trio's
    clock); no try starts after ``retry_for`` seconds from the first.

    Args:
        attempt: the write to make (called once a try).
        retry_for: seconds after which no new try starts.
        on_unavailable: called with each ``StoreUnavailableError`` (to count or log it).

    Returns:
        What the first successful try returned.

    Raises:
        StoreUnavailableError: the last try's, when the next one would start too late.
    """
    deadline = trio.current_time() + retry_for
    delay = FIRST_RETRY_DELAY
    while True:
        try:
            return await attempt()
        except StoreUnavailableError as exc:
            if on_unavailable is not None:
                on_unavailable(exc)
            if trio.current_time() + delay > deadline:
                raise
        await trio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_DELAY)
