"""Real task-queue worker processes (``celery worker``, ``rq worker``) for the integration
tests, on the shared Redis with a database of their own for the broker."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import psutil
import trio
from _external import missing

TESTS = Path(__file__).resolve().parent
CELERY_DB = 8
"""The Redis database of the Celery tests' broker (the store stays on the tests' own, 7)."""
RQ_DB = 9
"""The Redis database of the RQ tests' queues."""


def require_module(name: str, extra: str) -> None:
    """Skip (fail when required) if the Python module ``name`` is not installed."""
    try:
        __import__(name)
    except ImportError:
        missing(f"the {name} package", f"pip install -e '.[{extra}]' (the dev extra has it)")


def unique_queue() -> str:
    """A queue name of this test alone."""
    return f"ps-test-{uuid.uuid4().hex[:10]}"


class WorkerProcess:
    """A worker process: its pid and the log it wrote (stdout and stderr together)."""

    def __init__(self, process: trio.Process, log: bytearray) -> None:
        self.process = process
        self.log = log

    def kill(self) -> None:
        """SIGKILL the worker (its task dies with it, with no chance to clean up)."""
        self.process.send_signal(signal.SIGKILL)

    def kill_with_children(self) -> None:
        """SIGKILL the worker and its children (RQ's work horse, in a session of its own)."""
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGKILL)


@asynccontextmanager
async def worker_process(
    argv: list[str], env: dict[str, str], ready: bytes
) -> AsyncIterator[WorkerProcess]:
    """Run a worker until the block ends (SIGTERM, then SIGKILL after 10 s), once its log
    shows ``ready``."""
    process = await trio.lowlevel.open_process(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=TESTS,
        env={**os.environ, "PYTHONPATH": str(TESTS), "PYTHONUNBUFFERED": "1", **env},
    )
    log = bytearray()
    found = trio.Event()
    try:
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                assert process.stdout is not None
                async for chunk in process.stdout:
                    log.extend(chunk)
                    if ready in log:
                        found.set()

            nursery.start_soon(drain)
            with trio.fail_after(30):
                await found.wait()
            try:
                yield WorkerProcess(process, log)
            finally:
                if process.returncode is None:
                    process.terminate()
                with trio.move_on_after(10):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
    finally:
        if process.returncode is None:
            process.kill()
        with trio.CancelScope(shield=True):
            await process.wait()


def python(*args: str) -> list[str]:
    """``python -m ...`` with this interpreter."""
    return [sys.executable, *args]


async def wait_for_status(
    client: httpx.AsyncClient,
    job_id: str,
    condition: object,
    timeout: float = 15,  # noqa: ASYNC109
) -> dict:
    """Poll ``GET /api/jobs/{id}`` until ``condition(snapshot)`` holds; the snapshot."""
    with trio.fail_after(timeout):
        while True:
            answer = await client.get(f"/api/jobs/{job_id}")
            if answer.status_code == 200:
                snapshot: dict = answer.json()
                if condition(snapshot):  # type: ignore[operator]
                    return snapshot
            await trio.sleep(0.05)
