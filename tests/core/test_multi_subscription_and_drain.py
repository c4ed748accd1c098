"""What issue 3 added to the pipeline: multi-job subscriptions, a drain task that survives a
failing flush, the flush hook, ``DirectSync.flush`` and ``JobRunner.cancel_all``. Virtual time."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack

import pytest
import trio
import trio.testing
from progress_sync import (
    DEMO_KIND,
    JobStatus,
    MemoryStore,
    MultiSubscription,
    open_direct_sync,
    open_job_runner,
    open_update_buffer,
)


async def open_subscriptions(stack: AsyncExitStack, store: MemoryStore, *job_ids: str):
    return [await stack.enter_async_context(store.subscribe(job_id)) for job_id in job_ids]


async def test_multi_subscription_serves_jobs_in_turn_each_conflated(store, autojump_clock):
    async with AsyncExitStack() as stack:
        for job_id in ("a", "b"):
            await store.register(job_id)
        subs = await open_subscriptions(stack, store, "a", "b")
        multi = MultiSubscription(subs)
        assert [(await multi.receive()).job_id for _ in range(2)] == ["a", "b"]
        with pytest.raises(trio.WouldBlock):
            multi.receive_nowait()
        async with open_update_buffer(store, flush_interval=0.1) as buffer:
            for percent in range(1, 50):
                buffer.report_nowait("a", float(percent), "chatty")
                buffer.report_nowait("b", 1.0, "quiet")
                await buffer.flush()
        # 49 changes of each job while nobody received: one pending snapshot per job.
        first, second = multi.receive_nowait(), multi.receive_nowait()
        assert {first.job_id, second.job_id} == {"a", "b"}
        assert first.job_id != second.job_id
        assert subs[0].conflated == 48
        with pytest.raises(trio.WouldBlock):
            multi.receive_nowait()


async def test_multi_subscription_wakes_on_any_job_and_ends_after_every_terminal(
    store, autojump_clock
):
    async with AsyncExitStack() as stack, trio.open_nursery() as nursery:
        for job_id in ("a", "b"):
            await store.register(job_id)
        multi = MultiSubscription(await open_subscriptions(stack, store, "a", "b"))
        multi.receive_nowait()
        multi.receive_nowait()
        got = []

        async def collect():
            async for snapshot in multi:
                got.append((snapshot.job_id, snapshot.status))

        nursery.start_soon(collect)
        await trio.testing.wait_all_tasks_blocked()
        await store.finish("b", JobStatus.FAILED, error="x")
        await trio.testing.wait_all_tasks_blocked()
        assert got == [("b", JobStatus.FAILED)]
        assert not multi.ended
        await store.finish("a", JobStatus.COMPLETED)
    assert got[-1] == ("a", JobStatus.COMPLETED)
    assert multi.ended
    with pytest.raises(trio.EndOfChannel):
        multi.receive_nowait()


async def test_multi_subscription_refuses_two_subscriptions_of_one_job(store):
    await store.register("a")
    async with store.subscribe("a") as one, store.subscribe("a") as two:
        with pytest.raises(ValueError, match="one subscription per job"):
            MultiSubscription([one, two])


class BrokenStore(MemoryStore):
    failures = 0

    async def apply_progress(self, updates):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("bug in the store")
        return await super().apply_progress(updates)


async def test_the_drain_task_survives_failing_flushes_and_delivers_later(autojump_clock, caplog):
    store = BrokenStore()
    await store.register("job-1")
    store.failures = 2
    durations = []
    with caplog.at_level(logging.ERROR, logger="progress_sync._buffer"):
        async with open_update_buffer(store, flush_interval=1.0, on_flush=durations.append) as b:
            b.report_nowait("job-1", 10.0, "one")
            await trio.sleep(1.5)
            stats = b.statistics()
            assert stats.last_error == "RuntimeError: bug in the store"
            assert stats.draining
            assert stats.failed_writes == 1
            b.report_nowait("job-1", 20.0, "two")  # coalesced with the kept batch
            # Retried with the store's backoff: 2 s after the first failure (fails again),
            # then 4 s after that.
            await trio.sleep(6.0)
            assert b.statistics().last_error is None
            assert (await store.get("job-1")).percent == 20.0
            # on_flush was told of the one flush that wrote, with the duration it took
            assert durations == [b.statistics().last_flush_duration]
        assert not b.statistics().draining
    logged = [r for r in caplog.records if "flush of the update buffer failed" in r.message]
    assert len(logged) == 2


async def test_flush_raises_an_unexpected_error_after_counting_it(autojump_clock):
    store = BrokenStore()
    await store.register("job-1")
    async with open_update_buffer(store, flush_interval=60.0) as buffer:
        buffer.report_nowait("job-1", 10.0, "one")
        store.failures = 1
        with pytest.raises(RuntimeError, match="bug in the store"):
            await buffer.flush()
        assert buffer.statistics().failed_writes == 1
        assert buffer.statistics().pending == 1
    assert (await store.get("job-1")).percent == 10.0  # the final flush wrote it


async def test_direct_sync_flush_returns_once_every_write_is_done(store, autojump_clock):
    await store.register("job-1")
    async with open_direct_sync(store) as direct:
        for percent in (1.0, 2.0, 3.0):
            direct.report_nowait("job-1", percent, "w")
        assert direct.statistics().pending == 3
        await direct.flush()
        assert direct.statistics().pending == 0
        assert direct.statistics().store_writes == 3
        await direct.flush()  # nothing in flight: returns at once


async def test_cancel_all_stores_every_job_cancelled_before_returning(store, autojump_clock):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}, max_concurrent=1) as runner,
    ):
        running = await runner.submit("demo", {"durationS": 100})
        queued = await runner.submit("demo", {"durationS": 100})
        await trio.sleep(1.0)
        await runner.cancel_all()
        assert runner.active_jobs == 0
        for snapshot in (running, queued):
            assert (await store.get(snapshot.job_id)).status is JobStatus.CANCELLED
