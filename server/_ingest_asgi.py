"""The ingest routes as a thin ASGI layer in front of Quart: the request path at the floor.

``POST /api/progress`` and ``POST /api/jobs/{jobId}/progress`` are answered here, without
Quart's request cycle (request and response objects, routing, before/after hooks, context
locals), which cost more than the ingest itself. What they do is the same ``Ingest`` the
Quart routes call (``_ingest``), with the same authentication (``Auth.authenticate``), the
same body limit (``max_body_bytes``, 413), and the same JSON errors (``_errors.describe_error``):
the Quart routes stay for the OpenAPI document and answer what this layer passes on, which is
every other request, and an ingest request carrying an ``Origin`` header when CORS is on (so
quart-cors adds its headers).

``GET /api/progress/ws`` (a WebSocket, see ``_ingest_ws``) is answered here too.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from progress_sync._contract import REQUEST_TOO_LARGE

from ._auth import Auth
from ._config import ServerConfig
from ._errors import ApiError, answer_for
from ._ingest import NDJSON_TYPES, Ingest
from ._ingest_body import encode
from ._ingest_ws import serve_producer_socket
from .sse._admission import StreamHub

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

BATCH_PATH = "/api/progress"
JOB_PATH_PREFIX = "/api/jobs/"
JOB_PATH_SUFFIX = "/progress"
SOCKET_PATH = "/api/progress/ws"

_JSON = (b"content-type", b"application/json")
_ACCEPTED_ONE = encode({"accepted": 1})


class _Disconnected(Exception):
    """The client went away before its body arrived."""


class IngestFastPath:
    """Wraps the Quart app's ASGI callable (``app.asgi_app = IngestFastPath(app.asgi_app, ...)``).

    Args:
        app: the ASGI app to pass every other request to.
        ingest: what the ingest routes do.
        auth: the server's authentication.
        config: the server's settings (``max_body_bytes``, ``cors_origins``).
        hub: the server's open streams (WebSocket connections end when it shuts down).
    """

    def __init__(
        self, app: ASGIApp, *, ingest: Ingest, auth: Auth, config: ServerConfig, hub: StreamHub
    ) -> None:
        self.app = app
        self.ingest = ingest
        self.auth = auth
        self.max_body_bytes = config.max_body_bytes
        self.cors = bool(config.cors_origins)
        self.config = config
        self.hub = hub

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["method"] == "POST":
            path: str = scope["path"]
            if path == BATCH_PATH:
                job_id = None
            elif (
                path.startswith(JOB_PATH_PREFIX)
                and path.endswith(JOB_PATH_SUFFIX)
                and path.count("/") == 4
                and len(path) > len(JOB_PATH_PREFIX) + len(JOB_PATH_SUFFIX)
            ):
                job_id = path[len(JOB_PATH_PREFIX) : -len(JOB_PATH_SUFFIX)]
            else:
                await self.app(scope, receive, send)
                return
            headers = _headers(scope)
            if self.cors and b"origin" in headers:
                await self.app(scope, receive, send)
                return
            await self._ingest(job_id, headers, receive, send)
            return
        if kind == "websocket" and scope["path"] == SOCKET_PATH:
            await serve_producer_socket(
                scope,
                receive,
                send,
                ingest=self.ingest,
                auth=self.auth,
                config=self.config,
                hub=self.hub,
            )
            return
        await self.app(scope, receive, send)

    async def _ingest(
        self, job_id: str | None, headers: dict[bytes, bytes], receive: Receive, send: Send
    ) -> None:
        try:
            authorization = headers.get(b"authorization")
            self.auth.authenticate(
                "POST",
                job_id,
                None if authorization is None else authorization.decode("latin-1"),
                None,
            )
            data = await _read_body(receive, headers, self.max_body_bytes)
            if job_id is None:
                mimetype = headers.get(b"content-type", b"").partition(b";")[0].strip().lower()
                answer = await self.ingest.report_batch(
                    data, ndjson=mimetype.decode("latin-1") in NDJSON_TYPES
                )
                await respond(send, 200, encode(answer))
            else:
                await self.ingest.report_one(job_id, data)
                await respond(send, 202, _ACCEPTED_ONE)
        except _Disconnected:
            return
        except Exception as exc:
            status, body, extra = answer_for(exc)
            await respond(
                send,
                status,
                encode(body),
                [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()],
            )


def too_large(max_body_bytes: int) -> ApiError:
    """The 413 for a body over ``max_body_bytes`` (the Quart routes' answer, the same words)."""
    return ApiError(
        REQUEST_TOO_LARGE,
        f"the body is larger than {max_body_bytes} bytes (--max-body-bytes); send smaller batches",
        "body",
    )


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Header names arrive lower-cased (ASGI); a repeated header keeps its last value.
    return dict(scope["headers"])


async def _read_body(receive: Receive, headers: dict[bytes, bytes], limit: int) -> bytes:
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


async def respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    """Send a complete JSON answer."""
    response_headers = [_JSON, (b"content-length", str(len(body)).encode())]
    if headers:
        response_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
