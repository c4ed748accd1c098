"""Shared fixtures: the test kit (the ``progress_sync`` plugin) with this suite's settings.

Rules of this suite: timing is tested in virtual time (``autojump_clock``), never with real
sleeps; tests that need the network use a real server on ``127.0.0.1`` port 0 and the real
clock (the autojump clock would jump while sockets are pending).

The kit's plugin is active through its ``pytest11`` entry point: the suite runs against the
installed package (``pip install -e '.[dev]'``), never against files found from the checkout's
root, so a packaging mistake fails it. The helper modules beside this file (``_redis``,
``_external``, ...) are importable because pytest puts this folder on ``sys.path``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
import trio
from progress_sync import MemoryStore
from progress_sync.server import ServerConfig
from progress_sync.server.testing import ProgressServer, start_progress_server

pytest_plugins = ["pytester"]

RunningServer = ProgressServer
"""The type of ``running_server`` (older tests import it from here)."""


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
        # Tests freeze clients for a while and thaw them; the default (10 s) would drop them.
        send_timeout=60.0,
    )


@pytest.fixture
def progress_server_config(server_config: ServerConfig) -> ServerConfig:
    """The kit's server and client use this suite's ``server_config`` (override either)."""
    return server_config


@pytest.fixture
def running_server(progress_server: ProgressServer) -> ProgressServer:
    """A real Hypercorn server on 127.0.0.1 (ephemeral port): the kit's ``progress_server``.

    ``base_url``, ``store``, ``client()``, ``stop`` (a ``trio.Event``) and ``stopped``.
    """
    return progress_server


def with_config(config: ServerConfig, **changes: object) -> ServerConfig:
    """A copy of ``config`` with ``changes`` applied."""
    return replace(config, **changes)  # type: ignore[arg-type]


async def start_server(nursery: trio.Nursery, config: ServerConfig) -> RunningServer:
    """Start a real server with ``config`` in ``nursery`` (the kit's ``start_progress_server``).

    For tests that need settings the ``running_server`` fixture does not have (tokens, say);
    stop it with ``progress_sync.server.stop.set()``.
    """
    return await start_progress_server(nursery, config)


@pytest.fixture
def redis_url() -> str:
    """The shared test Redis (127.0.0.1:6379, database 7); skips when it is not answering."""
    from _redis import require_shared_redis

    return require_shared_redis()


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test alone; its keys are deleted afterwards."""
    from _redis import delete_prefix, unique_prefix

    prefix = unique_prefix()
    try:
        yield prefix
    finally:
        with trio.CancelScope(shield=True):
            await delete_prefix(redis_url, prefix)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that takes the ``redis_url`` fixture is marked ``redis`` (others say so by hand)."""
    for item in items:
        if "redis_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.redis)
