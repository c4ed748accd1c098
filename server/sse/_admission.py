"""The open streams of one server: admission against ``max_subscribers``, and shutdown.

A stream request is *admitted* before its response starts (so a full server can still answer
503), and its admission is released by ``ConnectionGuard`` when the HTTP request ends, however
it ends: the count can neither leak nor overshoot. While a stream runs it holds a
``StreamHandle``; ``StreamHub.shutdown`` cancels the wait of every handle so each stream sends
its last events and ends. No task is started per stream.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

import trio

from .._errors import ShuttingDownError, TooManySubscribersError

_ADMITTED = "progress_sync.admitted"
"""Key in the ASGI scope of a request whose stream was admitted."""


class StreamHandle:
    """One running stream: cancels its current wait when the server shuts down.

    Attributes:
        stopping: True once the server asked the stream to end.
    """

    __slots__ = ("_scope", "stopping")

    def __init__(self) -> None:
        self._scope: trio.CancelScope | None = None
        self.stopping = False

    def wait_scope(self, timeout: float = math.inf) -> trio.CancelScope:
        """A cancel scope for one wait: it ends after ``timeout`` seconds or at shutdown.

        Enter it around the wait only (never around a ``yield``); after it, check
        ``stopping`` to tell a shutdown from a timeout.
        """
        scope = trio.CancelScope(deadline=trio.current_time() + timeout)
        if self.stopping:
            scope.cancel()
        self._scope = scope
        return scope

    def stop(self) -> None:
        """Ask the stream to end: its current (and any later) wait is cancelled."""
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()


class StreamHub:
    """Counts and stops the open streams of a server.

    Attributes:
        admitted: stream requests admitted and not yet ended (what ``max_subscribers``
            bounds).
        running: streams whose body is being sent now.
        stopping: True once ``shutdown`` was called; later stream requests get 503.
    """

    def __init__(self) -> None:
        self.admitted = 0
        self.stopping = False
        self._handles: set[StreamHandle] = set()

    @property
    def running(self) -> int:
        return len(self._handles)

    def admit(self, scope: MutableMapping[str, Any], *, limit: int, retry_after: int) -> None:
        """Admit one stream request, or refuse it.

        Args:
            scope: the request's ASGI scope; ``release`` (called by ``ConnectionGuard`` when
                the request ends) gives the place back.
            limit: the most streams this server holds (``max_subscribers``).
            retry_after: the ``Retry-After`` seconds to send when refused for being full.

        Raises:
            ShuttingDownError: the server is shutting down.
            TooManySubscribersError: ``limit`` streams are open already.
        """
        if self.stopping:
            raise ShuttingDownError(retry_after)
        if self.admitted >= limit:
            raise TooManySubscribersError(limit, retry_after)
        if not scope.get(_ADMITTED):
            scope[_ADMITTED] = True
            self.admitted += 1

    def release(self, scope: MutableMapping[str, Any]) -> None:
        """Give back the place of a request admitted with ``admit`` (no-op otherwise)."""
        if scope.pop(_ADMITTED, False):
            self.admitted -= 1

    @contextmanager
    def track(self) -> Iterator[StreamHandle]:
        """Hold a ``StreamHandle`` while a stream runs (``with hub.track() as handle:``)."""
        handle = StreamHandle()
        if self.stopping:
            handle.stop()
        self._handles.add(handle)
        try:
            yield handle
        finally:
            self._handles.discard(handle)

    def close(self) -> None:
        """Refuse new streams (503 with ``Retry-After``) while the open ones keep running."""
        self.stopping = True

    def shutdown(self) -> None:
        """Refuse new streams and tell every open stream to send its last events and end."""
        self.stopping = True
        for handle in list(self._handles):
            handle.stop()


def spread_retry_ms(retry_ms: int, spread_ms: int) -> int:
    """A reconnection time drawn uniformly from ``retry_ms`` to ``retry_ms + spread_ms``.

    Sent to every stream cut by a shutdown, so that clients come back spread over the window
    instead of all at once.
    """
    return retry_ms + random.randint(0, spread_ms)
