"""Shared fixtures: the test kit (the ``progress_sync`` plugin) with this suite's settings.

Rules of this suite: timing is tested in virtual time (``autojump_clock``), never with real
sleeps; tests that need the network use a real server on ``127.0.0.1`` port 0 and the real
clock (the autojump clock would jump while sockets are pending).

The kit's plugin is active through its ``pytest11`` entry point: the suite runs against the
installed package (``pip install -e '.[dev]'``), never against files found from the checkout's
root, so a packaging mistake fails it. The helper modules beside this file (``_redis``,
``_external``, ``_server_process``, ``_server_thread``) are importable because pytest puts this
folder on ``sys.path``; a test module imports helpers, never another test module.

Layout: one folder per package under test, test files named by subject::

    core/     the pipeline: buffer, direct sync, stores (one contract for both), runner,
              threads, tqdm, statuses, terminal states, multi-subscriptions
    client/   the progress clients, the output parsers, `progress-sync run`, the socket path
    server/   HTTP API, errors and the contract, auth, settings and CLI, streams (protocol,
              lifecycle, pacing, outages), ingest, leases, OpenAPI, web page, Redis servers
    kit/      the test kit (progress_sync.testing, progress_sync.server.testing)
    bench/    the benchmark's plumbing (its figures are measured, never asserted)
    package/  the installed package: public names, extras, the wheel

Markers (pyproject.toml): ``redis``, ``browser``, ``ffmpeg``, ``slow``; ``-m "not slow"`` is the
fast subset.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from progress_sync import MemoryStore
from progress_sync.server import ServerConfig

pytest_plugins = ["pytester"]


@pytest.fixture
def store() -> MemoryStore:
    """A fresh in-memory export store."""
    return MemoryStore()


@pytest.fixture
def progress_server_config() -> ServerConfig:
    """This suite's settings for the kit's server and client (``progress_server``,
    ``progress_client``): ephemeral loopback port, short timeouts."""
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
