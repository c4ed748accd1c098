"""A minimal raw-ASGI SSE broadcaster on Hypercorn: the reference for what the server stack allows.

No framework, no store, no per-connection work beyond sending: every ``interval`` seconds one
event (a job snapshot of the same shape and size as ours) is encoded once and sent to every
open ``GET /stream`` connection. A connection still busy sending the previous event skips to
the latest (conflation, as our stream does). Events start with ``POST /start``
(until then a stream gets only its headers and ``retry:``, as ours does before its job is
registered); ``POST /stop`` sends every connection a final ``job-completed`` event and ends
the streams.

It is also the floor of the ingest level (``bench._ingest_level``): ``POST /api/progress``
reads the body and decodes the JSON (an array, or NDJSON with ``Content-Type:
application/x-ndjson``) with the standard library's ``json``, and answers
``{"accepted": n}``; ``POST /api/jobs/{jobId}/progress`` does the same with one object (202);
``GET /api/progress/ws`` (WebSocket) decodes each text frame and answers ``{"accepted": n}``.
No validation, no store: what any Python server on this stack has to do per report.

Run: ``python -m progress_sync.bench._raw_asgi [--host 127.0.0.1] [--port 0] [--interval 0.5]``;
it prints
Hypercorn's ``Running on http://HOST:PORT`` once it listens, and stops on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import hypercorn.config
import hypercorn.trio
import trio

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _event(seq: int, status: str) -> bytes:
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now))
    snapshot = {
        "jobId": "broadcast",
        "status": status,
        "percent": round(seq % 1000 / 10, 1),
        "stage": "render",
        "message": f"render {seq % 100}%",
        "seq": seq,
        "createdAt": stamp,
        "updatedAt": stamp,
        "reportedAt": now,
        "kind": "demo",
        "error": None,
        "result": None,
    }
    name = "job-progress" if status == "running" else "job-completed"
    data = json.dumps(snapshot, separators=(",", ":"))
    return f"id: {seq}\nevent: {name}\ndata: {data}\n\n".encode()


class Broadcaster:
    """The ASGI app and its ticker.

    Args:
        interval: seconds between two events.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.seq = 1
        self.event = _event(1, "running")
        self.stopped = False
        self.started = trio.Event()
        self._lot = trio.lowlevel.ParkingLot()

    async def tick(self) -> None:
        """After ``POST /start``, make a new event every ``interval`` seconds and wake every
        connection."""
        await self.started.wait()
        self._lot.unpark_all()
        next_tick = trio.current_time()
        while not self.stopped:
            next_tick += self.interval
            await trio.sleep_until(next_tick)
            if self.stopped:  # stop() put the final event in place: keep it
                return
            self.seq += 1
            self.event = _event(self.seq, "running")
            self._lot.unpark_all()

    def stop(self) -> None:
        """Replace the event by the final one and wake every connection."""
        if not self.stopped:
            self.stopped = True
            self.seq += 1
            self.event = _event(self.seq, "completed")
            self._lot.unpark_all()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await _ingest_socket(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if scope["method"] == "POST" and (
            path == "/api/progress"
            or (path.startswith("/api/jobs/") and path.endswith("/progress"))
        ):
            await _ingest(scope, receive, send)
        elif scope["path"] == "/stream" and scope["method"] == "GET":
            await self._stream(send)
        elif scope["path"] == "/start" and scope["method"] == "POST":
            self.started.set()
            await _respond(send, 200, b'{"started":true}')
        elif scope["path"] == "/stop" and scope["method"] == "POST":
            self.stop()
            await _respond(send, 200, b'{"stopped":true}')
        else:
            await _respond(send, 404, b'{"error":"not found"}')

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
        await send({"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True})
        sent = b""
        while not self.stopped:
            await self._lot.park()
            sent = self.event
            await send({"type": "http.response.body", "body": sent, "more_body": True})
        if sent is not self.event:  # stopped while sending: the final event is still due
            await send({"type": "http.response.body", "body": self.event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _ingest(scope: Scope, receive: Receive, send: Send) -> None:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    data = b"".join(chunks)
    if scope["path"] == "/api/progress":
        ndjson = any(
            name == b"content-type" and value.startswith(b"application/x-ndjson")
            for name, value in scope["headers"]
        )
        items = (
            [json.loads(line) for line in data.splitlines() if line] if ndjson else json.loads(data)
        )
        await _respond(send, 200, b'{"accepted":%d}' % len(items))
    else:
        json.loads(data)
        await _respond(send, 202, b'{"accepted":1}')


async def _ingest_socket(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            items = json.loads(message["text"])
            await send({"type": "websocket.send", "text": f'{{"accepted":{len(items)}}}'})
        else:
            return


async def _respond(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _until_signal() -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            return


async def serve(host: str, port: int, interval: float) -> None:
    """Serve the broadcaster on Hypercorn's trio worker until SIGINT/SIGTERM."""
    config = hypercorn.config.Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    broadcaster = Broadcaster(interval)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(broadcaster.tick)
        await hypercorn.trio.serve(
            broadcaster,  # type: ignore[arg-type]  # plain-dict scopes; Hypercorn types them as TypedDicts
            config,
            shutdown_trigger=_until_signal,
        )
        broadcaster.stop()
        nursery.cancel_scope.cancel()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args()
    trio.run(partial(serve, args.host, args.port, args.interval))


if __name__ == "__main__":
    main()
