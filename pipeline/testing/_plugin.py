"""The fixtures of the ``progress_sync`` pytest plugin (registered by ``progress_sync.testing``).

The pipeline's fixtures need only the core; the server fixtures import the server stack when a
test first uses one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import trio

from .._buffer import UpdateBuffer, open_update_buffer
from .._memory_store import MemoryStore

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

    from ..server import ServerConfig, Services
    from ..server.testing import STREAM_PATH as STREAM_PATH
    from ..server.testing import TERMINAL_EVENTS as TERMINAL_EVENTS
    from ..server.testing import EventStream as EventStream
    from ..server.testing import ProgressServer as ProgressServer
    from ..server.testing import SlowSSEClient as SlowSSEClient
    from ..server.testing import StreamEvent as StreamEvent
    from ..server.testing import collect_events as collect_events
    from ..server.testing import open_event_stream as open_event_stream
    from ..server.testing import open_slow_sse_client as open_slow_sse_client
    from ..server.testing import require_real_clock as require_real_clock
    from ..server.testing import start_progress_server as start_progress_server


DEFAULT_TEST_FLUSH_INTERVAL = 0.05
"""The flush interval of the kit's buffer and server, in seconds: short, so tests on the real
clock stay fast; in virtual time any value costs nothing."""


@pytest.fixture
def progress_flush_interval() -> float:
    """Seconds between flushes of ``progress_buffer`` and of ``progress_server``'s buffer.

    0.05 by default. Override it in your conftest or test module to test your own interval.
    """
    return DEFAULT_TEST_FLUSH_INTERVAL


@pytest.fixture
def progress_store() -> MemoryStore:
    """A fresh in-memory export store, shared by the kit's buffer, server and client."""
    return MemoryStore()


@pytest.fixture
async def progress_buffer(
    progress_store: MemoryStore, progress_flush_interval: float
) -> AsyncIterator[UpdateBuffer]:
    """An ``UpdateBuffer`` over ``progress_store`` with its drain task running.

    Reports reach the store at the next flush, ``progress_flush_interval`` seconds of trio's
    clock later (no real time under ``autojump_clock``); ``await progress_buffer.flush()``
    writes them at once. The buffer is closed, and flushed, after the test.
    """
    async with open_update_buffer(progress_store, flush_interval=progress_flush_interval) as buffer:
        yield buffer


@pytest.fixture
def progress_server_config(progress_flush_interval: float) -> ServerConfig:
    """Settings of ``progress_server`` and ``progress_client``: 127.0.0.1, port 0, the kit's
    flush interval, 5 s registration timeout, 1 s graceful timeout, 60 s send timeout.
    Override to change."""
    from ..server.testing import default_config

    return default_config(progress_flush_interval)


@pytest.fixture
async def progress_services(
    progress_server_config: ServerConfig, progress_store: MemoryStore
) -> AsyncIterator[Services]:
    """The app's services over ``progress_store``: update sink and job runner (``demo`` kind).

    Add your own job kinds with ``progress_services.runner.kinds["name"] = JobKind(...)``.
    """
    from ..server import open_services

    async with open_services(progress_server_config, progress_store) as services:
        yield services


@pytest.fixture
async def progress_client(progress_services: Services) -> AsyncIterator[TestClientProtocol]:
    """A Quart test client of the app, in process: no sockets, so virtual time works.

    ``await progress_client.post("/api/jobs", json=...)``, ``collect_events(progress_client,
    job_id)``; the app (``progress_client.app``) has run its startup and runs its shutdown
    after the test.
    """
    from ..server import create_app

    app = create_app(progress_services)
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture
async def progress_server(
    nursery: trio.Nursery, progress_server_config: ServerConfig, progress_store: MemoryStore
) -> AsyncIterator[ProgressServer]:
    """A real Hypercorn server on 127.0.0.1 (ephemeral port) over ``progress_store``.

    Started with ``await nursery.start(...)``; shut down gracefully after the test. Needs the
    real clock: a test that also asks for ``autojump_clock`` fails with a message saying so.
    """
    from ..server.testing import require_real_clock, start_progress_server

    require_real_clock("progress_server")
    server = await start_progress_server(nursery, progress_server_config, store=progress_store)
    yield server
    await server.aclose()


@pytest.fixture
def progress_server_url(progress_server: ProgressServer) -> str:
    """The base URL of ``progress_server``, ``http://127.0.0.1:<port>``."""
    return progress_server.base_url
