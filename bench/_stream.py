"""The stream level: many SSE connections, our stream path against a raw-ASGI broadcaster.

Both servers run on the same Hypercorn in their own process and send every connection one event
per ``flush_interval``: ours through the whole stream path (job runner → update buffer → store →
subscription → SSE encoding → Quart → Hypercorn), the broadcaster straight from an ASGI
``send``. The figure compared is events delivered per CPU-second of the server process.

Every connection is opened before the first event is sent (our streams wait for their jobs to
be registered; the broadcaster waits for ``POST /start``), so opening 4,000 connections does
not compete with the traffic. Each connection is a trio socket speaking HTTP/1.1 through h11
(sans-IO); it only counts events (the blank line that ends each one, per the SSE spec) and
looks for the terminal event name, so that the client, not the servers, stays cheap: a
client slower than the server would let events pile up in the kernel's socket buffers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable

import h11
import httpx
import trio

from ._processes import ServerProcess, module_argv, open_server_process, progress_sync_argv
from ._results import StreamResult
from ._workload import StreamWorkload, System

OPENING_AT_ONCE = 64
"""Connections being opened at once (Hypercorn listens with a backlog of 100)."""

CONNECT_TIMEOUT = 180.0
"""Seconds every connection gets to open, and then to receive its first event."""

WARMUP = 1.0
"""Seconds between every connection receiving its first event and the measured window."""

END_TIMEOUT = 30.0
"""Seconds every connection gets to receive its final event at the end."""

logger = logging.getLogger(__name__)

_TERMINAL_MARKERS = (b"event: job-completed", b"event: job-cancelled", b"event: job-failed")
_TAIL = 32  # bytes kept from the previous chunk, so a marker split across chunks is found


class _Counts:
    def __init__(self, connections: int) -> None:
        self.connections = connections
        self.opened = 0
        self.flowing = 0
        self.events = 0
        self.ended = 0
        self.errors: list[str] = []
        self.all_opened = trio.Event()
        self.all_flowing = trio.Event()
        self.all_ended = trio.Event()

    def on_opened(self) -> None:
        self.opened += 1
        if self.opened == self.connections:
            self.all_opened.set()

    def on_flowing(self) -> None:
        self.flowing += 1
        if self.flowing == self.connections:
            self.all_flowing.set()

    def on_ended(self) -> None:
        self.ended += 1
        if self.ended == self.connections:
            self.all_ended.set()


async def _open(url: httpx.URL, path: str) -> tuple[trio.SocketStream, h11.Connection]:
    """Open one stream with h11 (sans-IO HTTP/1.1) on a trio socket; return once the
    response's status and headers are in."""
    assert url.host
    assert url.port
    sock = await trio.open_tcp_stream(url.host, url.port)
    try:
        connection = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET",
            target=path,
            headers=[("Host", f"{url.host}:{url.port}"), ("Accept", "text/event-stream")],
        )
        await sock.send_all(connection.send(request) + connection.send(h11.EndOfMessage()))
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await sock.receive_some(65536))
            elif isinstance(event, h11.Response):
                if event.status_code != 200:
                    raise RuntimeError(f"GET {path} answered {event.status_code}")
                return sock, connection
            else:
                raise RuntimeError(f"GET {path}: no response, {event!r}")
    except BaseException:
        await trio.aclose_forcefully(sock)
        raise


async def _connection(
    url: httpx.URL, path: str, counts: _Counts, opening: trio.CapacityLimiter
) -> None:
    async with opening:
        sock, connection = await _open(url, path)
    async with sock:
        counts.on_opened()
        seen = -1  # the first blank line ends ``retry:``, which is no event
        tail = b""
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await sock.receive_some(65536)
                connection.receive_data(data)
                if not data:
                    continue
            elif isinstance(event, h11.Data):
                chunk = bytes(event.data)
                data = tail + chunk
                ends = data.count(b"\n\n") - tail.count(b"\n\n")
                if ends:
                    if seen <= 0 < seen + ends:
                        counts.on_flowing()
                    seen += ends
                    counts.events += ends
                    if any(marker in data for marker in _TERMINAL_MARKERS):
                        counts.on_ended()
                        return
                tail = data[-_TAIL:]
            else:  # EndOfMessage or ConnectionClosed: the stream ended without its final event
                counts.errors.append(f"{path} ended without a terminal event: {event!r}")
                return


async def _measure(
    server: ServerProcess,
    system: System,
    workload: StreamWorkload,
    paths: list[str],
    start: Callable[[httpx.AsyncClient], Awaitable[None]],
    end: Callable[[httpx.AsyncClient], Awaitable[None]],
    progress: Callable[[float], None] | None,
    connect_timeout: float,
) -> StreamResult:
    counts = _Counts(len(paths))
    opening = trio.CapacityLimiter(OPENING_AT_ONCE)
    url = httpx.URL(server.url)
    control = httpx.AsyncClient(base_url=server.url, timeout=30.0)

    async def wait(event: trio.Event, count: Callable[[], int], what: str, share: float) -> None:
        with trio.move_on_after(connect_timeout):
            while not event.is_set():
                if progress is not None:
                    progress(share * count() / counts.connections)
                with trio.move_on_after(0.25):
                    await event.wait()
        if not event.is_set():
            raise RuntimeError(
                f"only {count()} of {counts.connections} connections {what} in "
                f"{connect_timeout:g} s; {'; '.join(counts.errors[:3])}"
            )

    try:
        async with trio.open_nursery() as nursery:
            started = time.perf_counter()
            for path in paths:
                nursery.start_soon(_connection, url, path, counts, opening)
            await wait(counts.all_opened, lambda: counts.opened, "opened", 0.4)
            connect_s = time.perf_counter() - started
            logger.info("%s: %d connections open in %.1f s", system, counts.opened, connect_s)
            await start(control)
            await wait(counts.all_flowing, lambda: counts.flowing, "got their first event", 0.5)
            logger.info("%s: every connection got its first event", system)
            await trio.sleep(min(WARMUP, workload.duration))
            events_before = counts.events
            cpu_before = server.cpu_seconds()
            window_start = time.perf_counter()
            deadline = trio.current_time() + workload.duration
            while (now := trio.current_time()) < deadline:
                if progress is not None:
                    progress(0.5 + 0.5 * (1 - (deadline - now) / workload.duration))
                await trio.sleep(min(0.25, deadline - now))
            cpu = server.cpu_seconds() - cpu_before
            window = time.perf_counter() - window_start
            events = counts.events - events_before
            logger.info("%s: window done, %d events, %.2f CPU s", system, events, cpu)
            await end(control)
            with trio.move_on_after(END_TIMEOUT):
                await counts.all_ended.wait()
            logger.info("%s: %d of %d streams ended", system, counts.ended, counts.connections)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await control.aclose()
    return StreamResult(
        system=system,
        workload=workload,
        connected=counts.opened,
        window_s=window,
        events=events,
        events_per_s=events / window,
        cpu_s=cpu,
        events_per_cpu_s=events / cpu if cpu > 0 else math.nan,
        peak_rss_mb=server.rss.peak_mb,
        connect_s=connect_s,
        terminal_lost=counts.connections - counts.ended,
    )


async def run_stream(
    system: System,
    workload: StreamWorkload,
    *,
    progress: Callable[[float], None] | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> StreamResult:
    """Open ``workload.connections`` streams to ``system`` and measure events per CPU-second.

    ``batched``: our server (``progress-sync serve``); the connections follow
    ``workload.jobs`` demo jobs, registered once every connection is open, each reporting 4
    times per flush interval; at the end every job is cancelled, and its terminal event ends
    its streams. ``raw-asgi``: ``progress_sync.bench._raw_asgi``, started with ``POST /start``
    and ended with ``POST /stop``.

    Args:
        system: ``batched`` or ``raw-asgi``.
        workload: the connections, jobs and timings.
        progress: called with the fraction done, 0 to 1.
        connect_timeout: seconds every connection gets to open, then to get its first event.

    Raises:
        ValueError: ``system`` is neither ``batched`` nor ``raw-asgi``.
        RuntimeError: not every connection opened, or got its first event, in time; or a
            stream was refused (its status is in the message).
        ServerStartError: the server process did not start.
    """
    if system is System.BATCHED:
        argv = progress_sync_argv(
            system,
            flush_interval=workload.flush_interval,
            extra=[
                "--max-concurrent-jobs",
                str(workload.jobs),
                "--registration-timeout",
                str(3 * connect_timeout + 60),
            ],
        )
        job_ids = [f"stream-{j}" for j in range(workload.jobs)]
        paths = [
            f"/api/jobs/{job_ids[i % workload.jobs]}/progress/stream"
            for i in range(workload.connections)
        ]
        params = {"durationS": 3600, "updatesPerS": 4 / workload.flush_interval}

        async def register_all(control: httpx.AsyncClient) -> None:
            for job_id in job_ids:
                body = {"kind": "demo", "jobId": job_id, "params": params}
                (await control.post("/api/jobs", json=body)).raise_for_status()

        async def cancel_all(control: httpx.AsyncClient) -> None:
            for job_id in job_ids:
                (await control.post(f"/api/jobs/{job_id}/cancel")).raise_for_status()

        async with open_server_process(argv) as server:
            return await _measure(
                server,
                system,
                workload,
                paths,
                register_all,
                cancel_all,
                progress,
                connect_timeout,
            )
    if system is System.RAW_ASGI:
        argv = module_argv(
            "progress_sync.bench._raw_asgi", "--interval", repr(workload.flush_interval)
        )

        async def start(control: httpx.AsyncClient) -> None:
            (await control.post("/start")).raise_for_status()

        async def stop(control: httpx.AsyncClient) -> None:
            (await control.post("/stop")).raise_for_status()

        async with open_server_process(argv) as server:
            paths = ["/stream"] * workload.connections
            return await _measure(
                server, system, workload, paths, start, stop, progress, connect_timeout
            )
    raise ValueError(f"the stream level compares batched and raw-asgi, not {system}")
