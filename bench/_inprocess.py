"""The in-process level: producers as trio tasks, the store and the subscribers in this process."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio
import trio.testing
from progress_sync import (
    DEFAULT_CAPACITY,
    JobStatus,
    MemoryStore,
    ProgressUpdate,
    SyncMode,
    UpdateBuffer,
    UpdateSink,
    open_direct_sync,
    open_update_buffer,
    open_update_sink,
    wall_clock,
)

from ._recorder import PeakRss, Recorder, View, cpu_seconds, sample_while_running
from ._results import IngestResult, RunResult
from ._workload import Level, System, Workload

MIN_TICK = 0.01
"""Shortest interval between two bursts of a producer task, seconds."""

MAX_PRODUCER_TASKS = 10
"""Producer tasks per run; each reports for its share of the jobs."""

DRAIN_TIMEOUT = 10.0
"""Seconds to wait, after the producers stop, for every report to reach every subscriber."""

TERMINAL_TIMEOUT = 10.0
"""Seconds to wait for every subscriber's terminal event."""

Progress = Callable[[float], None]
"""Called with the fraction of the measured window done (0 to 1)."""


@dataclass(frozen=True)
class _Schedule:
    start: float
    end: float
    rate: float
    tick: float
    cap: int


async def _produce(
    report: Callable[[str, float, str], None],
    job_ids: list[str],
    job_indexes: list[int],
    schedule: _Schedule,
    recorder: Recorder,
) -> None:
    # Every job of this task reports ``rate`` times a second; reports due since the last
    # burst go out together (at most ``cap`` per job, so a saturated run stays bounded).
    sent = 0
    truth = recorder.truth
    duration = schedule.end - schedule.start
    next_tick = schedule.start
    while True:
        now = trio.current_time()
        if now >= schedule.end:
            return
        due = min(int((now - schedule.start) * schedule.rate) - sent, schedule.cap)
        if due > 0:
            base = 99.0 * (now - schedule.start) / duration
            step = 0.5 / due
            stamp = wall_clock()
            started = time.perf_counter()
            for k in range(due):
                percent = base + k * step
                for job_id in job_ids:
                    report(job_id, percent, "bench")
            recorder.producer_seconds += time.perf_counter() - started
            sent += due
            recorder.reports += due * len(job_ids)
            for index in job_indexes:
                truth[index] = stamp
        next_tick += schedule.tick
        await trio.sleep_until(max(next_tick, trio.current_time()))


async def _subscribe(
    store: MemoryStore,
    job_id: str,
    view: View,
    recorder: Recorder,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with store.subscribe(job_id) as subscription:
        task_status.started()
        async for snapshot in subscription:
            received = wall_clock()
            if snapshot.status.is_terminal:
                recorder.on_terminal(view)
                return
            if view.connected:
                recorder.on_event(view, snapshot.reported_at, received)
            else:
                view.reported_at = snapshot.reported_at
                recorder.on_connected(view)


async def _drain(sink: UpdateSink, recorder: Recorder) -> bool:
    """Wait until every report made has reached every subscriber; False on timeout."""
    with trio.move_on_after(DRAIN_TIMEOUT):
        if isinstance(sink, UpdateBuffer):
            await sink.flush()
        while True:
            await trio.testing.wait_all_tasks_blocked()
            if recorder.caught_up():
                return True
            await trio.sleep(0.01)
    return False


async def run_inprocess(
    workload: Workload,
    mode: SyncMode,
    *,
    round: int = 0,
    progress: Progress | None = None,
) -> RunResult:
    """Run ``workload`` through ``mode`` with everything in this process.

    The jobs are registered ``running``, every subscriber subscribes and gets its first
    snapshot, then producer tasks report for ``workload.duration`` seconds. The window ends
    when every report has reached every subscriber; then each job is finished
    ``completed`` and every subscriber must get its terminal snapshot.
    """
    store = MemoryStore()
    recorder = Recorder(workload.jobs, workload.subscribers)
    rss = PeakRss()
    job_ids = [f"job-{j}" for j in range(workload.jobs)]
    tasks = min(workload.jobs, MAX_PRODUCER_TASKS)
    tick = max(1.0 / workload.rate, MIN_TICK)
    cap = max(1, math.ceil(2 * workload.rate * tick))
    async with (
        open_update_sink(store, mode, flush_interval=workload.flush_interval) as sink,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(sample_while_running, recorder, rss)
        for job_id in job_ids:
            await store.register(job_id, status=JobStatus.RUNNING, stage="bench")
        for view in recorder.views:
            await nursery.start(_subscribe, store, job_ids[view.job], view, recorder)
        await recorder.all_connected.wait()
        writes_before = store.statistics().writes
        applied_before = store.statistics().updates_applied
        cpu_before = cpu_seconds()
        window_start = time.perf_counter()
        recorder.start_window()
        start = trio.current_time() + 0.001
        schedule = _Schedule(start, start + workload.duration, workload.rate, tick, cap)
        async with trio.open_nursery() as producers:
            for t in range(tasks):
                producers.start_soon(
                    _produce,
                    sink.report_nowait,
                    job_ids[t::tasks],
                    list(range(workload.jobs))[t::tasks],
                    schedule,
                    recorder,
                )
            if progress is not None:
                producers.start_soon(_show_progress, progress, schedule)
        drained = await _drain(sink, recorder)
        window = time.perf_counter() - window_start
        cpu = cpu_seconds() - cpu_before
        recorder.measuring = False
        stats = store.statistics()
        writes = stats.writes - writes_before
        applied = stats.updates_applied - applied_before
        for job_id in job_ids:
            await sink.finish(job_id, JobStatus.COMPLETED)
        with trio.move_on_after(TERMINAL_TIMEOUT):
            await recorder.all_terminal.wait()
        nursery.cancel_scope.cancel()
    reports = recorder.reports
    return RunResult(
        level=Level.INPROCESS,
        system=System(mode.value),
        workload=workload,
        round=round,
        window_s=window,
        reports=reports,
        offered_per_s=workload.offered_rate,
        reports_per_s=reports / workload.duration,
        producer_us_per_report=recorder.producer_seconds / reports * 1e6 if reports else math.nan,
        store_writes=writes,
        store_writes_per_s=writes / window,
        events=recorder.events,
        events_per_s=recorder.events / window,
        cpu_s=cpu,
        cpu_s_per_1k_reports=cpu / reports * 1000 if reports else math.nan,
        peak_rss_mb=rss.peak_mb,
        latency=recorder.latency(),
        staleness=recorder.staleness_summary(),
        terminal_expected=len(recorder.views),
        terminal_lost=recorder.terminal_lost,
        coalescing_ratio=reports / applied if applied else math.nan,
        notes=() if drained else (f"not every subscriber caught up within {DRAIN_TIMEOUT:g} s",),
    )


async def _show_progress(progress: Progress, schedule: _Schedule) -> None:
    while (now := trio.current_time()) < schedule.end:
        progress((now - schedule.start) / (schedule.end - schedule.start))
        await trio.sleep(0.25)
    progress(1.0)


async def measure_ingest(*, rounds: int = 7, batch: int = DEFAULT_CAPACITY) -> IngestResult:
    """Time ``report_nowait`` against the raw trio channel ``send_nowait``, interleaved.

    See ``IngestResult`` for what is timed. The reports name 100 jobs that are not registered,
    so the untimed flushes between rounds drop them at once.
    """
    job_ids = [f"job-{i % 100}" for i in range(batch)]
    stamp = wall_clock()
    items = [ProgressUpdate(job_id, 50.0, "bench", None, stamp) for job_id in job_ids]
    send, receive = trio.open_memory_channel[ProgressUpdate](batch)
    store = MemoryStore()
    raw: list[float] = []
    buffered: list[float] = []
    direct: list[float] = []
    async with (
        open_update_buffer(store, flush_interval=3600.0, capacity=batch) as buffer,
        send,
        receive,
    ):
        for r in range(rounds):
            for which in ("raw", "buffer") if r % 2 == 0 else ("buffer", "raw"):
                if which == "raw":
                    send_nowait = send.send_nowait
                    started = time.perf_counter()
                    for item in items:
                        send_nowait(item)
                    raw.append(time.perf_counter() - started)
                    for _ in range(batch):
                        receive.receive_nowait()
                else:
                    report_nowait = buffer.report_nowait
                    started = time.perf_counter()
                    for job_id in job_ids:
                        report_nowait(job_id, 50.0, "bench")
                    buffered.append(time.perf_counter() - started)
                    await buffer.flush()
            await trio.lowlevel.checkpoint()
        # Direct sync starts a task per report; time the calls, then let the writes run.
        for _ in range(max(1, rounds // 2)):
            async with open_direct_sync(store) as sync:
                started = time.perf_counter()
                for job_id in job_ids:
                    sync.report_nowait(job_id, 50.0, "bench")
                direct.append(time.perf_counter() - started)
    raw_rate = batch / min(raw)
    buffer_rate = batch / min(buffered)
    return IngestResult(
        batch=batch,
        rounds=rounds,
        raw_per_s=raw_rate,
        report_nowait_per_s=buffer_rate,
        direct_per_s=batch / min(direct),
        ratio=buffer_rate / raw_rate,
    )
