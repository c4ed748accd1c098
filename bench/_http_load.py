"""The load generator of the HTTP level: producers (``POST /api/progress``) and real SSE clients.

It speaks the HTTP ingest contract (``POST /api/jobs`` without ``kind`` registers an external
job; ``POST /api/progress`` takes a JSON array of ``{jobId, percent, stage, reportedAt}``;
``POST /api/jobs/{jobId}/complete`` ends a job synchronously) and follows every job's stream
with httpx-sse, so the same workload runs against our server and the sse-starlette reference.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import trio
from httpx_sse import aconnect_sse
from progress_sync import wall_clock
from websockets.trio.client import connect as connect_websocket

from ._processes import ServerProcess
from ._recorder import PeakRss, Recorder, View, cpu_seconds, sample_while_running
from ._results import RunResult
from ._workload import Level, System, Workload

logger = logging.getLogger(__name__)

TERMINAL_EVENTS = frozenset({"job-completed", "job-failed", "job-cancelled"})

PRODUCER_TASKS = 4
"""Producer tasks, each posting the reports of its share of the jobs in one request per tick."""

POSTS_IN_FLIGHT = 1
"""Requests one producer task may have waiting for the server at once. One, so that a job's
reports arrive in order: the update buffer coalesces in arrival order (latest arrival wins),
and a batch overtaking an older one would leave the older state in place until the next
report."""

MIN_TICK = 0.05
"""Shortest interval between two ``POST /api/progress`` of one producer task, seconds: with
``PRODUCER_TASKS`` tasks, 80 requests a second at most. Longer intervals mean bigger batches,
less HTTP overhead per report (for both modes) and, in direct mode, more conflation at the
subscribers (a whole batch is written before the streams run)."""

SUBSCRIBERS_PER_CLIENT = 100
"""SSE connections per httpx client (httpx's pool scans its connections on each request)."""

CONTROL_CONCURRENCY = 16
"""Registrations and completions in flight at once."""

CONNECT_TIMEOUT = 60.0
"""Seconds every subscriber gets to open its stream and receive its first snapshot."""

DRAIN_TIMEOUT = 10.0
"""Seconds to wait, after the producers stop, for every subscriber to show the latest report."""

TERMINAL_TIMEOUT = 15.0
"""Seconds to wait for every subscriber's terminal event after the jobs are completed."""

HTTP_TIMEOUT = httpx.Timeout(30.0, read=60.0)
"""Requests give up after 30 s (60 s between two stream chunks)."""


class IngestUnavailableError(RuntimeError):
    """The server does not accept the HTTP ingest contract (no external jobs, say)."""


@dataclass(frozen=True)
class _Schedule:
    start: float
    end: float
    rate: float
    tick: float
    cap: int


def _limits(connections: int) -> httpx.Limits:
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


async def _register(client: httpx.AsyncClient, job_id: str) -> None:
    response = await client.post(
        "/api/jobs", json={"jobId": job_id, "status": "running", "stage": "bench"}
    )
    if response.status_code != 201:
        raise IngestUnavailableError(
            f"POST /api/jobs without kind answered {response.status_code} "
            f"{response.text[:200]!r}; the server needs the HTTP ingest API (external jobs)"
        )


async def _complete(client: httpx.AsyncClient, job_id: str) -> None:
    response = await client.post(f"/api/jobs/{job_id}/complete", json={})
    if response.status_code != 200:
        raise IngestUnavailableError(
            f"POST /api/jobs/{job_id}/complete answered {response.status_code} "
            f"{response.text[:200]!r}"
        )


async def _each(
    action: Callable[[httpx.AsyncClient, str], Any], client: httpx.AsyncClient, ids: list[str]
) -> None:
    """Run ``action(client, id)`` for every id, ``CONTROL_CONCURRENCY`` at a time."""
    limiter = trio.CapacityLimiter(CONTROL_CONCURRENCY)

    async def one(job_id: str) -> None:
        async with limiter:
            await action(client, job_id)

    async with trio.open_nursery() as nursery:
        for job_id in ids:
            nursery.start_soon(one, job_id)


async def _produce(
    client: httpx.AsyncClient,
    job_ids: list[str],
    job_indexes: list[int],
    schedule: _Schedule,
    recorder: Recorder,
    producer: str = "post",
) -> None:
    # Each tick builds the reports due since the last one (at most ``cap`` per job): their
    # ``reportedAt`` are spread evenly since the previous tick, as if an agent in the job's
    # process batched them. Up to ``POSTS_IN_FLIGHT`` posts wait for the server at once; when
    # they all do, the producer waits too (backpressure), and falls behind its schedule.
    send, receive = trio.open_memory_channel[tuple[str, list[int]]](0)
    async with trio.open_nursery() as posters:
        for _ in range(POSTS_IN_FLIGHT):
            if producer == "ws":
                posters.start_soon(_send_frames, str(client.base_url), receive.clone(), recorder)
            else:
                posters.start_soon(_post, client, receive.clone(), recorder)
        receive.close()
        async with send:
            sent = 0
            previous = wall_clock()
            duration = schedule.end - schedule.start
            next_tick = schedule.start
            while True:
                now = trio.current_time()
                if now >= schedule.end:
                    return
                due = min(int((now - schedule.start) * schedule.rate) - sent, schedule.cap)
                if due > 0:
                    wall = wall_clock()
                    base = 99.0 * (now - schedule.start) / duration
                    body = []
                    for k in range(due):
                        reported_at = previous + (wall - previous) * (k + 1) / due
                        percent = round(base + 0.5 * k / due, 3)
                        for job_id in job_ids:
                            body.append(
                                {
                                    "jobId": job_id,
                                    "percent": percent,
                                    "stage": "bench",
                                    "reportedAt": reported_at,
                                }
                            )
                    previous = wall
                    sent += due
                    await send.send((json.dumps(body, separators=(",", ":")), job_indexes))
                    for index in job_indexes:
                        recorder.truth[index] = wall
                next_tick += schedule.tick
                await trio.sleep_until(max(next_tick, trio.current_time()))


async def _post(
    client: httpx.AsyncClient,
    batches: trio.MemoryReceiveChannel[tuple[str, list[int]]],
    recorder: Recorder,
) -> None:
    async with batches:
        async for content, _ in batches:
            started = time.perf_counter()
            response = await client.post(
                "/api/progress", content=content, headers={"content-type": "application/json"}
            )
            recorder.producer_seconds += time.perf_counter() - started
            if response.status_code != 200:
                raise IngestUnavailableError(
                    f"POST /api/progress answered {response.status_code} {response.text[:200]!r}"
                )
            recorder.reports += int(response.json()["accepted"])


async def _send_frames(
    base_url: str,
    batches: trio.MemoryReceiveChannel[tuple[str, list[int]]],
    recorder: Recorder,
) -> None:
    """The ``ws`` producer: each batch is a frame of one persistent connection
    (``GET /api/progress/ws``), sent once the previous one is answered."""
    url = base_url.rstrip("/").replace("http://", "ws://", 1) + "/api/progress/ws"
    async with (
        batches,
        connect_websocket(url, compression=None, proxy=None, max_size=None) as socket,
    ):
        async for content, _ in batches:
            started = time.perf_counter()
            await socket.send(content)
            answer = json.loads(await socket.recv())
            recorder.producer_seconds += time.perf_counter() - started
            if "accepted" not in answer:
                raise IngestUnavailableError(f"a frame of {url} was refused: {answer}")
            recorder.reports += int(answer["accepted"])


async def _follow(
    client: httpx.AsyncClient, job_id: str, view: View, recorder: Recorder, errors: list[str]
) -> None:
    async with aconnect_sse(client, "GET", f"/api/jobs/{job_id}/progress/stream") as source:
        if source.response.status_code != 200:
            errors.append(f"stream of {job_id} answered {source.response.status_code}")
            return
        # Read to the end of the stream (the server ends it after the terminal event), so
        # that httpx's response generators are exhausted, not left to the garbage collector.
        ended = False
        async for event in source.aiter_sse():
            if ended or not event.data:  # retry: alone, or after the end
                continue
            received = wall_clock()
            if event.event in TERMINAL_EVENTS:
                recorder.on_terminal(view)
                ended = True
                continue
            if event.event != "job-progress":
                errors.append(f"stream of {job_id}: {event.event} {event.data[:200]}")
                ended = True
                continue
            reported_at = float(json.loads(event.data)["reportedAt"])
            if view.connected:
                recorder.on_event(view, reported_at, received)
            else:
                view.reported_at = reported_at
                recorder.on_connected(view)


async def _health(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/healthz")
    response.raise_for_status()
    return dict(response.json())


def _counter(health: dict[str, Any], section: str, name: str) -> int:
    return int(health.get(section, {}).get(name, 0))


async def run_http(
    server: ServerProcess,
    workload: Workload,
    system: System,
    *,
    round: int = 0,
    progress: Callable[[float], None] | None = None,
    connect_timeout: float = CONNECT_TIMEOUT,
) -> RunResult:
    """Run ``workload`` against ``server`` over loopback and measure it (see ``RunResult``).

    Registers the jobs, opens every subscriber's stream and waits for its first snapshot,
    then producers post reports for ``workload.duration`` seconds. The window ends when
    every subscriber shows its job's latest report (or after ``DRAIN_TIMEOUT``); then every
    job is completed and every subscriber must get its terminal event.

    Args:
        server: the server process.
        workload: the workload.
        system: what the server is (recorded in the result).
        round: which round (recorded, and part of the job ids).
        progress: called with the fraction of the window done, 0 to 1.
        connect_timeout: seconds every subscriber gets to open its stream and get its first
            snapshot.

    Raises:
        IngestUnavailableError: the server does not speak the HTTP ingest contract.
        RuntimeError: not every stream opened in ``connect_timeout`` seconds.
    """
    recorder = Recorder(workload.jobs, workload.subscribers)
    own_rss = PeakRss()
    job_ids = [f"bench-{round}-{j}" for j in range(workload.jobs)]
    tasks = min(workload.jobs, PRODUCER_TASKS)
    tick = max(1.0 / workload.rate, MIN_TICK)
    cap = max(1, math.ceil(2 * workload.rate * tick))
    errors: list[str] = []
    groups = [
        recorder.views[i : i + SUBSCRIBERS_PER_CLIENT]
        for i in range(0, len(recorder.views), SUBSCRIBERS_PER_CLIENT)
    ]
    async with (
        httpx.AsyncClient(
            base_url=server.url,
            timeout=HTTP_TIMEOUT,
            limits=_limits(tasks * POSTS_IN_FLIGHT + CONTROL_CONCURRENCY),
        ) as control,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(sample_while_running, recorder, own_rss)
        await _each(_register, control, job_ids)
        followers = [
            httpx.AsyncClient(base_url=server.url, timeout=HTTP_TIMEOUT, limits=_limits(len(group)))
            for group in groups
        ]
        try:
            async with trio.open_nursery() as streams:
                for client, group in zip(followers, groups, strict=True):
                    for view in group:
                        streams.start_soon(
                            _follow, client, job_ids[view.job], view, recorder, errors
                        )
                with trio.move_on_after(connect_timeout):
                    await recorder.all_connected.wait()
                if not recorder.all_connected.is_set():
                    raise RuntimeError(
                        f"only {recorder.connected} of {len(recorder.views)} streams opened "
                        f"in {connect_timeout:g} s; {'; '.join(errors[:3])}"
                    )
                result = await _measure(
                    server,
                    control,
                    workload,
                    system,
                    round,
                    recorder,
                    job_ids,
                    tasks,
                    tick,
                    cap,
                    progress,
                    errors,
                )
                streams.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                for client in followers:
                    await client.aclose()
        nursery.cancel_scope.cancel()
    return result


async def _measure(
    server: ServerProcess,
    control: httpx.AsyncClient,
    workload: Workload,
    system: System,
    round: int,
    recorder: Recorder,
    job_ids: Sequence[str],
    tasks: int,
    tick: float,
    cap: int,
    progress: Callable[[float], None] | None,
    errors: list[str],
) -> RunResult:
    health_before = await _health(control)
    logger.info("%s: %s measuring window starts", system, workload.label)
    server_cpu_before = server.cpu_seconds()
    client_cpu_before = cpu_seconds()
    window_start = time.perf_counter()
    recorder.start_window()
    start = trio.current_time() + 0.001
    schedule = _Schedule(start, start + workload.duration, workload.rate, tick, cap)
    async with trio.open_nursery() as producers:
        for t in range(tasks):
            producers.start_soon(
                _produce,
                control,
                list(job_ids[t::tasks]),
                list(range(workload.jobs))[t::tasks],
                schedule,
                recorder,
                workload.producer,
            )
        if progress is not None:
            producers.start_soon(_show_progress, progress, schedule)
    drained = False
    with trio.move_on_after(DRAIN_TIMEOUT):
        # Polled: "every view shows its job's latest report" is a condition over all views,
        # too costly to re-check on every event.
        while not recorder.caught_up():  # noqa: ASYNC110
            await trio.sleep(0.01)
        drained = True
    window = time.perf_counter() - window_start
    server_cpu = server.cpu_seconds() - server_cpu_before
    client_cpu = cpu_seconds() - client_cpu_before
    recorder.measuring = False
    health_after = await _health(control)
    await _each(_complete, control, list(job_ids))
    with trio.move_on_after(TERMINAL_TIMEOUT):
        await recorder.all_terminal.wait()

    def delta(section: str, name: str) -> int:
        return _counter(health_after, section, name) - _counter(health_before, section, name)

    if server.workers > 1:
        # /healthz answers from one worker, with its own counters: count what the producers
        # had accepted, and leave the store's counters out.
        reports, coalesced, writes = recorder.reports, 0, 0
    else:
        reports = delta("sink", "reportsReceived") or recorder.reports
        coalesced = delta("sink", "coalesced")
        writes = delta("store", "writes")
    problems = list(errors[:3])
    if not drained:
        problems.append(f"not every subscriber caught up within {DRAIN_TIMEOUT:g} s")
    return RunResult(
        level=Level.HTTP,
        system=system,
        workload=workload,
        round=round,
        window_s=window,
        reports=reports,
        offered_per_s=workload.offered_rate,
        reports_per_s=reports / workload.duration,
        producer_us_per_report=(
            recorder.producer_seconds / recorder.reports * 1e6 if recorder.reports else math.nan
        ),
        store_writes=writes,
        store_writes_per_s=writes / window if server.workers == 1 else math.nan,
        events=recorder.events,
        events_per_s=recorder.events / window,
        cpu_s=server_cpu,
        cpu_s_per_1k_reports=server_cpu / reports * 1000 if reports else math.nan,
        client_cpu_s=client_cpu,
        peak_rss_mb=server.rss.peak_mb,
        latency=recorder.latency(),
        staleness=recorder.staleness_summary(),
        terminal_expected=len(recorder.views),
        terminal_lost=recorder.terminal_lost,
        coalescing_ratio=(
            reports / (reports - coalesced)
            if reports > coalesced and server.workers == 1
            else math.nan
        ),
        notes=tuple(problems),
        store=store_kind(server.argv),
        workers=server.workers,
    )


def store_kind(argv: Sequence[str]) -> str:
    """``redis`` when ``argv`` serves with ``--store redis://...`` (or another Redis URL),
    else ``memory``."""
    for option, value in itertools.pairwise(argv):
        if option == "--store" and value != "memory":
            return "redis"
    return "memory"


async def _show_progress(progress: Callable[[float], None], schedule: _Schedule) -> None:
    while (now := trio.current_time()) < schedule.end:
        progress((now - schedule.start) / (schedule.end - schedule.start))
        await trio.sleep(0.25)
    progress(1.0)
