"""Redis for tests: the shared server on 127.0.0.1:6379, and private servers a test may stop.

Tests use their own database (``TEST_DB``) and a unique key prefix each, and delete their keys
afterwards. A test that stops Redis starts a PRIVATE ``redis-server`` on an ephemeral port
(``private_redis``): the shared one on 6379 is never stopped.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import coredis
import trio
from _external import missing

SHARED_HOST, SHARED_PORT = "127.0.0.1", 6379
TEST_DB = 7
SHARED_URL = f"redis://{SHARED_HOST}:{SHARED_PORT}/{TEST_DB}"
REDIS_SERVER = "/usr/bin/redis-server"
START_REDIS = (
    "start Redis on 127.0.0.1:6379 (apt-get install redis-server && "
    "redis-server --daemonize yes --save '' --appendonly no)"
)


def redis_answers(host: str = SHARED_HOST, port: int = SHARED_PORT) -> bool:
    """Whether a Redis server answers PING at ``host:port`` (a blocking check, 1 s at most)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def require_shared_redis() -> str:
    """The shared Redis URL, or skip (fail under ``PROGRESS_SYNC_REQUIRE_EXTERNAL=1``)."""
    if not redis_answers():
        missing("Redis on 127.0.0.1:6379", START_REDIS)
    return SHARED_URL


def unique_prefix() -> str:
    """A key prefix no other test uses."""
    return f"progress-sync-test:{uuid.uuid4().hex[:12]}:"


async def delete_prefix(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` in the database of ``url``."""
    client = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(keys)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of this test alone, on an ephemeral loopback port.

    Its data is written to an append-only file in ``directory`` on every write, so a restart
    keeps it, as a production Redis with persistence would.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: trio.Process | None = None

    async def start(self) -> None:
        """Start the server and wait until it answers."""
        self._process = await trio.lowlevel.open_process(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with trio.fail_after(10):
            # Polls another process: there is no event to wait for.
            while not await trio.to_thread.run_sync(redis_answers, "127.0.0.1", self.port):  # noqa: ASYNC110
                await trio.sleep(0.05)

    async def stop(self) -> None:
        """Stop the server (SIGTERM: it syncs its file and exits) and wait for it."""
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            with trio.move_on_after(10):
                await self._process.wait()
            if self._process.returncode is None:
                self._process.kill()
                await self._process.wait()
        self._process = None


def require_redis_server() -> None:
    """Skip (or fail when required) if the ``redis-server`` program is not installed."""
    if not Path(REDIS_SERVER).exists() and shutil.which("redis-server") is None:
        missing("the redis-server program", "apt-get install redis-server")


@asynccontextmanager
async def private_redis(directory: Path) -> AsyncIterator[PrivateRedis]:
    """Start a private Redis for the block and stop it afterwards, whatever happens."""
    require_redis_server()
    server = PrivateRedis(directory)
    await server.start()
    try:
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.stop()
