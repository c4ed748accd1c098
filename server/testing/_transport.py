"""In-process transport: the app called through its ASGI interface, no network, virtual time.

``open_asgi_request`` drives one request (read chunks, stop reading to freeze the client, or
disconnect); ``open_in_process_server`` opens services and the app over them for tests that
need the app itself. Quart's test client cannot stand for a client that leaves mid-stream (its
exit waits for a response end that a cancelled stream never sends), so streams use this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import httpx
import trio
import trio.testing
from httpx_sse import EventSource, ServerSentEvent
from progress_sync import (
    MemoryStore,
)
from progress_sync._nursery import open_owned_nursery
from quart.testing import make_test_headers_path_and_query_string, make_test_scope
from quart.typing import TestClientProtocol

IN_PROCESS_BUFFER = 10
"""Chunks (events) the in-process transport holds unread before the app's send waits: its
stand-in for a socket's buffers, and the same depth as Quart's own test connection."""


class _ChannelBody(httpx.AsyncByteStream):
    """The response body the app sends in process, chunk by chunk, as an httpx stream.

    Closing it (``response.aclose()``) tells the app the client went away.
    """

    def __init__(self, chunks: trio.MemoryReceiveChannel[bytes], disconnected: trio.Event) -> None:
        self._chunks = chunks
        self._disconnected = disconnected

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._chunks:
            yield chunk

    async def aclose(self) -> None:
        self._disconnected.set()
        await trio.lowlevel.checkpoint()


@asynccontextmanager
async def _open_in_process(
    client: TestClientProtocol, path: str, headers: dict[str, str]
) -> AsyncIterator[httpx.Response]:
    # Drives the ASGI app directly rather than through the test client's request(): Quart's
    # test connection waits forever on exit when the client leaves a stream before its end.
    app = client.app
    request_headers, bare_path, query_string = make_test_headers_path_and_query_string(
        app, path, headers, None, None, None
    )
    scope = make_test_scope(
        "http", bare_path, "GET", request_headers, query_string, "http", "", "1.1", None
    )
    start: dict[str, Any] = {}
    started = trio.Event()
    disconnected = trio.Event()
    send_chunk, receive_chunk = trio.open_memory_channel[bytes](IN_PROCESS_BUFFER)
    request_sent = False

    async def receive() -> dict[str, Any]:
        nonlocal request_sent
        if not request_sent:
            request_sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
            started.set()
        elif message["type"] == "http.response.body":
            if message.get("body"):
                await send_chunk.send(message["body"])
            if not message.get("more_body", False):
                send_chunk.close()

    async def run_app() -> None:
        try:
            # plain-dict ASGI messages; Hypercorn's types (which Quart uses) are TypedDicts
            await app(scope, receive, send)  # type: ignore[arg-type]
        finally:
            send_chunk.close()
            started.set()

    async with _task_nursery() as nursery:
        nursery.start_soon(run_app)
        await started.wait()
        if start:
            try:
                yield httpx.Response(
                    start["status"],
                    headers=start.get("headers", []),
                    stream=_ChannelBody(receive_chunk, disconnected),
                    request=httpx.Request("GET", "http://in-process" + path, headers=headers),
                )
            finally:
                # The client goes away: the app cancels the response, as when a socket closes.
                disconnected.set()
    if not start:
        raise RuntimeError(f"the app returned without starting a response to GET {path}")


@asynccontextmanager
async def _task_nursery() -> AsyncIterator[trio.Nursery]:
    """A nursery for a helper's background tasks that lets the body's exception out as itself.

    Without this, an error raised inside ``async with helper(...):`` would come out wrapped
    in an ExceptionGroup, and ``pytest.raises`` around the block would not see it. Errors of
    the background tasks still come out in a group.
    """
    async with open_owned_nursery() as nursery:
        yield nursery


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
async def open_asgi_request(
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


class InProcessServer:
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
        return open_asgi_request(self.app, path, **kwargs)

    def client(self) -> Any:
        """Quart's test client, for requests whose response ends."""
        return self.app.test_client()


@asynccontextmanager
async def open_in_process_server(
    store: Any = None, **changes: Any
) -> AsyncIterator[InProcessServer]:
    """Open services (a ``MemoryStore`` unless ``store`` is given) and the app over them.

    ``changes`` override the test defaults of ``ServerConfig`` (flush every 0.5 s, heartbeat
    every 15 s, registration timeout 5 s, send timeout 10 s).
    """
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
        yield InProcessServer(create_app(services), services)
