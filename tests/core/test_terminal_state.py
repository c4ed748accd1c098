"""The terminal state carries the job's latest report: ``finish`` folds the pending report into
the terminal write, in both stores and both sync modes, and nothing buffered lands after it.

Memory-store cases run in virtual time; Redis cases on the shared test Redis (real clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest
import trio
import trio.testing
from _redis import delete_prefix, require_shared_redis, unique_prefix
from progress_sync import (
    BatchResult,
    ExportStore,
    JobStatus,
    MemoryStore,
    ProgressUpdate,
    open_direct_sync,
    open_redis_store,
    open_update_buffer,
)


class SlowWrites(MemoryStore):
    """A memory store whose progress writes take a while: direct sync's writes are in flight
    when the terminal state is written."""

    async def apply_progress(self, updates: Sequence[ProgressUpdate]) -> BatchResult:
        await trio.sleep(1)
        return await super().apply_progress(updates)


@pytest.fixture(params=["memory", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock | None:
    """trio's autojump clock for the memory store; None (the real clock) for Redis."""
    return trio.testing.MockClock(autojump_threshold=0) if kind == "memory" else None


@pytest.fixture
async def store(kind: str, clock: trio.testing.MockClock | None) -> AsyncIterator[ExportStore]:
    if kind == "memory":
        yield SlowWrites()
        return
    url, prefix = require_shared_redis(), unique_prefix()
    try:
        async with open_redis_store(url, prefix=prefix) as redis_store:
            yield redis_store
    finally:
        with trio.CancelScope(shield=True):
            await delete_prefix(url, prefix)


async def test_buffer_with_a_full_channel_fails_at_the_last_report(store: ExportStore):
    await store.register("job", status=JobStatus.RUNNING)
    async with open_update_buffer(store, capacity=2, flush_interval=3600) as buffer:
        for n in range(1, 10):  # the channel holds 2; the rest go to the overflow map
            buffer.report_nowait("job", 5.5 * n, "visuals", f"frame {n}")
        buffer.report_nowait("job", 50.1, "render", "frame 10")
        assert buffer.statistics().overflowed > 0
        failed = await buffer.finish("job", JobStatus.FAILED, error="simulated at 50.1%")
        await buffer.flush()  # nothing buffered lands on the terminal state
    assert (failed.percent, failed.stage, failed.message) == (50.1, "render", "frame 10")
    assert failed.status is JobStatus.FAILED
    assert await store.get("job") == failed


async def test_direct_sync_fails_at_the_report_whose_write_is_in_flight(
    store: ExportStore, clock: trio.testing.MockClock | None
):
    await store.register("job", status=JobStatus.RUNNING)
    async with open_direct_sync(store) as sync:
        sync.report_nowait("job", 20.0, "visuals", "frame 1")
        sync.report_nowait("job", 50.1, "render", "frame 2")
        failed = await sync.finish("job", JobStatus.FAILED, error="boom")
        await sync.flush()  # the in-flight writes land after it and are ignored
    assert (failed.percent, failed.stage, failed.message) == (50.1, "render", "frame 2")
    assert await store.get("job") == failed


@pytest.mark.parametrize("mode", ["buffer", "direct"])
async def test_completed_is_100_percent_with_the_last_stage(
    store: ExportStore, clock: trio.testing.MockClock | None, mode: str
):
    await store.register("job", status=JobStatus.RUNNING)
    opener = (
        open_update_buffer(store, flush_interval=3600)
        if mode == "buffer"
        else (open_direct_sync(store))
    )
    async with opener as sink:
        sink.report_nowait("job", 97.0, "mux", "frame 97")
        done = await sink.finish("job", JobStatus.COMPLETED, result={"ok": True})
    assert (done.percent, done.stage, done.message) == (100.0, "mux", "frame 97")
