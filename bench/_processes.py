"""Server processes for the HTTP and stream levels: started, watched (psutil) and always ended."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import uuid
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

import coredis
import trio

from ._recorder import PeakRss, tree_cpu_seconds
from ._workload import System

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT = 60.0
"""Seconds a server process may take to say where it listens."""

STOP_TIMEOUT = 10.0
"""Seconds a server process gets to exit after SIGTERM before it is killed."""

_RUNNING_ON = re.compile(r"Running on (http://[^\s]+)")
"""How every server here says where it listens: Hypercorn's own log line, which our
reference servers print too."""


class ServerStartError(RuntimeError):
    """A server process exited or stayed silent before saying where it listens."""


@dataclass(frozen=True)
class ServerProcess:
    """A server running in its own process.

    Attributes:
        url: its base URL (``http://127.0.0.1:PORT``).
        pid: its process id.
        argv: the command line that started it.
        rss: its peak resident memory, sampled by ``sample``: with its child processes
            (Hypercorn workers), the peak of their sum.
        workers: server processes answering on ``url`` (``serve --workers``).
    """

    url: str
    pid: int
    argv: tuple[str, ...]
    rss: PeakRss
    workers: int = 1

    def cpu_seconds(self) -> float:
        """User + system CPU seconds so far (OS accounting) of the process and all its
        children, recursively (the workers of ``serve --workers N`` are its children)."""
        return tree_cpu_seconds(self.pid)

    async def sample_memory(self, interval: float = 0.1) -> None:
        """Sample the peak RSS every ``interval`` seconds until cancelled."""
        while True:
            self.rss.sample()
            await trio.sleep(interval)


def unique_store_prefix() -> str:
    """A Redis key prefix for one server run, that no other run uses."""
    return f"progress-sync-bench:{uuid.uuid4().hex[:12]}:"


def progress_sync_argv(
    mode: System,
    *,
    flush_interval: float,
    store: str | None = None,
    store_prefix: str | None = None,
    workers: int = 1,
    extra: Sequence[str] = (),
) -> list[str]:
    """``progress-sync --log-level INFO serve --sync-mode MODE --port 0 ...``, run with
    this interpreter so that it is the same installation as the bench.

    Args:
        mode: batched or direct.
        flush_interval: the update buffer's flush interval, seconds.
        store: None for the in-memory store, or a Redis URL (``--store``).
        store_prefix: the key prefix in Redis (``--store-prefix``); needed with ``store``.
        workers: server processes (``--workers``); more than 1 needs ``store``.
        extra: more ``serve`` options.

    Raises:
        ValueError: ``store`` without ``store_prefix``, or several workers without ``store``.
    """
    if store is not None and not store_prefix:
        raise ValueError("a store needs its own store_prefix (see unique_store_prefix())")
    if workers > 1 and store is None:
        raise ValueError(
            f"workers={workers} needs a Redis store: the in-memory store is not shared"
        )
    store_args = ["--store", store, "--store-prefix", str(store_prefix)] if store else []
    worker_args = ["--workers", str(workers)] if workers > 1 else []
    return [
        sys.executable,
        "-m",
        "progress_sync",
        "--log-level",
        "INFO",  # Hypercorn's "Running on http://..." is logged at INFO
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--sync-mode",
        mode.value,
        "--flush-interval",
        repr(flush_interval),
        *store_args,
        *worker_args,
        *extra,
    ]


def module_argv(module: str, *args: str) -> list[str]:
    """``python -m MODULE ARGS...`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


async def delete_store_prefix(url: str, prefix: str) -> int:
    """Delete every key under ``prefix`` in the Redis database of ``url``.

    Returns:
        How many keys were deleted.
    """
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(keys[start : start + 1000])
    return len(keys)


@asynccontextmanager
async def open_server_process(
    argv: Sequence[str], *, workers: int = 1
) -> AsyncIterator[ServerProcess]:
    """Start ``argv``, wait until it prints ``Running on http://...`` (once per worker, so
    that every worker accepts connections before the load starts), and yield it.

    On exit (normal, error or cancellation) the process gets SIGTERM, and its whole process
    group SIGKILL if it has not exited within ``STOP_TIMEOUT`` seconds; it is never left
    running.

    Raises:
        ServerStartError: the process exited, or said nothing, before listening; the
            message holds the end of its output.
    """
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    process = await trio.lowlevel.open_process(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    output: deque[str] = deque(maxlen=40)
    assert process.stdout is not None
    lines = _Lines(process.stdout, output)
    try:
        url = None
        listening = 0
        with trio.move_on_after(STARTUP_TIMEOUT):
            while listening < workers and (line := await lines.next_line()) is not None:
                match = _RUNNING_ON.search(line)
                if match:
                    url = match.group(1)
                    listening += 1
        if url is None or listening < workers:
            tail = "\n".join(output)
            raise ServerStartError(
                f"{' '.join(argv[-8:])} did not start listening "
                f"(exit code {process.returncode}); its output ended with:\n{tail}"
            )
        server = ServerProcess(
            url, process.pid, tuple(argv), PeakRss(process.pid, children=True), workers
        )
        logger.info("server process %d listening on %s", process.pid, server.url)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lines.drain)
            nursery.start_soon(server.sample_memory)
            yield server
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await _stop(process)


class _Lines:
    """The lines a process writes; the last ones are kept for error messages."""

    def __init__(self, stream: trio.abc.ReceiveStream, output: deque[str]) -> None:
        self._stream = stream
        self._output = output
        self._pending = b""
        self._ready: deque[str] = deque()

    async def next_line(self) -> str | None:
        """The next line, or None once the process has closed its output."""
        while not self._ready:
            chunk = await self._stream.receive_some()
            if not chunk:
                return None
            self._pending += chunk
            *complete, self._pending = self._pending.split(b"\n")
            for raw in complete:
                line = raw.decode(errors="replace").rstrip()
                self._output.append(line)
                self._ready.append(line)
        return self._ready.popleft()

    async def drain(self) -> None:
        """Read until the process closes its output, so that it never blocks on a full pipe."""
        while await self.next_line() is not None:
            pass


async def _stop(process: trio.Process) -> None:
    logger.info("stopping server process %d", process.pid)
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_TIMEOUT):
            await process.wait()
    if process.returncode is None:
        logger.warning("server process %d ignored SIGTERM; killing its process group", process.pid)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: workers included
        except ProcessLookupError:
            process.kill()
        await process.wait()
    if process.stdout is not None:
        await process.stdout.aclose()
    logger.info("server process %d exited with %s", process.pid, process.returncode)
