"""A real server: Hypercorn on 127.0.0.1, port 0, in the test's nursery, on the real clock."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import trio
import trio.testing
from progress_sync import (
    MEMORY_STORE_URL,
    ExportStore,
    MemoryStore,
)
from progress_sync.testing import (
    DEFAULT_TEST_FLUSH_INTERVAL,
)

from .._config import ServerConfig
from .._serve import serve

SHUTDOWN_MARGIN = 5.0
"""Seconds ``ProgressServer.aclose`` waits beyond the server's graceful timeout."""


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
