"""``GET /api/progress/ws``: a producer's persistent connection (WebSocket, RFC 6455).

The producer sends text frames, each a JSON array of updates (the objects of
``POST /api/progress``, ``_ingest_body.BatchUpdateBody``); the server answers each frame, in
order, with one text frame: the batch's outcome ``{"accepted", "errors", "unknownJobs",
"finishedJobs"}`` (``_ingest.BatchOutcome``), or, when the frame as a whole is refused, the
error body of the HTTP API with its status: ``{"error", "detail", "field", "status"}`` (400 not
a JSON array, 413 more than ``max_batch_updates`` updates, 503 store unavailable; the body's
``code`` is the contract's, ``progress_sync._contract``). The
connection stays open after either answer.

- Authentication at the handshake, as ``POST /api/progress``: ``Authorization: Bearer
  <producer token>`` when the server has one; refused with the HTTP API's 401 JSON answer
  (ASGI's WebSocket denial response, which Hypercorn implements).
- Limits: a frame larger than ``max_body_bytes`` (UTF-8 bytes) closes the connection with
  1009 (message too big); a binary frame closes it with 1003 (unsupported data).
- Shutdown: every open connection is closed with 1012 (service restart), and the client
  reconnects (to this server once it is back, or another).

Close codes: https://www.rfc-editor.org/rfc/rfc6455#section-7.4.1 and IANA's registry (1012).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from progress_sync._contract import SHUTTING_DOWN

from ._errors import ShuttingDownError, answer_for
from ._ingest_body import encode

if TYPE_CHECKING:
    from ._auth import Auth
    from ._config import ServerConfig
    from ._ingest import Ingest
    from .sse._admission import StreamHub

logger = logging.getLogger(__name__)

Message = dict[str, Any]

CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_SERVICE_RESTART = 1012

_JSON = (b"content-type", b"application/json")


async def serve_producer_socket(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
    *,
    ingest: Ingest,
    auth: Auth,
    config: ServerConfig,
    hub: StreamHub,
) -> None:
    """Serve one producer WebSocket until the client closes it or the server shuts down."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    headers = dict(scope["headers"])
    authorization = headers.get(b"authorization")
    try:
        if hub.stopping:
            raise ShuttingDownError(1)
        auth.authenticate(
            "POST",
            None,
            None if authorization is None else authorization.decode("latin-1"),
            None,
        )
    except Exception as exc:
        await _deny(scope, send, *answer_for(exc))
        return
    await send({"type": "websocket.accept"})
    limit = config.max_body_bytes
    with hub.track() as handle:
        while True:
            with handle.wait_scope():
                message = await receive()
            if handle.stopping:
                await _close(send, CLOSE_SERVICE_RESTART, "the server is shutting down; reconnect")
                return
            kind = message["type"]
            if kind == "websocket.disconnect":
                return
            if kind != "websocket.receive":
                continue
            text = message.get("text")
            if text is None:
                await _close(send, CLOSE_UNSUPPORTED_DATA, "send text frames: JSON arrays")
                return
            data = text.encode()
            if len(data) > limit:
                await _close(
                    send,
                    CLOSE_MESSAGE_TOO_BIG,
                    f"a frame holds at most {limit} bytes (--max-body-bytes)",
                )
                return
            try:
                answer = await ingest.report_batch(data, ndjson=False)
            except Exception as exc:
                status, body, _ = answer_for(exc)
                if body["code"] == SHUTTING_DOWN.code:
                    await _close(send, CLOSE_SERVICE_RESTART, body["detail"])
                    return
                answer = {**body, "status": status}
            await send({"type": "websocket.send", "text": encode(answer).decode()})


async def _close(send: Callable[[Message], Awaitable[None]], code: int, reason: str) -> None:
    await send({"type": "websocket.close", "code": code, "reason": reason[:120]})


async def _deny(
    scope: dict[str, Any],
    send: Callable[[Message], Awaitable[None]],
    status: int,
    answer: dict[str, Any],
    extra: dict[str, str],
) -> None:
    """Refuse the handshake with the HTTP API's JSON error answer (or a bare 403)."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = encode(answer)
    headers = [_JSON, (b"content-length", str(len(body)).encode())]
    headers.extend((k.lower().encode(), v.encode()) for k, v in extra.items())
    await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})
