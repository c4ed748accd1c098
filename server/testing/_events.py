"""SSE events of a job's stream, parsed by httpx-sse: open a stream, read it, collect it.

On a real server through an ``httpx.AsyncClient``, or in process through Quart's test client
(``progress_client``; the in-process transport is ``_transport``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import trio
import trio.testing
from httpx_sse import EventSource, ServerSentEvent
from progress_sync import (
    TERMINAL_STATUSES,
    WaitTimeoutError,
)
from progress_sync._contract import JOB_STREAM_PATH
from progress_sync.testing import (
    DEFAULT_WAIT_TIMEOUT,
    check_timeout,
)
from quart.typing import TestClientProtocol

from ..sse._framing import EVENT_FOR_STATUS
from ._transport import _open_in_process

STREAM_PATH = JOB_STREAM_PATH.replace("{jobId}", "{job_id}")
"""The path of a job's SSE stream; ``open_event_stream`` fills in the job id."""

TERMINAL_EVENTS: frozenset[str] = frozenset(EVENT_FOR_STATUS[s] for s in TERMINAL_STATUSES)
"""The SSE ``event`` names of terminal states: job-completed, job-failed, job-cancelled."""

DRAIN_TIMEOUT = 5.0
"""Seconds a closed stream's parser may take to run to its end (see ``EventStream.aclose``)."""


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
