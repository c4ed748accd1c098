"""Where Hypercorn's trio worker and Quart-Trio meet: the end of a response handed over safely.

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

from typing import Any

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

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
