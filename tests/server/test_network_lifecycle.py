"""Connection lifecycle over a real network: a Hypercorn server on a loopback port.

Rules: these tests use the real clock (the network does not run in virtual time) and a real
server on 127.0.0.1 port 0; waits are bounded polls, never sleeps whose length decides the
outcome. Streams are read with httpx + httpx-sse, or with raw sockets where a test needs a
client that misbehaves (drops, resets, stops reading).
"""

from __future__ import annotations

import gc
import itertools
import json
import socket
import struct
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from functools import partial

import h2.config
import h2.connection
import h2.events
import httpx
import pytest
import trio
from httpx_sse import aconnect_sse
from hypercorn.protocol.h2 import BUFFER_HIGH_WATER, H2Protocol
from progress_sync import MemoryStore
from progress_sync.server import ServerConfig, open_services, serve_services
from progress_sync.server.testing import parse_sse


class NetworkServer:
    def __init__(self, url: str, services, stop: trio.Event) -> None:
        self.url = url
        self.services = services
        self.stop = stop
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.address = (host, int(port))

    @property
    def store(self):
        return self.services.store

    def client(self, **kwargs) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10.0, **kwargs)


@asynccontextmanager
async def open_network_server(**changes) -> AsyncIterator[NetworkServer]:
    settings = {
        "host": "127.0.0.1",
        "port": 0,
        "flush_interval": 0.05,
        "registration_timeout": 30.0,
        "graceful_timeout": 2.0,
        "send_timeout": 1.0,
    }
    settings.update(changes)
    stop = trio.Event()
    async with (
        open_services(ServerConfig(**settings), MemoryStore()) as services,
        trio.open_nursery() as nursery,
    ):
        urls = await nursery.start(partial(serve_services, services, shutdown_trigger=stop.wait))
        try:
            yield NetworkServer(urls[0], services, stop)
        finally:
            stop.set()


async def eventually(predicate: Callable[[], bool], within: float = 1.0) -> float:
    """Poll ``predicate`` until true; fail if it is not true ``within`` seconds. Returns when."""
    start = trio.current_time()
    with trio.move_on_after(within):
        while not predicate():  # noqa: ASYNC110 - polls another component's state
            await trio.sleep(0.005)
        return trio.current_time() - start
    pytest.fail(f"not true within {within} s: {predicate.__doc__ or predicate}")


@asynccontextmanager
async def open_background() -> AsyncIterator[trio.Nursery]:
    """A nursery for a test's helpers, cancelled when the block ends (before the server)."""
    async with trio.open_nursery() as nursery:
        yield nursery
        nursery.cancel_scope.cancel()


def count_tasks() -> int:
    def walk(task) -> int:
        return 1 + sum(walk(child) for n in task.child_nurseries for child in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())


def request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: test\r\nAccept: text/event-stream\r\n\r\n".encode()


async def open_raw(server: NetworkServer, path: str, *, rcvbuf: int | None = None):
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(server.address)
    stream = trio.SocketStream(sock)
    await stream.send_all(request_bytes(path))
    return stream


async def read_until(stream: trio.SocketStream, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


async def reset(stream: trio.SocketStream) -> None:
    """Close with a TCP reset (SO_LINGER 0): the client vanishes without a goodbye."""
    stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("waiting_for", ["an update", "registration"])
async def test_a_client_leaving_frees_its_subscription_within_a_second(how, waiting_for):
    async with open_network_server() as server:
        await server.store.register("job-1")
        job_id = "job-1" if waiting_for == "an update" else "not-yet"
        baseline_tasks = count_tasks()
        stream = await open_raw(server, f"/api/jobs/{job_id}/progress/stream")
        await read_until(stream, b"id: 1" if job_id == "job-1" else b"retry:")
        streams = server.services.streams
        await eventually(lambda: streams.running == 1)
        if job_id == "job-1":
            assert server.store.statistics().subscribers == 1
        await (reset(stream) if how == "reset" else stream.aclose())
        took = await eventually(
            lambda: (
                streams.admitted == 0
                and streams.running == 0
                and server.store.statistics().subscribers == 0
                and not server.store._registration_waiters
            ),
            within=1.0,
        )
        await eventually(lambda: count_tasks() == baseline_tasks)
        assert took < 1.0
        # A viewer leaving never cancels the job.
        assert not (await server.store.get("job-1")).is_terminal


def allocated_blocks() -> int:
    """Live Python allocations, after a collection and after trio dropped stale deadlines.

    Trio drops the heap entries of exited cancel scopes lazily (up to 1000 + twice the
    active ones are kept), so each connection's timeouts would show as a bounded band of
    "growth" until pruned; pruning first makes what is left real retention.
    """
    from trio._core._run import GLOBAL_RUN_CONTEXT

    GLOBAL_RUN_CONTEXT.runner.deadlines._prune()
    gc.collect()
    return sys.getallocatedblocks()


@pytest.mark.slow
async def test_a_thousand_connect_and_drop_cycles_leave_nothing_behind():
    async with open_network_server() as server:
        await server.store.register("job-1")
        streams = server.services.streams

        async def cycle(n: int) -> None:
            stream = await open_raw(server, "/api/jobs/job-1/progress/stream")
            await read_until(stream, b"id: 1")
            await (reset(stream) if n % 2 else stream.aclose())

        def all_gone() -> bool:
            return (
                streams.admitted == 0
                and streams.running == 0
                and server.store.statistics().subscribers == 0
            )

        for n in range(200):  # warm-up: caches, first-use allocations
            await cycle(n)
        await eventually(all_gone)
        baseline_tasks = count_tasks()
        before = allocated_blocks()
        for n in range(1000):
            await cycle(n)
        await eventually(all_gone)
        await eventually(lambda: count_tasks() == baseline_tasks)
        growth = allocated_blocks() - before
        # Flat: under one allocation per cycle (one leaked stream would be hundreds).
        assert growth < 1000, f"{growth} more live allocations after 1000 cycles"


async def report_fast(sink, job_ids, message_size=2000) -> None:
    percent = 0.0
    while True:
        percent = (percent + 0.01) % 100
        for job_id in job_ids:
            sink.report_nowait(job_id, percent, "work", "m" * message_size)
        await trio.sleep(0.005)


@pytest.mark.slow
async def test_a_frozen_http1_client_delays_no_one_and_is_dropped():
    job_ids = [f"job-{n}" for n in range(40)]
    async with (
        open_network_server(send_timeout=1.0, flush_interval=0.02) as server,
        open_background() as nursery,
    ):
        streams = server.services.streams
        for job_id in job_ids:
            await server.store.register(job_id)
        nursery.start_soon(report_fast, server.services.sink, job_ids)
        # A client with a tiny receive buffer that reads the headers, then nothing more.
        path = "/api/progress/stream?jobIds=" + ",".join(job_ids)
        frozen = await open_raw(server, path, rcvbuf=4096)
        await read_until(frozen, b"id: ")
        frozen_at = trio.current_time()
        # Another client follows one of the jobs meanwhile.
        arrivals: list[float] = []
        nursery.start_soon(follow, server, "job-0", arrivals)
        await eventually(lambda: streams.admitted == 2 and len(arrivals) > 2)
        flushes_before = server.services.sink.statistics().flushes
        await eventually(
            lambda: streams.admitted == 1 and server.store.statistics().subscribers == 1,
            within=15.0,
        )
        dropped_after = trio.current_time() - frozen_at
        await eventually(lambda: len(arrivals) > 10)
        assert dropped_after > 1.0  # not before the send timeout
        # Counted once, whichever saw it first: the app's send timeout or the kernel's abort.
        dropped = server.services.metrics.clients_dropped
        assert (
            sum(
                dropped.labels(reason=reason)._value.get()
                for reason in ("send_timeout", "tcp_user_timeout")
            )
            == 1
        )
        # The reader never waited on the frozen client: an event every flush or so.
        gaps = [b - a for a, b in itertools.pairwise(arrivals)]
        assert max(gaps) < 0.5, gaps
        assert server.services.sink.statistics().flushes > flushes_before
        # The frozen client finds its connection reset once it reads what it had.
        with trio.fail_after(5), pytest.raises(trio.BrokenResourceError):  # noqa: PT012
            while await frozen.receive_some(65536):
                pass
        await frozen.aclose()


async def follow(server, job_id: str, arrivals: list[float]) -> None:
    async with (
        server.client() as client,
        aconnect_sse(client, "GET", f"/api/jobs/{job_id}/progress/stream") as source,
        aclosing(source.aiter_sse()) as events,
    ):
        async for event in events:
            if event.event == "job-progress":
                arrivals.append(trio.current_time())


@pytest.mark.slow
async def test_a_frozen_http2_client_is_dropped_after_the_send_timeout():
    async with (
        open_network_server(send_timeout=1.0, flush_interval=0.02) as server,
        open_background() as nursery,
    ):
        await server.store.register("job-1")
        nursery.start_soon(report_fast, server.services.sink, ["job-1"])
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.connect(server.address)
        stream = trio.SocketStream(sock)
        async with stream:
            h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            h2c.initiate_connection()
            h2c.send_headers(
                1,
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":authority", "test"),
                    (":path", "/api/jobs/job-1/progress/stream"),
                ],
                end_stream=True,
            )
            await stream.send_all(h2c.data_to_send())
            status = None
            while status is None:
                for event in h2c.receive_data(await stream.receive_some(65536)):
                    if isinstance(event, h2.events.ResponseReceived):
                        status = dict(event.headers)[b":status"]
                await stream.send_all(h2c.data_to_send())
            assert status == b"200"
            # Frozen: the client reads nothing more and opens no flow-control window, so the
            # server's writes should wait on HTTP/2 flow control (the socket never fills).
            frozen_at = trio.current_time()
            held: list[int] = []
            nursery.start_soon(sample_h2_buffers, held)
            await eventually(
                lambda: (
                    server.services.metrics.clients_dropped.labels(
                        reason="send_timeout"
                    )._value.get()
                    == 1
                ),
                within=3.0,
            )
            assert trio.current_time() - frozen_at > 1.0
            await eventually(lambda: server.store.statistics().subscribers == 0)
            assert server.services.streams.admitted == 0
            # Meanwhile Hypercorn held at most its high-water mark and one write (an event of
            # ~2 KiB), never a growing backlog.
            assert held, "no sample taken"
            assert max(held) <= BUFFER_HIGH_WATER + 8192, max(held)


async def sample_h2_buffers(samples: list[int]) -> None:
    """Every 50 ms, the bytes Hypercorn's HTTP/2 connections hold for their clients."""
    while True:
        protocols = [o for o in gc.get_objects() if isinstance(o, H2Protocol)]
        samples.append(sum(len(b.buffer) for p in protocols for b in p.stream_buffers.values()))
        await trio.sleep(0.05)


@pytest.mark.slow
async def test_the_stream_is_the_same_over_http2():
    async with open_network_server() as server:
        await server.store.register("job-1")
        percents = [10.0, 50.0, 90.0]

        async def next_step() -> None:
            # The next report goes out once the stream has delivered the previous one, so no
            # two are conflated and no sleep decides the outcome.
            if percents:
                server.services.sink.report_nowait(
                    "job-1", percents.pop(0), "work", "line 1\nline 2"
                )
            else:
                await server.services.sink.finish("job-1", "completed", result={"ok": True})

        results = {}
        for version, kwargs in (("HTTP/2", {"http1": False, "http2": True}), ("HTTP/1.1", {})):
            headers = {"Last-Event-ID": "0"} if version == "HTTP/1.1" else {}
            async with (
                server.client(**kwargs) as client,
                aconnect_sse(
                    client, "GET", "/api/jobs/job-1/progress/stream", headers=headers
                ) as source,
            ):
                assert source.response.http_version == version
                assert source.response.headers["content-type"].startswith("text/event-stream")
                assert "content-encoding" not in source.response.headers
                events = []
                async for event in source.aiter_sse():
                    if event.event == "message":
                        continue
                    events.append(event)
                    if event.event == "job-progress":
                        await next_step()
            results[version] = events
        http2 = results["HTTP/2"]
        assert http2[0].retry is None
        assert [e.event for e in http2][-1] == "job-completed"
        assert [json.loads(e.data)["percent"] for e in http2[1:-1]] == [10.0, 50.0, 90.0]
        assert json.loads(http2[1].data)["message"] == "line 1\nline 2"
        # Over HTTP/1.1 a late client gets the terminal event alone, as over HTTP/2.
        assert [e.event for e in results["HTTP/1.1"]] == ["job-completed"]
        assert results["HTTP/1.1"][0].id == http2[-1].id


async def test_a_stream_is_never_compressed_even_when_the_client_asks():
    async with open_network_server() as server:
        await server.store.register("job-1")
        await server.services.sink.finish("job-1", "completed")
        stream = await open_raw(server, "/api/jobs/job-1/progress/stream")
        await stream.send_all(b"")
        raw = await read_until(stream, b"0\r\n\r\n")
        await stream.aclose()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"content-encoding" not in head.lower()
        assert b"event: job-completed" in body
        async with server.client() as client:
            response = await client.get(
                "/api/jobs/job-1/progress/stream", headers={"Accept-Encoding": "gzip, br, zstd"}
            )
        assert "content-encoding" not in response.headers
        assert [e.event for e in parse_sse(response.content)] == ["job-completed"]


async def test_shutdown_ends_http2_streams_with_goaway_at_once():
    async with open_network_server(graceful_timeout=10.0) as server:
        await server.store.register("job-1")
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        await sock.connect(server.address)
        async with trio.SocketStream(sock) as stream:
            h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            h2c.initiate_connection()
            h2c.send_headers(
                1,
                [
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":authority", "test"),
                    (":path", "/api/jobs/job-1/progress/stream"),
                ],
                end_stream=True,
            )
            await stream.send_all(h2c.data_to_send())
            body = b""
            goaway = None
            stopped_at = None
            with trio.fail_after(5):
                while data := await stream.receive_some(65536):
                    for event in h2c.receive_data(data):
                        if isinstance(event, h2.events.DataReceived):
                            body += event.data
                            h2c.acknowledge_received_data(event.flow_controlled_length, 1)
                        elif isinstance(event, h2.events.ConnectionTerminated):
                            goaway = event
                    if goaway is None:
                        await stream.send_all(h2c.data_to_send())
                    if stopped_at is None and b"event: job-progress" in body:
                        stopped_at = trio.current_time()
                        server.stop.set()
            closed_at = trio.current_time()
        assert stopped_at is not None
        # The stream's last event, then GOAWAY and the connection's end: far below the 10 s
        # drain timeout. (Its END_STREAM usually comes before the GOAWAY; Hypercorn 0.18's send
        # task can lose that race when the server is terminating, and the GOAWAY then ends it.)
        assert body.rstrip(b"\n").rsplit(b"\n\n", 1)[-1].count(b"event: reconnect") == 1
        assert goaway is not None
        assert goaway.last_stream_id == 1
        assert closed_at - stopped_at < 2.0
