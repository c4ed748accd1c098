"""Test kit, server half: the app in process or on a real server, and SSE streams parsed.

The helpers behind the server fixtures of the ``progress_sync`` pytest plugin
(``progress_sync.testing``, which imports this module only when a test uses one of them, so a
pytest run that does not pays nothing for Quart and Hypercorn). Its helpers (and those of
``progress_sync.testing``, re-exported here) are plain functions you import.

Streams (parsed by httpx-sse, on a real server through an ``httpx.AsyncClient`` or in
process through ``progress_client``):
    open_event_stream: ``async with open_event_stream(client, job_id) as stream:``; iterate
        it for ``StreamEvent``.
    collect_events: every event of a stream until the server ends it, bounded by a timeout.
    open_slow_sse_client: a subscriber that reads slowly, or is frozen until thawed, for
        testing backpressure and conflation.
Checks on the events: see ``progress_sync.testing`` (``assert_stream_well_formed`` and the rest).
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from httpx_sse import EventSource, ServerSentEvent
from progress_sync import (
    MEMORY_STORE_URL,
    TERMINAL_STATUSES,
    ExportStore,
    MemoryStore,
    WaitTimeoutError,
)
from progress_sync._contract import JOB_STREAM_PATH
from progress_sync._nursery import open_owned_nursery
from progress_sync.testing import (
    DEFAULT_TEST_FLUSH_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    ProgressRecord,
    assert_exactly_one_terminal,
    assert_percent_never_decreases,
    assert_seq_increasing,
    assert_stream_well_formed,
    assert_terminal_last,
    check_timeout,
    collect_snapshots,
    wait_for_snapshot,
)
from quart.testing import make_test_headers_path_and_query_string, make_test_scope
from quart.typing import TestClientProtocol

from ._config import ServerConfig
from ._serve import serve
from ._sse import EVENT_FOR_STATUS

__all__ = [
    "DEFAULT_TEST_FLUSH_INTERVAL",
    "DEFAULT_WAIT_TIMEOUT",
    "STREAM_PATH",
    "TERMINAL_EVENTS",
    "EventStream",
    "ProgressRecord",
    "ProgressServer",
    "SlowSSEClient",
    "StreamEvent",
    "WaitTimeoutError",
    "assert_exactly_one_terminal",
    "assert_percent_never_decreases",
    "assert_seq_increasing",
    "assert_stream_well_formed",
    "assert_terminal_last",
    "check_timeout",
    "collect_events",
    "collect_snapshots",
    "open_event_stream",
    "open_slow_sse_client",
    "require_real_clock",
    "start_progress_server",
    "wait_for_snapshot",
]

STREAM_PATH = JOB_STREAM_PATH.replace("{jobId}", "{job_id}")
"""The path of a job's SSE stream; ``open_event_stream`` fills in the job id."""

TERMINAL_EVENTS: frozenset[str] = frozenset(EVENT_FOR_STATUS[s] for s in TERMINAL_STATUSES)
"""The SSE ``event`` names of terminal states: job-completed, job-failed, job-cancelled."""

DRAIN_TIMEOUT = 5.0
"""Seconds a closed stream's parser may take to run to its end (see ``EventStream.aclose``)."""

SHUTDOWN_MARGIN = 5.0
"""Seconds ``ProgressServer.aclose`` waits beyond the server's graceful timeout."""


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One SSE event of a job's stream, as httpx-sse parsed it, with its JSON data decoded.

    Satisfies ``progress_sync.testing.ProgressRecord``, so the checks take lists of these.

    Attributes:
        event: the ``event`` field (``job-progress``, ``job-completed``, ``job-error``, ...).
        id: the event's last event ID (the snapshot's ``seq``), or None when there is none;
            as the SSE spec says, an event without an ``id`` field keeps the previous one.
        data: the ``data`` field as sent (lines joined by ``\\n``, per the SSE spec).
        retry: the ``retry`` field in milliseconds, when the event carried one.
        payload: ``data`` decoded as JSON (the snapshot's camelCase object), or None when
            ``data`` is not JSON.
    """

    event: str
    id: str | None
    data: str
    retry: int | None
    payload: Any

    @classmethod
    def from_sse(cls, sse: ServerSentEvent) -> StreamEvent:
        """Wrap an event parsed by httpx-sse, decoding its data as JSON when it is JSON."""
        try:
            payload = json.loads(sse.data)
        except ValueError:
            payload = None
        return cls(
            event=sse.event, id=sse.id or None, data=sse.data, retry=sse.retry, payload=payload
        )

    @property
    def percent(self) -> float | None:
        """``payload["percent"]``, or None when the event carries no percent."""
        value = self.payload.get("percent") if isinstance(self.payload, dict) else None
        return value if isinstance(value, int | float) and not isinstance(value, bool) else None

    @property
    def attempt(self) -> int | None:
        """``payload["attempt"]`` (1 plus one per ``reset`` report), or None."""
        value = self.payload.get("attempt") if isinstance(self.payload, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @property
    def status(self) -> str | None:
        """``payload["status"]`` (``running``, ``completed``, ...), or None."""
        return self.payload.get("status") if isinstance(self.payload, dict) else None

    @property
    def seq(self) -> int | None:
        """The ``id`` as a number (the snapshot's ``seq``), or None when it is not one."""
        return int(self.id) if self.id is not None and self.id.isdigit() else None

    @property
    def is_terminal(self) -> bool:
        """True for ``job-completed``, ``job-failed`` and ``job-cancelled``."""
        return self.event in TERMINAL_EVENTS


class EventStream:
    """An open SSE stream: iterate it (``async for event in stream``) for ``StreamEvent``.

    As a browser's ``EventSource`` does, events with empty data (the stream's opening
    ``retry:``) are not dispatched (HTML standard, 9.2.6 "Interpreting an event stream"); the
    ``retry`` value is kept in ``retry``. Comment lines (heartbeats) are skipped.

    Attributes:
        response: the HTTP response (status, headers); its body is the stream.
        events: every event yielded so far, oldest first.
        retry: the latest ``retry`` value received, in milliseconds, or None.
        ended: True once the server has ended the stream.
    """

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: list[StreamEvent] = []
        self.retry: int | None = None
        self.ended = False
        self._closed = False
        self._started = False
        self._sse = EventSource(response).aiter_sse()

    async def receive(self) -> StreamEvent:
        """Read the next event.

        Raises:
            trio.EndOfChannel: the server ended the stream.
            httpx_sse.SSEError: the response is not ``text/event-stream``.
        """
        self._started = True
        while True:
            try:
                sse = await anext(self._sse)
            except StopAsyncIteration:
                self.ended = True
                raise trio.EndOfChannel("the server ended the stream") from None
            if sse.retry is not None:
                self.retry = sse.retry
            if sse.data:
                event = StreamEvent.from_sse(sse)
                self.events.append(event)
                return event

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        """Close the connection, then let the parser run to its end. Idempotent.

        The parser (httpx-sse over httpx's byte iterators) is a chain of async generators;
        run to their end here, none is left for the garbage collector, which would warn.
        Shielded, and bounded by ``DRAIN_TIMEOUT``, so it also runs when the reader is
        being cancelled (a wait that timed out).
        """
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + DRAIN_TIMEOUT
            await self.response.aclose()
            # A parser never started has no generators running (nothing to drain).
            if self._started and not self.ended:
                try:
                    async for _ in self._sse:
                        pass
                except (httpx.TransportError, httpx.StreamError):
                    pass  # the read that follows closing the connection ends this way
        await self._sse.aclose()


def _stream_path(job_id: str | None, path: str | None) -> str:
    if (job_id is None) == (path is None):
        raise ValueError("open a stream with a job_id or with a path, not both or neither")
    return path if path is not None else STREAM_PATH.format(job_id=job_id)


@asynccontextmanager
async def open_event_stream(
    client: httpx.AsyncClient | TestClientProtocol,
    job_id: str | None = None,
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
) -> AsyncIterator[EventStream]:
    """Open a job's SSE stream and parse it with httpx-sse.

    Args:
        client: an ``httpx.AsyncClient`` whose ``base_url`` is a server
            (``progress_server.client()``), or a Quart test client (``progress_client``)
            for an in-process stream.
        job_id: the job whose stream (``STREAM_PATH``) to open.
        path: or any other path that answers with a stream (instead of ``job_id``).
        headers: extra request headers (``Last-Event-ID``, ``Authorization``...); the
            ``Accept: text/event-stream`` header is always sent.

    Yields:
        The open ``EventStream``; leaving the block closes it (in process, the app sees
        the client disconnect, as it would on a real socket).

    Raises:
        ValueError: both or neither of ``job_id`` and ``path`` were given.
        httpx.HTTPStatusError: the server answered with a status other than 2xx (a bad job
            id, say); the body has been read, so ``exc.response.json()`` shows why.
        httpx_sse.SSEError: on the first read, when the response is not
            ``text/event-stream``.
    """
    path = _stream_path(job_id, path)
    headers = {**(headers or {}), "Accept": "text/event-stream", "Cache-Control": "no-store"}
    if isinstance(client, httpx.AsyncClient):
        opened = client.stream("GET", path, headers=headers)
    else:
        opened = _open_in_process(client, path, headers)
    async with opened as response:
        if not response.is_success:
            await response.aread()
            response.raise_for_status()
        stream = EventStream(response)
        try:
            yield stream
        finally:
            await stream.aclose()


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


async def collect_events(
    client: httpx.AsyncClient | TestClientProtocol,
    job_id: str | None = None,
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 - its own bound, to report events
) -> list[StreamEvent]:
    """Read a stream from its start until the server ends it (after the terminal event).

    Args:
        client: as for ``open_event_stream``.
        job_id: the job whose stream to read.
        path: or another stream path.
        headers: extra request headers.
        timeout: how long the whole stream may take, in seconds of trio's clock.

    Returns:
        The events, oldest first; check them with ``assert_stream_well_formed``.

    Raises:
        ValueError: ``timeout`` is not positive and finite, or see ``open_event_stream``.
        WaitTimeoutError: the stream had not ended within ``timeout``; ``received`` holds
            the events read until then.
        httpx.HTTPStatusError: see ``open_event_stream``.
    """
    timeout = check_timeout(timeout)
    received: list[StreamEvent] = []
    with trio.move_on_after(timeout):
        async with open_event_stream(client, job_id, path=path, headers=headers) as stream:
            async for event in stream:
                received.append(event)
            return received
    last = f"last event: {received[-1].event} {received[-1].data}" if received else "no event"
    raise WaitTimeoutError(
        f"the stream {_stream_path(job_id, path)} did not end within {timeout:g} s; {last}",
        timeout=timeout,
        received=tuple(received),
    )


# --- a slow or frozen subscriber -------------------------------------------------------------


class SlowSSEClient:
    """A subscriber that reads its stream slowly, or not at all until thawed.

    While it does not read, the server's sends back up: in process after the Quart test
    connection's 10 unread chunks, on a real socket only after the kernel's socket buffers
    (megabytes on loopback) are full. A server that conflates then sends the latest state
    when the client reads again, not the backlog. Made by ``open_slow_sse_client``.

    Attributes:
        stream: the underlying ``EventStream`` (``stream.response`` for the headers).
        events: the events read so far, oldest first.
        read_interval: seconds (of trio's clock) it waits after reading each event.
        finished: set when the stream has ended (or reading failed; see ``wait_finished``).
    """

    def __init__(self, stream: EventStream, *, read_interval: float, frozen: bool) -> None:
        self.stream = stream
        self.events = stream.events
        self.read_interval = read_interval
        self.finished = trio.Event()
        self._thawed = trio.Event()
        self._error: BaseException | None = None
        if not frozen:
            self._thawed.set()

    @property
    def frozen(self) -> bool:
        """True while the client reads nothing."""
        return not self._thawed.is_set()

    def freeze(self) -> None:
        """Stop reading after the event being read now, until ``thaw``."""
        if self._thawed.is_set():
            self._thawed = trio.Event()

    def thaw(self) -> None:
        """Read again, at ``read_interval``."""
        self._thawed.set()

    async def wait_finished(
        self,
        timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109 - its own bound, to report events
    ) -> list[StreamEvent]:
        """Wait until the server has ended the stream and return every event read.

        Args:
            timeout: how long to wait, in seconds of trio's clock. A frozen client never
                finishes: thaw it first.

        Raises:
            ValueError: ``timeout`` is not a positive, finite number.
            WaitTimeoutError: the stream had not ended within ``timeout``.
        """
        timeout = check_timeout(timeout)
        with trio.move_on_after(timeout):
            await self.finished.wait()
            return list(self.events)
        state = "frozen" if self.frozen else f"reading every {self.read_interval:g} s"
        raise WaitTimeoutError(
            f"the slow client's stream did not end within {timeout:g} s ({state}; "
            f"{len(self.events)} events read)",
            timeout=timeout,
            received=tuple(self.events),
        )

    async def _read(self) -> None:
        try:
            while True:
                await self._thawed.wait()
                try:
                    await self.stream.receive()
                except trio.EndOfChannel:
                    return
                await trio.sleep(self.read_interval)
        finally:
            self.finished.set()


@asynccontextmanager
async def open_slow_sse_client(
    client: httpx.AsyncClient | TestClientProtocol,
    job_id: str | None = None,
    *,
    path: str | None = None,
    headers: dict[str, str] | None = None,
    read_interval: float = 0.0,
    frozen: bool = False,
) -> AsyncIterator[SlowSSEClient]:
    """Open a stream read by a background task at a set pace, or frozen.

    The stream is open (the response headers received) when the block starts. Leaving the
    block stops the reader and disconnects.

    Args:
        client: as for ``open_event_stream`` (in process is best: backpressure shows after
            10 unread chunks, in virtual time).
        job_id: the job whose stream to read.
        path: or another stream path.
        headers: extra request headers.
        read_interval: seconds of trio's clock to wait after each event read (0: read as
            fast as events come).
        frozen: start without reading anything until ``thaw()``.

    Raises:
        ValueError: ``read_interval`` is negative or not finite, or see
            ``open_event_stream``.
        httpx.HTTPStatusError: see ``open_event_stream``.
    """
    if isinstance(read_interval, bool) or not (
        isinstance(read_interval, int | float) and 0 <= read_interval < math.inf
    ):
        raise ValueError(
            f"read_interval must be a finite number of seconds >= 0, not {read_interval!r}"
        )
    async with (
        open_event_stream(client, job_id, path=path, headers=headers) as stream,
        _task_nursery() as nursery,
    ):
        slow = SlowSSEClient(stream, read_interval=float(read_interval), frozen=frozen)
        nursery.start_soon(slow._read)
        try:
            yield slow
        finally:
            nursery.cancel_scope.cancel()


# --- a real server --------------------------------------------------------------------------


def require_real_clock(what: str) -> None:
    """Fail the test when trio's clock is a ``MockClock`` that autojumps with no threshold.

    The autojump clock jumps to the next timeout whenever every task is blocked, including
    while they wait for a socket or a thread, so on a real server every timeout (the
    client's, Hypercorn's, the stream's) would fire at once.

    Args:
        what: the fixture or helper that needs the real clock, for the message.

    Raises:
        pytest.fail.Exception: the clock is ``MockClock(autojump_threshold=0)``.
    """
    clock = trio.lowlevel.current_clock()
    if isinstance(clock, trio.testing.MockClock) and clock.autojump_threshold == 0:
        pytest.fail(
            f"{what} runs a real server on real sockets, and the autojump clock would jump "
            "virtual time while they are pending. Remove autojump_clock from this test (use "
            "progress_client to test in virtual time), or give the test a fixture returning "
            "trio.testing.MockClock(autojump_threshold=0.1).",
            pytrace=False,
        )


class ProgressServer:
    """A real server started in a nursery (see ``start_progress_server``).

    Attributes:
        base_url: where it listens, ``http://127.0.0.1:<port>``.
        store: the export store it serves from, or None when the server opened the one its
            ``config.store`` names (a Redis URL) itself.
        config: its settings.
        stop: set it to start a graceful shutdown (the server stops accepting, streams are
            given ``graceful_timeout`` seconds, jobs are cancelled, the buffer flushed).
        stopped: set once the server has shut down.
    """

    def __init__(self, base_url: str, store: ExportStore | None, config: ServerConfig) -> None:
        self.base_url = base_url
        self.store = store
        self.config = config
        self.stop = trio.Event()
        self.stopped = trio.Event()

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` for this server; use it in ``async with``.

        Args:
            **kwargs: passed to ``httpx.AsyncClient`` (the default ``timeout`` is 10 s).
        """
        kwargs.setdefault("timeout", 10.0)
        return httpx.AsyncClient(base_url=self.base_url, **kwargs)

    async def aclose(self) -> None:
        """Shut the server down and wait (at most ``graceful_timeout`` + 5 s) until it has."""
        self.stop.set()
        with trio.move_on_after(self.config.graceful_timeout + SHUTDOWN_MARGIN):
            await self.stopped.wait()


async def start_progress_server(
    nursery: trio.Nursery,
    config: ServerConfig | None = None,
    *,
    store: ExportStore | None = None,
) -> ProgressServer:
    """Start a real Hypercorn server in ``nursery`` and return once it accepts connections.

    Uses ``await nursery.start(serve, ...)``, so the server lives in your nursery and an error
    in it crashes the test. Start several over one store to test several server processes.

    Args:
        nursery: the nursery to run it in (pytest-trio's ``nursery`` fixture, say).
        config: its settings; loopback, port 0 and the kit's flush interval by default.
        store: the export store. By default a new ``MemoryStore`` when ``config.store`` is
            ``memory``; else the server opens the store ``config.store`` names (a Redis
            URL), as ``progress-sync serve`` does, so several servers share it.

    Returns:
        The running server; ``await server.aclose()`` stops it.

    Raises:
        pytest.fail.Exception: trio's clock is the autojump clock (see
            ``require_real_clock``).
        OSError: the address could not be bound.
    """
    require_real_clock("start_progress_server")
    config = config if config is not None else default_config(DEFAULT_TEST_FLUSH_INTERVAL)
    if store is None and config.store == MEMORY_STORE_URL:
        store = MemoryStore()
    server = ProgressServer("", store, config)

    async def run(*, task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve(
                config, store=store, shutdown_trigger=server.stop.wait, task_status=task_status
            )
        finally:
            server.stopped.set()

    urls = await nursery.start(run)
    server.base_url = urls[0]
    return server


def default_config(flush_interval: float) -> ServerConfig:
    """The kit's server settings: 127.0.0.1, port 0, ``flush_interval`` seconds between
    flushes, 5 s registration timeout, 1 s graceful timeout, 60 s send timeout."""
    return ServerConfig(
        host="127.0.0.1",
        port=0,
        flush_interval=flush_interval,
        registration_timeout=5.0,
        graceful_timeout=1.0,
        # Long enough that a test can freeze a client for a while and thaw it; the server's
        # default (10 s) drops a client that takes no data for that long.
        send_timeout=60.0,
    )
