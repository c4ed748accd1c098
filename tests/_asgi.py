"""Drive the app's ASGI interface directly, in virtual time, one request at a time.

Quart's test client cannot stand for a client that leaves mid-stream (its exit waits for a
response end that a cancelled stream never sends), so stream tests use this: a request is the
app called with memory channels; the test reads body chunks, stops reading (a frozen client:
the app's writes block once ``buffer`` chunks are unread), or disconnects. Events are parsed
with httpx-sse, a standard SSE client library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import trio
from httpx_sse import EventSource, ServerSentEvent


def parse_sse(body: bytes) -> list[ServerSentEvent]:
    """Parse an SSE body with httpx-sse (events only; comments and lone ``retry:`` skipped)."""
    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    return [event for event in EventSource(response).iter_sse() if event.event != "message"]


class ASGIRequest:
    """One request in flight: its status, headers, and the body chunks as they come.

    Attributes:
        status: the response status, once it started.
        headers: the response headers (lower-case names), once it started.
        chunks: body chunks received so far.
        ended: set when the app returned.
        complete: True when the app ended the response (``more_body`` false).
    """

    def __init__(self, buffer: int) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.chunks: list[bytes] = []
        self.ended = trio.Event()
        self.complete = False
        self.started = trio.Event()
        self._body_send, self._body_receive = trio.open_memory_channel[bytes](buffer)
        self._disconnected = trio.Event()
        self._request_sent = False

    async def receive_chunk(self) -> bytes | None:
        """The next body chunk, or None once the response ended (or the app returned)."""
        try:
            chunk = await self._body_receive.receive()
        except trio.EndOfChannel:
            return None
        self.chunks.append(chunk)
        return chunk

    async def read_all(self) -> bytes:
        """Read until the response ends; return the whole body."""
        while await self.receive_chunk() is not None:
            pass
        return b"".join(self.chunks)

    async def events(self) -> list[ServerSentEvent]:
        """Read until the response ends; return its events (httpx-sse)."""
        return parse_sse(await self.read_all())

    async def next_event(self) -> ServerSentEvent | None:
        """Read chunks until one holds an event (not a comment or a lone retry:)."""
        while True:
            chunk = await self.receive_chunk()
            if chunk is None:
                return None
            events = parse_sse(chunk)
            if events:
                return events[0]

    def disconnect(self) -> None:
        """The client goes away (the server gets ``http.disconnect``)."""
        self._disconnected.set()

    async def _receive(self) -> dict[str, Any]:
        if not self._request_sent:
            self._request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self._disconnected.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            self.started.set()
        elif message["type"] == "http.response.body":
            if message.get("body"):
                await self._body_send.send(message["body"])
            if not message.get("more_body", False):
                self.complete = True
                await self._body_send.aclose()


@asynccontextmanager
async def open_request(
    app: Any,
    path: str,
    *,
    query: dict[str, str] | None = None,
    headers: Sequence[tuple[str, str]] = (),
    method: str = "GET",
    buffer: int = 1000,
) -> AsyncIterator[ASGIRequest]:
    """Call ``app`` with one request; leaving the block disconnects and waits for the app."""
    request = ASGIRequest(buffer)
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urlencode(query or {}).encode(),
        "root_path": "",
        "headers": [(b"host", b"test")] + [(k.lower().encode(), v.encode()) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
        "state": {},
    }

    async def run_app() -> None:
        try:
            await app(scope, request._receive, request._send)
        finally:
            request.ended.set()
            await request._body_send.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_app)
        try:
            yield request
        finally:
            request.disconnect()


class VirtualServer:
    """The app over open services, called through ASGI (no network), for virtual-time tests.

    Attributes:
        app: the Quart-Trio app (``create_app``).
        services: its services (store, sink, runner, streams, metrics, config).
    """

    def __init__(self, app: Any, services: Any) -> None:
        self.app = app
        self.services = services

    @property
    def store(self) -> Any:
        return self.services.store

    @property
    def sink(self) -> Any:
        return self.services.sink

    def request(self, path: str, **kwargs: Any) -> Any:
        """``async with server.request(path, headers=..., query=...) as request:``."""
        return open_request(self.app, path, **kwargs)

    def client(self) -> Any:
        """Quart's test client, for requests whose response ends."""
        return self.app.test_client()


@asynccontextmanager
async def open_virtual_server(store: Any = None, **changes: Any) -> AsyncIterator[VirtualServer]:
    """Open services (a ``MemoryStore`` unless ``store`` is given) and the app over them.

    ``changes`` override the test defaults of ``ServerConfig`` (flush every 0.5 s, heartbeat
    every 15 s, registration timeout 5 s, send timeout 10 s).
    """
    from progress_sync import MemoryStore
    from progress_sync.server import ServerConfig, create_app, open_services

    settings: dict[str, Any] = {
        "flush_interval": 0.5,
        "heartbeat_interval": 15.0,
        "registration_timeout": 5.0,
        "send_timeout": 10.0,
    }
    settings.update(changes)
    config = ServerConfig(**settings)
    async with open_services(config, store if store is not None else MemoryStore()) as services:
        yield VirtualServer(create_app(services), services)
