"""Graceful shutdown over a real network: in process, and ``progress-sync serve`` + SIGTERM.

Rules: real clock and real sockets; every wait is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import httpx
import pytest
import trio
from httpx_sse import aconnect_sse
from test_network_lifecycle import open_network_server


async def follow(
    base_url: str, path: str, events: list, ready: trio.Event, ready_after: int = 1
) -> None:
    """Collect the events of a stream (httpx-sse) until the server ends it (then ``None``).

    ``ready`` is set once ``ready_after`` events have arrived (0: once the stream started).
    """
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30.0) as client,
        aconnect_sse(client, "GET", path) as source,
        aclosing(source.aiter_sse()) as stream,
    ):
        if ready_after == 0:
            ready.set()
        async for event in stream:
            if event.event != "message":
                events.append(event)
                if len(events) >= ready_after:
                    ready.set()
    events.append(None)


async def test_shutdown_ends_every_stream_and_stops_accepting():
    async with open_network_server(flush_interval=60.0, graceful_timeout=3.0) as server:
        async with server.client() as client:
            created = await client.post(
                "/api/jobs", json={"kind": "demo", "params": {"durationS": 600}}
            )
        demo_id = created.json()["jobId"]
        await server.store.register("external")
        demo_events, external_events = [], []
        got_demo, got_external = trio.Event(), trio.Event()
        with trio.fail_after(8):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    follow, server.url, f"/api/jobs/{demo_id}/progress/stream", demo_events,
                    got_demo,
                )  # fmt: skip
                nursery.start_soon(
                    follow, server.url, "/api/jobs/external/progress/stream", external_events,
                    got_external,
                )  # fmt: skip
                await got_demo.wait()
                await got_external.wait()
                # Reported before the signal, still in the buffer (flushes are 60 s apart).
                server.services.sink.report_nowait("external", 42.0, "almost")
                server.stop.set()
                # Leaving the nursery waits for both streams to end.
        assert external_events[-1] is None
        *_, progress, reconnect, _ = external_events
        assert json.loads(progress.data)["percent"] == 42.0
        assert reconnect.event == "reconnect"
        assert 2000 <= reconnect.retry <= 7000
        assert [e.event for e in demo_events[:-1]][-1] == "job-cancelled"
        with pytest.raises(OSError, match=r"Connection refused|all attempts to connect"):
            await trio.open_tcp_stream(*server.address)


def progress_sync_command() -> list[str]:
    script = Path(sys.executable).with_name("progress-sync")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from progress_sync.server._cli import main; main()"]


@pytest.mark.slow
async def test_sigterm_drains_streams_and_exits_within_the_drain_timeout():
    drain_timeout = 3.0
    command = [
        *progress_sync_command(),
        "serve",
        "--port", "0",
        "--graceful-timeout", str(drain_timeout),
        "--flush-interval", "0.05",
        "--registration-timeout", "60",
    ]  # fmt: skip
    process = await trio.lowlevel.open_process(command, stderr=subprocess.PIPE)
    log = bytearray()
    listening = trio.Event()

    async def read_log() -> None:
        async for chunk in process.stderr:
            log.extend(chunk)
            if re.search(rb"Running on http://", log):
                listening.set()

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_log)
            with trio.move_on_after(20):
                await listening.wait()
            assert listening.is_set(), (command, process.returncode, bytes(log))
            base_url = re.search(rb"Running on (http://[\d.:]+)", log).group(1).decode()
            async with httpx.AsyncClient(base_url=base_url) as client:
                created = await client.post(
                    "/api/jobs",
                    json={"kind": "demo", "params": {"durationS": 60, "updatesPerS": 50}},
                )
            job_id = created.json()["jobId"]
            job_events, waiting_events = [], []
            job_moving, waiting = trio.Event(), trio.Event()
            with trio.fail_after(15):
                async with trio.open_nursery() as streams:
                    streams.start_soon(
                        follow, base_url, f"/api/jobs/{job_id}/progress/stream", job_events,
                        job_moving, 5,
                    )  # fmt: skip
                    # A stream waiting for a job nobody registered yet: it must be told to
                    # come back, with a spread retry.
                    streams.start_soon(
                        follow, base_url, "/api/jobs/later/progress/stream", waiting_events,
                        waiting, 0,
                    )  # fmt: skip
                    await job_moving.wait()
                    await waiting.wait()
                    signalled_at = trio.current_time()
                    process.send_signal(signal.SIGTERM)
            with trio.fail_after(drain_timeout + 2):
                code = await process.wait()
            exited_after = trio.current_time() - signalled_at
            nursery.cancel_scope.cancel()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert code == 0, log.decode()
    assert exited_after < drain_timeout + 2
    assert b"received SIGTERM, shutting down" in log
    # The job this server ran: progress, then cancelled, carrying the last progress reported.
    assert job_events[-1] is None
    percents = [json.loads(e.data)["percent"] for e in job_events[:-1]]
    terminal = job_events[-2]
    assert terminal.event == "job-cancelled"
    assert json.loads(terminal.data)["percent"] >= max(percents[:-1])
    # The waiting stream: one reconnect event with a retry in the spread window.
    assert [e.event for e in waiting_events[:-1]] == ["reconnect"]
    assert 2000 <= waiting_events[0].retry <= 7000
    assert json.loads(waiting_events[0].data)["jobId"] == "later"
