"""The thread reporter: coalescing in the thread, at most one crossing into trio per flush.

Timing rules are checked in virtual time (``autojump_clock``) with reports made from the trio
thread (``TrioToken.run_sync_soon`` works from any thread, including trio's own); the real
worker-thread tests use the real clock and wait on store subscriptions, never on sleeps.
"""

from __future__ import annotations

import threading
import time

import pytest
import trio
from progress_sync import (
    InvalidUpdateError,
    JobStatus,
    MemoryStore,
    SinkClosedError,
    open_thread_reporter,
    open_update_buffer,
    wall_clock,
)


async def wait_for_percent(store: MemoryStore, job_id: str, percent: float) -> list[float]:
    """Follow the job until it shows ``percent``; returns every percent seen."""
    seen = []
    with trio.fail_after(10):
        async with store.subscribe(job_id) as subscription:
            async for snapshot in subscription:
                seen.append(snapshot.percent)
                if snapshot.percent == percent or snapshot.is_terminal:
                    return seen
    return seen


async def test_reports_cross_into_trio_at_most_once_per_flush_interval(autojump_clock):
    store = MemoryStore()
    await store.register("j", status=JobStatus.RUNNING)
    async with (
        open_update_buffer(store, flush_interval=0.5) as buffer,
        open_thread_reporter(buffer) as reporter,
    ):
        assert reporter.flush_interval == 0.5
        started = trio.current_time()
        for i in range(1, 1001):  # 1,000 reports over 5 s of virtual time
            reporter.report_nowait("j", i / 10, "work")
            await trio.sleep(0.005)
        elapsed = trio.current_time() - started
        stats = reporter.statistics()
        assert stats.reports == 1000
        assert stats.handoffs <= elapsed / 0.5 + 1
        assert stats.crossings <= stats.handoffs + 1
        assert stats.coalesced >= 1000 - 2 * stats.handoffs
    assert (await store.get("j")).percent == 100.0


async def test_a_lone_report_is_handed_over_at_once_not_after_an_interval(autojump_clock):
    store = MemoryStore()
    await store.register("j", status=JobStatus.RUNNING)
    async with (
        open_update_buffer(store, flush_interval=0.5) as buffer,
        open_thread_reporter(buffer) as reporter,
    ):
        reporter.report_nowait("j", 10.0, "a")
        await trio.testing.wait_all_tasks_blocked()
        assert buffer.statistics().pending == 1
        assert reporter.statistics().handoffs == 1
        # The next report within the interval waits for the next hand-over.
        reporter.report_nowait("j", 20.0, "a")
        await trio.testing.wait_all_tasks_blocked()
        assert reporter.statistics().pending == 1
        await trio.sleep(0.5)
        await trio.testing.wait_all_tasks_blocked()
        assert reporter.statistics().pending == 0
        await buffer.flush()
        assert (await store.get("j")).percent == 20.0


async def test_reports_keep_the_time_they_were_made():
    store = MemoryStore()
    await store.register("j", status=JobStatus.RUNNING)
    async with (
        open_update_buffer(store, flush_interval=0.05) as buffer,
        open_thread_reporter(buffer) as reporter,
    ):
        before = wall_clock()
        reporter.report_nowait("j", 5.0, "x")
        after = wall_clock()
        await reporter.flush()
        await buffer.flush()
    snapshot = await store.get("j")
    assert before <= snapshot.reported_at <= after


@pytest.mark.slow
async def test_worker_thread_at_10khz_reaches_the_store_with_its_last_report():
    """A real thread reports 10,000 times at 10 kHz; the store ends at its last report."""
    store = MemoryStore()
    await store.register("hot", status=JobStatus.RUNNING)
    count = 10_000

    def produce(report) -> None:
        start = time.perf_counter()
        for i in range(1, count + 1):
            report(i * 100 / count, "hot loop")
            if i % 100 == 0:  # pace at 10 kHz: 100 reports per 10 ms
                delay = start + i / 10_000 - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)

    async with (
        open_update_buffer(store, flush_interval=0.05) as buffer,
        open_thread_reporter(buffer) as reporter,
        trio.open_nursery() as nursery,
    ):
        started = trio.current_time()
        seen: list[float] = []

        async def follow() -> None:
            seen.extend(await wait_for_percent(store, "hot", 100.0))

        nursery.start_soon(follow)
        await trio.to_thread.run_sync(produce, reporter.for_job("hot").report)
        elapsed = trio.current_time() - started
        stats = reporter.statistics()
    assert stats.reports == count
    assert stats.handoffs <= elapsed / 0.05 + 2
    assert stats.crossings <= stats.handoffs + 1
    assert buffer.statistics().reports_received == stats.reports - stats.coalesced
    assert seen[-1] == 100.0
    assert seen == sorted(seen)
    assert (await store.get("hot")).percent == 100.0


async def test_finish_from_a_worker_thread_stores_the_latest_progress_and_the_terminal_state():
    store = MemoryStore()
    await store.register("w", status=JobStatus.RUNNING)

    def work(job) -> object:
        for i in range(50):
            job.report(i * 2.0, "crunch", f"item {i}")
        return job.finish("failed", error="disk full")

    async with (
        open_update_buffer(store, flush_interval=10.0) as buffer,
        open_thread_reporter(buffer) as reporter,
    ):
        snapshot = await trio.to_thread.run_sync(work, reporter.for_job("w"))
    assert snapshot.status is JobStatus.FAILED
    assert snapshot.error == "disk full"
    # The pending report went in with the terminal state: the job shows where it stopped.
    assert snapshot.percent == 98.0
    assert snapshot.message == "item 49"


async def test_finish_from_the_trio_thread_is_refused():
    store = MemoryStore()
    await store.register("w")
    async with (
        open_update_buffer(store) as buffer,
        open_thread_reporter(buffer) as reporter,
    ):
        with pytest.raises(
            RuntimeError, match="blocks the calling thread; call it from a worker thread"
        ):
            reporter.finish("w", "completed")


async def test_bad_reports_raise_in_the_reporting_thread():
    store = MemoryStore()
    async with (
        open_update_buffer(store) as buffer,
        open_thread_reporter(buffer) as reporter,
    ):
        errors: list[BaseException] = []

        def bad() -> None:
            for call in (
                lambda: reporter.report_nowait("j", 101.0, "x"),
                lambda: reporter.report_nowait("j", 1.0, 7),  # type: ignore[arg-type]
                lambda: reporter.report_nowait("", 1.0, "x"),
            ):
                try:
                    call()
                except InvalidUpdateError as exc:
                    errors.append(exc)

        await trio.to_thread.run_sync(bad)
    assert [e.field for e in errors] == ["percent", "stage", "jobId"]  # type: ignore[attr-defined]
    assert reporter.statistics().reports == 0


async def test_reports_after_the_block_raise_and_nothing_reported_inside_is_lost():
    store = MemoryStore()
    await store.register("j", status=JobStatus.RUNNING)
    async with open_update_buffer(store, flush_interval=60.0) as buffer:
        async with open_thread_reporter(buffer, flush_interval=60.0) as reporter:
            reporter.report_nowait("j", 1.0, "x")
            await trio.testing.wait_all_tasks_blocked()
            reporter.report_nowait("j", 42.0, "x")  # waits in the thread-side dict
        with pytest.raises(SinkClosedError, match="thread reporter is closed"):
            reporter.report_nowait("j", 50.0, "x")
    assert (await store.get("j")).percent == 42.0


async def test_reports_from_many_threads_are_all_counted():
    store = MemoryStore()
    for n in range(8):
        await store.register(f"t{n}", status=JobStatus.RUNNING)
    barrier = threading.Barrier(8)

    def produce(job_id: str) -> None:
        barrier.wait()
        for i in range(1, 1001):
            reporter.report(job_id, i / 10, "x")

    async with (
        open_update_buffer(store, flush_interval=0.05) as buffer,
        open_thread_reporter(buffer) as reporter,
        trio.open_nursery() as nursery,
    ):
        for n in range(8):
            nursery.start_soon(trio.to_thread.run_sync, produce, f"t{n}")
    assert reporter.statistics().reports == 8000
    for n in range(8):
        assert (await store.get(f"t{n}")).percent == 100.0


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), "1", True])
async def test_flush_interval_must_be_a_positive_number(interval):
    async with open_update_buffer(MemoryStore()) as buffer:
        with pytest.raises(ValueError, match="flush_interval must be a positive number"):
            async with open_thread_reporter(buffer, flush_interval=interval):
                pass  # pragma: no cover
