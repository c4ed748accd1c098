"""A subscriber that reads its stream slowly, or is frozen until thawed (backpressure tests)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio
import trio.testing
from progress_sync import (
    WaitTimeoutError,
)
from progress_sync.testing import (
    DEFAULT_WAIT_TIMEOUT,
    check_timeout,
)
from quart.typing import TestClientProtocol

from ._events import EventStream, StreamEvent, open_event_stream
from ._transport import _task_nursery


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
