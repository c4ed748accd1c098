"""When the store cannot be reached: the pipeline keeps every latest state and terminal state,
and retries with backoff. In virtual time, with a store that is 'down' on demand."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import trio
from progress_sync import (
    BatchResult,
    JobKind,
    JobReporter,
    JobSnapshot,
    JobStatus,
    MemoryStore,
    ProgressUpdate,
    StoreUnavailableError,
    open_direct_sync,
    open_job_runner,
    open_update_buffer,
)
from progress_sync._buffer import MAX_RETRY_DELAY
from progress_sync._direct import WRITE_RETRY_TIMEOUT


class FlakyStore(MemoryStore):
    """A ``MemoryStore`` whose writes raise ``StoreUnavailableError`` while ``down`` is True."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.progress_attempts: list[float] = []
        self.finish_attempts: list[float] = []

    async def apply_progress(self, updates: Sequence[ProgressUpdate]) -> BatchResult:
        self.progress_attempts.append(trio.current_time())
        if self.down:
            await trio.lowlevel.checkpoint()
            raise StoreUnavailableError("the test store is down")
        return await super().apply_progress(updates)

    async def finish(self, job_id: str, status: JobStatus, **kwargs: Any) -> JobSnapshot:
        self.finish_attempts.append(trio.current_time())
        if self.down:
            await trio.lowlevel.checkpoint()
            raise StoreUnavailableError("the test store is down")
        return await super().finish(job_id, status, **kwargs)


async def test_the_buffer_retries_with_backoff_and_keeps_the_latest_state(autojump_clock):
    store = FlakyStore()
    await store.register("job-1")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        start = trio.current_time()
        store.down = True
        for step in range(1, 201):
            buffer.report_nowait("job-1", step / 2, "render")
            await trio.sleep(0.1)  # 20 s of reports while the store is down
        failed = list(store.progress_attempts)
        store.down = False
        await trio.sleep(MAX_RETRY_DELAY + 0.1)
        assert (await store.get("job-1")).percent == 100.0
        recovered = len(store.progress_attempts)
        buffer.report_nowait("job-1", 100.0, "done")
        await trio.sleep(2)
    gaps = [round(b - a, 6) for a, b in zip([start, *failed], failed, strict=False)]
    assert gaps[:5] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert all(gap == MAX_RETRY_DELAY for gap in gaps[4:])
    assert buffer.statistics().failed_writes == len(failed)
    assert (await store.get("job-1")).stage == "done"
    # Back on the normal schedule once a write succeeds: no more writes than one per interval.
    assert len(store.progress_attempts) - recovered <= 1


async def test_a_terminal_state_reached_while_the_store_is_down_is_written_when_it_is_back(
    autojump_clock,
):
    store = FlakyStore()

    async def job(reporter: JobReporter, params: Any) -> dict[str, int]:
        for step in range(1, 11):
            reporter.report(step * 10.0, "work")
            await trio.sleep(0.1)
        store.down = True  # the store goes away just before the job ends
        return {"frames": 10}

    kinds = {"job": JobKind("job", job, lambda params: params)}
    async with (
        open_update_buffer(store, flush_interval=0.5) as buffer,
        open_job_runner(store, buffer, kinds=kinds) as runner,
    ):
        await runner.submit("job", job_id="job-1")
        await trio.sleep(5)
        assert (await store.get("job-1")).status is JobStatus.RUNNING
        assert len(store.finish_attempts) >= 3
        store.down = False
        await trio.sleep(10)
    final = await store.get("job-1")
    assert (final.status, final.percent, final.result) == (
        JobStatus.COMPLETED,
        100.0,
        {"frames": 10},
    )
    assert final.stage == "work"
    gaps = [b - a for a, b in zip(store.finish_attempts, store.finish_attempts[1:], strict=False)]
    assert gaps == sorted(gaps)  # backoff: never closer together than before


async def test_a_queued_job_that_starts_while_the_store_is_down_still_shows_running(
    autojump_clock,
):
    store = FlakyStore()
    gate = trio.Event()

    async def job(reporter: JobReporter, params: Any) -> None:
        await gate.wait()

    kinds = {"job": JobKind("job", job, lambda params: params)}
    async with (
        open_update_buffer(store, flush_interval=0.5) as buffer,
        open_job_runner(store, buffer, kinds=kinds, max_concurrent=1) as runner,
    ):
        await runner.submit("job", job_id="first")
        assert (await runner.submit("job", job_id="second")).status is JobStatus.QUEUED
        store.down = True
        gate.set()  # "first" ends, "second" starts while the store is down
        await trio.sleep(1)
        store.down = False
        await trio.sleep(10)
    assert (await store.get("first")).status is JobStatus.COMPLETED
    assert (await store.get("second")).status is JobStatus.COMPLETED
    assert math.isclose((await store.get("second")).percent, 100.0)


async def test_direct_sync_retries_a_write_with_backoff_then_gives_up(autojump_clock):
    store = FlakyStore()
    await store.register("job-1")
    await store.register("job-2")
    async with open_direct_sync(store) as sync:
        store.down = True
        sync.report_nowait("job-1", 40.0, "render")
        await trio.sleep(2)
        store.down = False
        await trio.sleep(6)
        assert (await store.get("job-1")).percent == 40.0
        store.down = True
        sync.report_nowait("job-2", 10.0, "render")
        await trio.sleep(WRITE_RETRY_TIMEOUT + 1)
        stats = sync.statistics()
        store.down = False
    assert (await store.get("job-2")).seq == 1  # given up after WRITE_RETRY_TIMEOUT
    assert stats.pending == 0
    assert stats.store_writes == 1
    assert stats.failed_writes >= 8


async def test_finish_while_the_store_is_down_raises_and_keeps_the_latest_progress(
    autojump_clock,
):
    store = FlakyStore()
    await store.register("job-1")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        buffer.report_nowait("job-1", 70.0, "render")
        store.down = True
        with pytest.raises(StoreUnavailableError, match="the test store is down"):
            await buffer.finish("job-1", JobStatus.FAILED, error="crash")
        store.down = False
        failed = await buffer.finish("job-1", JobStatus.FAILED, error="crash")
    assert (failed.status, failed.percent, failed.error) == (JobStatus.FAILED, 70.0, "crash")
