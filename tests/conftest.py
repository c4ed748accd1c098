"""Shared fixtures: services in virtual time, and a real Hypercorn server on a loopback port.

Rules of this suite: timing is tested in virtual time (``autojump_clock``), never with real
sleeps; tests that need the network use a real server on ``127.0.0.1`` port 0 and the real
clock (the autojump clock would jump while sockets are pending).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from functools import partial

import httpx
import pytest
import trio

from pipeline import MemoryStore
from server import ServerConfig, serve


@pytest.fixture
def store() -> MemoryStore:
    """A fresh in-memory export store."""
    return MemoryStore()


@pytest.fixture
def server_config() -> ServerConfig:
    """Settings for a test server: ephemeral loopback port, short timeouts."""
    return ServerConfig(
        host="127.0.0.1",
        port=0,
        flush_interval=0.05,
        registration_timeout=1.0,
        heartbeat_interval=15.0,
        graceful_timeout=1.0,
    )


class RunningServer:
    """A server started in the test's nursery: its base URL, store and stop switch."""

    def __init__(self, base_url: str, store: MemoryStore, stop: trio.Event) -> None:
        self.base_url = base_url
        self.store = store
        self.stop = stop

    def client(self, **kwargs: object) -> httpx.AsyncClient:
        """An httpx client for this server (close it, or use it in ``async with``)."""
        return httpx.AsyncClient(base_url=self.base_url, timeout=10.0, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def running_server(
    nursery: trio.Nursery, server_config: ServerConfig
) -> AsyncIterator[RunningServer]:
    """A real Hypercorn server on 127.0.0.1 (ephemeral port) inside the test's nursery."""
    store = MemoryStore()
    stop = trio.Event()
    urls = await nursery.start(
        partial(serve, server_config, store=store, shutdown_trigger=stop.wait)
    )
    yield RunningServer(urls[0], store, stop)
    stop.set()


def with_config(config: ServerConfig, **changes: object) -> ServerConfig:
    """A copy of ``config`` with ``changes`` applied."""
    return replace(config, **changes)  # type: ignore[arg-type]


async def start_server(nursery: trio.Nursery, config: ServerConfig) -> RunningServer:
    """Start a real server with ``config`` in ``nursery``; stop it with ``server.stop.set()``.

    For tests that need settings the ``running_server`` fixture does not have (tokens, say).
    """
    store = MemoryStore()
    stop = trio.Event()
    urls = await nursery.start(partial(serve, config, store=store, shutdown_trigger=stop.wait))
    return RunningServer(urls[0], store, stop)


@pytest.fixture
def redis_url() -> str:
    """The shared test Redis (127.0.0.1:6379, database 7); skips when it is not answering."""
    from tests._redis import require_shared_redis

    return require_shared_redis()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    from tests._redis import delete_prefix, unique_prefix

    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        with trio.CancelScope(shield=True):
            await delete_prefix(redis_url, prefix)
