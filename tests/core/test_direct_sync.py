"""Direct sync, the benchmarks' baseline: one store write per report."""

from __future__ import annotations

import pytest
import trio
from progress_sync import (
    InvalidUpdateError,
    JobStatus,
    SinkClosedError,
    SyncMode,
    open_direct_sync,
    open_update_sink,
)


async def test_every_report_is_its_own_store_write(autojump_clock, store):
    await store.register("a")
    async with open_direct_sync(store) as sync:
        writes = store.statistics().writes
        for i in range(1, 11):
            sync.report_nowait("a", float(i), "x")
        await trio.testing.wait_all_tasks_blocked()
        assert store.statistics().writes == writes + 10
        assert sync.statistics().store_writes == 10
        final = await sync.finish("a", "Succeeded")
    assert final.status is JobStatus.COMPLETED
    assert sync.statistics().terminal_writes == 1


async def test_leaving_the_block_waits_for_writes_in_flight(store):
    await store.register("a")
    async with open_direct_sync(store) as sync:
        sync.report_nowait("a", 33.0, "x")
    assert (await store.get("a")).percent == 33.0


async def test_direct_sync_errors(store):
    await store.register("a")
    async with open_direct_sync(store) as sync:
        with pytest.raises(InvalidUpdateError, match="percent"):
            sync.report_nowait("a", -1.0, "x")
        with pytest.raises(InvalidUpdateError, match="jobId"):
            sync.report_nowait(None, 1.0, "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidUpdateError, match="finish takes completed, failed or cancelled"):
            await sync.finish("a", "queued")
    with pytest.raises(SinkClosedError, match="direct sync is closed"):
        sync.report_nowait("a", 1.0, "x")
    with pytest.raises(SinkClosedError, match="direct sync is closed"):
        await sync.finish("a", "completed")


async def test_open_update_sink_picks_the_mode(store):
    async with open_update_sink(store, "direct") as direct:
        assert type(direct).__name__ == "DirectSync"
    async with open_update_sink(store, SyncMode.BATCHED, flush_interval=0.1) as batched:
        assert type(batched).__name__ == "UpdateBuffer"
        assert batched.flush_interval == 0.1
    with pytest.raises(ValueError, match="sync mode must be 'batched' or 'direct', not 'fast'"):
        async with open_update_sink(store, "fast"):
            pass
