"""Where Hypercorn's trio worker and Quart-Trio meet: the end of a response, and the serve loop.

``EndOfResponse`` hands the end of each response over safely (below); ``serve_hypercorn`` is
Hypercorn's worker loop with a connection limit, and closes connections their clients closed;
``H2SendWindow`` gives HTTP/2 writes the backpressure Hypercorn's buffer loses.

The finding (Hypercorn 0.18.0, Quart-Trio 0.12.0; reported upstream as "Connection: close
ignored?", https://github.com/pgjones/hypercorn/issues/330, without the cause):

Hypercorn ends an HTTP/1.x response *inside* the app's last ``send`` call. The call that
carries ``http.response.body`` with ``more_body=False`` runs, in the app's own task:
``HTTPStream._send_closed`` -> ``H11Protocol._maybe_recycle`` -> first
``HTTPStream.handle(StreamClosed)``, which puts ``{"type": "http.disconnect"}`` into the app's
receive channel, and then either ``TCPServer._close`` (an HTTP/1.0 or ``Connection: close``
request: ``send_eof`` + ``aclose`` of the socket) or, for a keep-alive connection,
``TCPServer.protocol_send(Updated(idle=True))``, which starts the keep-alive timer.

Quart-Trio's ``TrioASGIHTTPConnection`` runs the request handler and a receive loop in one
nursery, and the receive loop cancels that nursery as soon as it reads ``http.disconnect``.
So the disconnect Hypercorn queued during the last ``send`` wakes the receive loop, which
cancels the handler task *while it is still inside that send*: the next checkpoint
(``trio.SocketStream.send_eof``'s, or the keep-alive timer's ``trio.Lock``) raises
``Cancelled``, and Hypercorn's close or timer start is skipped. The socket then stays open
until the client closes it: HTTP/1.0 requests and streams never get their EOF (nginx's default
upstream protocol is HTTP/1.0, so a finished stream hangs until ``proxy_read_timeout``), idle
keep-alive connections are never timed out, and a shutdown waits its whole graceful timeout
for them (the keep-alive timer is also what closes idle connections when the server stops).
A bare ASGI app never reads ``receive`` after its response, so plain Hypercorn closes in 2 ms.

The fix, here rather than in either library: ``EndOfResponse`` holds back an
``http.disconnect`` that arrives while the app's final ``send`` is still running, and hands
it to the app once that send has returned. Hypercorn's close and timer code then run to the
end, uncancelled; the handler returns right after (Quart-Trio cancels the receive loop then).
Nothing else changes: a disconnect at any other time (a client leaving mid-stream) goes
through at once, and a final send that blocks (a frozen HTTP/2 client) is still bounded by
``ConnectionGuard``'s send timeout, which cancels the whole request.

The same wrapper sends 204 and 304 answers without ``Content-Length`` and ``Content-Type``:
Quart gives every ``Response`` both (``0`` and ``text/html`` for an empty one), but RFC 9110
forbids ``Content-Length`` on a 204 (section 8.6), and a 304 carries only the metadata that
guides caches (section 15.4.5), neither of which describes a body it does not have.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import hypercorn.config
import hypercorn.utils
import trio
from hypercorn.protocol.h2 import BUFFER_HIGH_WATER, H2Protocol, StreamBuffer
from hypercorn.protocol.http_stream import HTTPStream
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import (
    ASGIFramework,
    ASGIReceiveCallable,
    ASGISendCallable,
    ConnectionState,
    LifespanState,
    Scope,
)
from hypercorn.utils import ShutdownError, raise_shutdown, repr_socket_addr

from ._connections import LimitedListener

if TYPE_CHECKING:
    from ._metrics import Metrics

_BODILESS = frozenset((204, 304))
_BODY_HEADERS = frozenset((b"content-length", b"content-type"))


class EndOfResponse:
    """Wraps an ASGI app so Hypercorn's end-of-response work is never cancelled by the app.

    Install it directly around the Quart-Trio app (inside ``ConnectionGuard``), see the
    module docstring for why.

    Args:
        app: the ASGI app to wrap.
    """

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        final_sent: trio.Event | None = None

        async def send_last_safely(message: Any) -> None:
            nonlocal final_sent
            if message["type"] != "http.response.body" or message.get("more_body", False):
                if message["type"] == "http.response.start" and message["status"] in _BODILESS:
                    message = {
                        **message,
                        "headers": [
                            (name, value)
                            for name, value in message.get("headers", ())
                            if name.lower() not in _BODY_HEADERS
                        ],
                    }
                await send(message)
                return
            final_sent = trio.Event()
            try:
                await send(message)
            finally:
                final_sent.set()

        async def receive_after_last_send() -> Any:
            message = await receive()
            if message["type"] == "http.disconnect" and final_sent is not None:
                await final_sent.wait()
            return message

        await self.app(scope, receive_after_last_send, send_last_safely)


class _TCPServer(TCPServer):
    """Hypercorn's connection handler, which closes a connection as soon as its client has.

    Hypercorn 0.18 leaves a connection's keep-alive timer running after the client closed it
    (the read loop ends on EOF, but the connection's task group still waits for the timer),
    so a connection a client closed while idle keeps its socket, its file descriptor and its
    place under ``max_connections`` until ``keep_alive_timeout`` has passed. Stopping the
    timer once the read loop has ended closes it at once.
    """

    async def _read_data(self) -> None:
        await super()._read_data()
        await self.idle_task.stop()


async def serve_hypercorn(
    app: ASGIFramework,
    settings: hypercorn.config.Config,
    *,
    sockets: hypercorn.config.Sockets,
    shutdown_trigger: Callable[[], Awaitable[None]],
    max_connections: int,
    metrics: Metrics,
    stopped_accepting: trio.Event | None = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Hypercorn's trio ``worker_serve``, accepting through a ``LimitedListener``.

    The same steps as ``hypercorn.trio.run.worker_serve`` 0.18 (lifespan startup, serve the
    listeners, on ``shutdown_trigger`` stop accepting, set ``context.terminated`` so idle
    connections close, cut the rest after ``graceful_timeout``, lifespan shutdown), for plain
    TCP sockets (the server terminates no TLS and serves no QUIC); Hypercorn has no hook for
    the listener, and the connection limit needs one.

    Args:
        app: the ASGI app.
        settings: Hypercorn's settings (``hypercorn_config``).
        sockets: the bound, listening sockets.
        shutdown_trigger: returns when the server should stop accepting and drain.
        max_connections: the most connections open at once, over all the sockets.
        metrics: counts connections and dropped clients.
        stopped_accepting: set once the listeners are closed and Hypercorn's connections know
            the server is terminating (idle ones close; HTTP/2 ones send GOAWAY once their
            last stream ends).
        task_status: reports the bound URLs (``["http://127.0.0.1:8000"]``).
    """
    if sockets.secure_sockets or sockets.quic_sockets:
        raise ValueError("serve_hypercorn serves plain TCP sockets only")
    wrapped = hypercorn.utils.wrap_app(app, settings.wsgi_max_body_size, None)
    lifespan_state: LifespanState = {}
    lifespan = Lifespan(wrapped, settings, lifespan_state)
    context = WorkerContext(None)
    limiter = trio.CapacityLimiter(max_connections)

    async with trio.open_nursery() as lifespan_nursery:
        await lifespan_nursery.start(lifespan.handle_lifespan)
        await lifespan.wait_for_startup()

        async with trio.open_nursery() as server_nursery:
            listeners = []
            binds = []
            for sock in sockets.insecure_sockets:
                listener = trio.SocketListener(trio.socket.from_stdlib_socket(sock))
                listeners.append(LimitedListener(listener, limiter, metrics))
                bind = repr_socket_addr(sock.family, sock.getsockname())
                binds.append(f"http://{bind}")
                await settings.log.info(f"Running on http://{bind} (CTRL + C to quit)")

            task_status.started(binds)
            try:
                async with trio.open_nursery(strict_exception_groups=True) as nursery:
                    nursery.start_soon(raise_shutdown, shutdown_trigger)
                    nursery.start_soon(
                        partial(
                            trio.serve_listeners,
                            partial(
                                _TCPServer,
                                wrapped,
                                settings,
                                context,
                                ConnectionState(lifespan_state.copy()),
                            ),
                            listeners,
                            handler_nursery=server_nursery,
                        ),
                    )
                    await trio.sleep_forever()
            except BaseExceptionGroup as error:
                _, other_errors = error.split((ShutdownError, KeyboardInterrupt))
                if other_errors is not None:
                    raise other_errors from None
            finally:
                await context.terminated.set()
                if stopped_accepting is not None:
                    stopped_accepting.set()
                server_nursery.cancel_scope.deadline = (
                    trio.current_time() + settings.graceful_timeout
                )

        await lifespan.wait_for_shutdown()
        lifespan_nursery.cancel_scope.cancel()


class H2SendWindow:
    """The HTTP/2 stream's send buffer inside Hypercorn, so a write can wait for the client.

    Hypercorn 0.18's HTTP/2 ``StreamBuffer.push`` is meant to block once a stream has
    ``BUFFER_HIGH_WATER`` bytes (32 KiB) waiting for the client's flow-control window, but
    ``pop`` sets the event it waits on whenever it hands out less than half of that, and with
    the window at 0 it hands out nothing: every write returns at once and the data piles up in
    Hypercorn (14 MiB in 25 s for one frozen client), out of the app's sight, so no send
    timeout can fire. ``wait_drained`` restores the intended backpressure from outside: after
    each write, while more than ``BUFFER_HIGH_WATER`` bytes wait, the write waits until the
    buffer empties (the client opened its window) — under ``ConnectionGuard``'s deadline, so a
    client that never opens it is dropped after ``send_timeout``, its buffer bounded meanwhile.

    Reached through the ASGI ``send`` callable Hypercorn gives the app, ``HTTPStream.app_send``
    (its ``__self__``) and the protocol behind it; None when that is not an HTTP/2 stream of
    Hypercorn's (the test client, HTTP/1.x).
    """

    def __init__(self, buffer: StreamBuffer) -> None:
        self.buffer = buffer

    @classmethod
    def of(cls, send: object) -> H2SendWindow | None:
        """The window behind ``send``, or None."""
        stream = getattr(send, "__self__", None)
        if not isinstance(stream, HTTPStream):
            return None
        protocol = getattr(stream.send, "__self__", None)
        if not isinstance(protocol, H2Protocol):
            return None
        buffer = protocol.stream_buffers.get(stream.stream_id)
        return None if buffer is None else cls(buffer)

    async def wait_drained(self) -> None:
        """Return at once unless over ``BUFFER_HIGH_WATER`` bytes wait; then once none do."""
        if len(self.buffer.buffer) > BUFFER_HIGH_WATER:
            await self.buffer.drain()
