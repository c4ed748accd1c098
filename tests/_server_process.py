"""A server in its own process (``progress-sync serve``), and reading its streams: for tests
of several server processes over one Redis store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio
from httpx_sse import aconnect_sse
from progress_sync.server.testing import TERMINAL_EVENTS

SERVE = [sys.executable, "-c", "from progress_sync.server._cli import main; main()", "serve"]
_URL_LINE = re.compile(rb"(?:Running on|serving on) (http://127\.0\.0\.1:\d+)")


class ServerProcess:
    """A ``progress-sync serve`` process: its base URL, pid and log."""

    def __init__(self, process: trio.Process, base_url: str, log: bytearray) -> None:
        self.process = process
        self.base_url = base_url
        self.log = log

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=10.0)


@asynccontextmanager
async def server_process(*args: str) -> AsyncIterator[ServerProcess]:
    """Run ``progress-sync serve ARGS --port 0`` until the block ends, then SIGTERM it."""
    process = await trio.lowlevel.open_process(
        [*SERVE, "--port", "0", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    log = bytearray()
    found = trio.Event()
    base_url = ""
    try:
        async with trio.open_nursery() as nursery:

            async def drain() -> None:
                # Read the log to the end, so the server never blocks on a full pipe.
                nonlocal base_url
                assert process.stderr is not None
                async for chunk in process.stderr:
                    log.extend(chunk)
                    if not found.is_set() and (match := _URL_LINE.search(log)):
                        base_url = match.group(1).decode()
                        found.set()

            nursery.start_soon(drain)
            with trio.fail_after(30):
                await found.wait()
            try:
                yield ServerProcess(process, base_url, log)
            finally:
                process.terminate()
                with trio.move_on_after(20):
                    await process.wait()
                if process.returncode is None:
                    process.kill()
    finally:
        if process.returncode is None:
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()


async def follow(
    base_url: str, job_id: str, events: list[tuple[str, int, dict]] | None = None
) -> list[tuple[str, int, dict]]:
    """Follow a job's stream to its end with an SSE client; (event, id, data) per event,
    appended to ``events`` as they come."""
    events = [] if events is None else events
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30.0) as client,
        aconnect_sse(client, "GET", f"/api/jobs/{job_id}/progress/stream") as source,
    ):
        async for event in source.aiter_sse():
            if event.data:
                events.append((event.event, int(event.id or 0), json.loads(event.data)))
    return events


def check_stream(events: list[tuple[str, int, dict]], final_event: str) -> dict:
    """The stream's ids only grow, progress never goes back, exactly one terminal event ends it."""
    ids = [event_id for _, event_id, _ in events]
    assert ids == sorted(set(ids))
    percents = [data["percent"] for name, _, data in events if name == "job-progress"]
    assert percents == sorted(percents)
    names = [name for name, _, _ in events]
    assert names[-1] == final_event
    assert sum(name in TERMINAL_EVENTS for name in names) == 1
    return events[-1][2]
