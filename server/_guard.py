"""ASGI middleware around the app: a send timeout per write, and stream admissions released.

Why here and not in the stream: Quart writes a streaming body by iterating it and awaiting
the ASGI ``send`` for each chunk, so the stream is parked at its ``yield`` while a write
waits on a frozen client and cannot time out itself. Wrapping ``send`` puts a deadline on
every write: the whole request runs in one cancel scope whose deadline is set to
``send_timeout`` seconds from now before each write and cleared after it (two cheap
attribute updates per write, no task, no new scope). If a write takes longer, the request is
cancelled: the stream generator is closed (its subscriptions leave the store), the app
returns, and Hypercorn closes the connection because the response never ended.

Under HTTP/2 a write also waits while Hypercorn holds more than 32 KiB of the stream's
data for a client's flow-control window (``H2SendWindow``: Hypercorn itself lets such writes
return at once), and that wait is cancellable, so the deadline acts at once. Under HTTP/1.1
Hypercorn's trio worker shields the socket write itself from
cancellation, so the kernel has to give up on the socket first: ``serve`` sets
``TCP_USER_TIMEOUT`` to the same ``send_timeout`` on the listening socket (Linux), which makes
the kernel abort a connection whose peer has taken no data for that long (zero-window probes
included); the write then fails and the request is cancelled the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import MutableMapping
from typing import Any, cast

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from ._metrics import Metrics
from ._seam import H2SendWindow
from .sse._admission import StreamHub

logger = logging.getLogger(__name__)


class ConnectionGuard:
    """Wraps an ASGI app (``app.asgi_app = ConnectionGuard(app.asgi_app, ...)``).

    Args:
        app: the ASGI app to wrap.
        send_timeout: seconds one write to a client may take before the client is dropped.
        hub: the server's streams; a request's admission is released when it ends.
        metrics: counts dropped clients (``progress_sync_clients_dropped{reason}``).
    """

    def __init__(
        self, app: ASGIFramework, *, send_timeout: float, hub: StreamHub, metrics: Metrics
    ) -> None:
        self.app = app
        self.send_timeout = send_timeout
        self.hub = hub
        self.metrics = metrics

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        timeout = self.send_timeout
        current_time = trio.current_time

        h2_window = H2SendWindow.of(send) if scope.get("http_version") == "2" else None

        with trio.CancelScope() as request_scope:

            async def send_with_timeout(message: Any) -> None:
                request_scope.deadline = current_time() + timeout
                try:
                    await send(message)
                    if h2_window is not None:
                        await h2_window.wait_drained()
                finally:
                    request_scope.deadline = math.inf

            try:
                await self.app(scope, receive, send_with_timeout)
            finally:
                # the hub marks the scope it admitted with a key of its own
                self.hub.release(cast("MutableMapping[str, Any]", scope))
        if request_scope.cancelled_caught:
            client = scope.get("client")
            self.metrics.client_dropped(tuple(client) if client else None, "send_timeout")  # type: ignore[arg-type]
            client = client or ("?", 0)
            logger.info(
                "dropped client %s:%s of %s: a write did not finish within %g s",
                client[0],
                client[1],
                scope.get("path"),
                timeout,
            )
