"""The update buffer, in virtual time (``autojump_clock``): flushes, coalescing, terminal states.

Each test drives the buffer with reports and checks what reached the store, and when, through
``RecordingStore``, a ``MemoryStore`` that keeps every batch it is given.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
import trio
from progress_sync import (
    BatchResult,
    InvalidUpdateError,
    JobStatus,
    MemoryStore,
    ProgressUpdate,
    SinkClosedError,
    UnknownStatusError,
    open_update_buffer,
)
from trio.testing import wait_all_tasks_blocked


class RecordingStore(MemoryStore):
    """A MemoryStore that records each batch of progress it is asked to apply."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[list[ProgressUpdate]] = []

    async def apply_progress(self, updates: Sequence[ProgressUpdate]) -> BatchResult:
        self.batches.append(list(updates))
        return await super().apply_progress(updates)


@pytest.fixture
def recording_store() -> RecordingStore:
    return RecordingStore()


async def test_100_reports_for_one_job_within_an_interval_make_one_write_with_the_last_values(
    autojump_clock, recording_store
):
    await recording_store.register("a")
    async with open_update_buffer(recording_store, flush_interval=0.5) as buffer:
        for i in range(1, 101):
            buffer.report_nowait("a", float(i), f"stage {i}", f"message {i}")
        await trio.sleep(0.5)
        await wait_all_tasks_blocked()
        assert len(recording_store.batches) == 1
        [batch] = recording_store.batches
        assert [(u.job_id, u.percent, u.stage, u.message) for u in batch] == [
            ("a", 100.0, "stage 100", "message 100")
        ]
        snapshot = await recording_store.get("a")
        assert (snapshot.percent, snapshot.stage, snapshot.seq) == (100.0, "stage 100", 2)
        stats = buffer.statistics()
        assert stats.reports_received == 100
        assert stats.coalesced == 99
        assert stats.store_writes == 1
        assert stats.flushes == 1


async def test_reports_for_three_jobs_within_an_interval_make_one_write(
    autojump_clock, recording_store
):
    for job_id in "abc":
        await recording_store.register(job_id)
    writes_before = recording_store.statistics().writes
    async with open_update_buffer(recording_store, flush_interval=0.5) as buffer:
        for i in range(10):
            for job_id in "abc":
                buffer.report_nowait(job_id, i * 10.0, "work")
        await trio.sleep(0.5)
        await wait_all_tasks_blocked()
        assert len(recording_store.batches) == 1
        assert sorted(u.job_id for u in recording_store.batches[0]) == ["a", "b", "c"]
        assert recording_store.statistics().writes == writes_before + 1
        for job_id in "abc":
            assert (await recording_store.get(job_id)).percent == 90.0


async def test_a_single_report_reaches_the_store_within_one_flush_interval(autojump_clock, store):
    await store.register("a")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        await trio.sleep(0.3)  # mid-interval: the next flush is 0.2 s away
        reported_at = trio.current_time()
        buffer.report_nowait("a", 42.0, "render")
        async with store.subscribe("a") as subscription:
            first = await subscription.receive()
            assert first.percent == 0.0
            second = await subscription.receive()
        assert second.percent == 42.0
        assert trio.current_time() - reported_at <= 0.5


async def test_nothing_reported_means_no_store_write(autojump_clock, recording_store):
    async with open_update_buffer(recording_store, flush_interval=0.5):
        await trio.sleep(5)
    assert recording_store.batches == []


async def test_finish_is_visible_at_once_without_a_flush(autojump_clock, store):
    await store.register("a")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        async with store.subscribe("a") as subscription:
            await subscription.receive()
            started = trio.current_time()
            snapshot = await buffer.finish("a", "completed", result={"file": "a.mp4"})
            assert trio.current_time() == started
            assert snapshot.status is JobStatus.COMPLETED
            assert snapshot.percent == 100.0
            assert snapshot.result == {"file": "a.mp4"}
            # Subscribers were told before finish returned.
            assert subscription.receive_nowait() == snapshot
        assert await store.get("a") == snapshot


async def test_buffered_progress_never_overwrites_the_terminal_state(autojump_clock, store):
    await store.register("a")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        buffer.report_nowait("a", 40.0, "render")
        buffer.report_nowait("a", 45.0, "render", "almost")
        final = await buffer.finish("a", "failed", error="disk full")
        # The buffered progress went into the terminal write: the job shows where it stopped.
        assert (final.status, final.percent, final.message, final.error) == (
            JobStatus.FAILED,
            45.0,
            "almost",
            "disk full",
        )
        await trio.sleep(2)
    assert await store.get("a") == final


async def test_progress_reported_while_a_flush_is_writing_cannot_land_after_finish(autojump_clock):
    class SlowStore(MemoryStore):
        async def apply_progress(self, updates):
            await trio.sleep(0.2)  # a batch in flight when finish is called
            return await super().apply_progress(updates)

    store = SlowStore()
    await store.register("a")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        buffer.report_nowait("a", 10.0, "render")
        await trio.sleep(0.55)  # the flush has taken the batch and is writing it
        buffer.report_nowait("a", 20.0, "render")
        final = await buffer.finish("a", "cancelled")
        await trio.sleep(2)
    assert final.status is JobStatus.CANCELLED
    assert final.percent == 20.0
    assert await store.get("a") == final


async def test_progress_after_finish_is_ignored_and_counted(autojump_clock, store):
    await store.register("a")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        final = await buffer.finish("a", "completed")
        buffer.report_nowait("a", 10.0, "late")
        await trio.sleep(1)
    assert await store.get("a") == final
    assert store.statistics().ignored_terminal == 1


async def test_with_the_channel_full_the_latest_state_of_every_job_arrives(
    autojump_clock, recording_store
):
    jobs = [f"job-{i}" for i in range(20)]
    for job_id in jobs:
        await recording_store.register(job_id)
    async with open_update_buffer(recording_store, flush_interval=0.5, capacity=8) as buffer:
        for step in range(1, 51):
            for job_id in jobs:
                buffer.report_nowait(job_id, float(step), f"step {step}")
        stats = buffer.statistics()
        assert stats.overflowed == 50 * 20 - 8
        await trio.sleep(0.5)
        await wait_all_tasks_blocked()
    assert len(recording_store.batches) == 1
    for job_id in jobs:
        snapshot = await recording_store.get(job_id)
        assert (snapshot.percent, snapshot.stage) == (50.0, "step 50")


async def test_leaving_the_block_flushes_everything(autojump_clock, store):
    await store.register("a")
    await store.register("b")
    async with open_update_buffer(store, flush_interval=60) as buffer:
        buffer.report_nowait("a", 70.0, "render")
        buffer.report_nowait("b", 30.0, "mux")
    assert (await store.get("a")).percent == 70.0
    assert (await store.get("b")).percent == 30.0


async def test_cancellation_still_flushes_everything(autojump_clock, store):
    await store.register("a")
    with trio.move_on_after(1):
        async with open_update_buffer(store, flush_interval=60) as buffer:
            buffer.report_nowait("a", 70.0, "render")
            await trio.sleep_forever()
    assert (await store.get("a")).percent == 70.0


async def test_an_error_in_the_block_still_flushes_and_propagates(autojump_clock, store):
    await store.register("a")

    async def body():
        async with open_update_buffer(store, flush_interval=60) as buffer:
            buffer.report_nowait("a", 70.0, "render")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await body()
    assert (await store.get("a")).percent == 70.0


async def test_flushes_keep_a_fixed_schedule(autojump_clock):
    times = []

    class TimedStore(RecordingStore):
        async def apply_progress(self, updates):
            times.append(trio.current_time())
            return await super().apply_progress(updates)

    store = TimedStore()
    await store.register("a")
    start = trio.current_time()
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        await trio.sleep(0.25)
        for _ in range(4):  # reports at 0.25, 0.75, 1.25 and 1.75 s
            buffer.report_nowait("a", 1.0, "x")
            await trio.sleep(0.5)
    assert [round(t - start, 6) for t in times] == [0.5, 1.0, 1.5, 2.0]


async def test_updates_for_unknown_jobs_are_counted_by_the_store(autojump_clock, store):
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        buffer.report_nowait("ghost", 1.0, "x")
    assert store.statistics().unknown_job_updates == 1


async def test_report_rejects_bad_input_with_a_clear_error(autojump_clock, store):
    async with open_update_buffer(store) as buffer:
        with pytest.raises(
            InvalidUpdateError, match="percent: must be a finite number from 0 to 100"
        ):
            buffer.report_nowait("a", 101.0, "x")
        with pytest.raises(InvalidUpdateError, match="percent"):
            buffer.report_nowait("a", float("nan"), "x")
        with pytest.raises(InvalidUpdateError, match="percent"):
            buffer.report_nowait("a", float("inf"), "x")
        with pytest.raises(
            InvalidUpdateError, match="percent: must be a number from 0 to 100, not str"
        ):
            buffer.report_nowait("a", "50", "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidUpdateError, match="percent: must be a number"):
            buffer.report_nowait("a", True, "x")  # type: ignore[arg-type]
        with pytest.raises(InvalidUpdateError, match="stage: must be a string"):
            buffer.report_nowait("a", 1.0, None)  # type: ignore[arg-type]
        with pytest.raises(InvalidUpdateError, match="stage: must be at most 200 characters"):
            buffer.report_nowait("a", 1.0, "x" * 201)
        with pytest.raises(InvalidUpdateError, match="message: must be at most 2000 characters"):
            buffer.report_nowait("a", 1.0, "x", "m" * 2001)
        # one job-id rule everywhere (check_job_id), here as at registration and over HTTP
        for bad_id in ("", "bad id!", "-starts-with-a-dash", "x" * 129):
            with pytest.raises(InvalidUpdateError, match="jobId: must be 1-128 letters"):
                buffer.report_nowait(bad_id, 1.0, "x")
        buffer.report_nowait("a", 50, "int percent is fine")
        assert buffer.statistics().reports_received == 1


async def test_finish_rejects_non_terminal_and_unknown_statuses(autojump_clock, store):
    await store.register("a")
    async with open_update_buffer(store) as buffer:
        with pytest.raises(InvalidUpdateError, match="finish takes completed, failed or cancelled"):
            await buffer.finish("a", "running")
        with pytest.raises(UnknownStatusError, match="unknown status 'exploded'"):
            await buffer.finish("a", "exploded")
        with pytest.raises(InvalidUpdateError, match="result: must be JSON-encodable"):
            await buffer.finish("a", "completed", result={"x": object()})
        assert not (await store.get("a")).is_terminal


async def test_reporting_after_the_block_raises_buffer_closed(autojump_clock, store):
    async with open_update_buffer(store) as buffer:
        pass
    with pytest.raises(SinkClosedError, match="report inside its async with block"):
        buffer.report_nowait("a", 1.0, "x")
    with pytest.raises(SinkClosedError, match="finish jobs inside its async with block"):
        await buffer.finish("a", "completed")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flush_interval": 0}, r"flush_interval must be a number of seconds from 0\.001 up"),
        ({"flush_interval": 0.0001}, r"flush_interval must be a number of seconds from 0\.001"),
        ({"flush_interval": float("inf")}, "flush_interval must be a number of seconds from"),
        ({"flush_interval": True}, "flush_interval must be a number of seconds from"),
        ({"capacity": 0}, "capacity must be a whole number of reports >= 1"),
        ({"capacity": 1.5}, "capacity must be a whole number of reports >= 1"),
        ({"shutdown_timeout": -1}, "shutdown_timeout must be a positive number of seconds"),
    ],
)
async def test_bad_settings_are_refused(store, kwargs, message):
    with pytest.raises(ValueError, match=message):
        async with open_update_buffer(store, **kwargs):
            pass


async def test_store_unavailable_keeps_the_latest_state_and_retries(autojump_clock):
    from progress_sync import StoreUnavailableError

    class FlakyStore(MemoryStore):
        failures = 2

        async def apply_progress(self, updates):
            if self.failures:
                self.failures -= 1
                raise StoreUnavailableError("redis is down")
            return await super().apply_progress(updates)

    store = FlakyStore()
    await store.register("a")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        buffer.report_nowait("a", 10.0, "x")
        await trio.sleep(0.5)
        await wait_all_tasks_blocked()
        buffer.report_nowait("a", 20.0, "x")
        # Retries back off: the next flush is 2 x 0.5 s after the failed one, then 4 x 0.5 s.
        await trio.sleep(1.0)
        await wait_all_tasks_blocked()
        assert buffer.statistics().failed_writes == 2
        assert (await store.get("a")).percent == 0.0
        await trio.sleep(1.9)
        await wait_all_tasks_blocked()
        assert (await store.get("a")).percent == 0.0
        await trio.sleep(0.1)
        await wait_all_tasks_blocked()
        assert (await store.get("a")).percent == 20.0
        assert buffer.statistics().pending == 0


async def test_coalescing_keeps_the_newest_report_by_reported_at(autojump_clock, recording_store):
    # Two producers' requests for one job overtook each other: the older report arrived last.
    await recording_store.register("a")
    await recording_store.register("b")
    now = time.time()
    async with open_update_buffer(recording_store, flush_interval=0.5, capacity=2) as buffer:
        buffer.report_nowait("a", 60.0, "newer", reported_at=now + 2)
        buffer.report_nowait("a", 50.0, "older", reported_at=now + 1)
        # The channel is full now: these go to the overflow map, newest kept there too.
        buffer.report_nowait("b", 80.0, "newer", reported_at=now + 2)
        buffer.report_nowait("b", 70.0, "older", reported_at=now + 1)
        assert buffer.statistics().reports_received == 4
        await trio.sleep(0.5)
        await wait_all_tasks_blocked()
    [batch] = recording_store.batches
    assert sorted((u.job_id, u.stage) for u in batch) == [("a", "newer"), ("b", "newer")]


async def test_a_report_the_store_refuses_is_dropped_and_the_others_still_flow(
    autojump_clock, caplog
):
    class StricterStore(MemoryStore):
        async def apply_progress(self, updates):
            if any(update.stage == "bad" for update in updates):
                # As a store with its own, stricter rule would.
                raise InvalidUpdateError("stage", "refused by the store")
            return await super().apply_progress(updates)

    store = StricterStore()
    await store.register("a")
    await store.register("b")
    async with open_update_buffer(store, flush_interval=0.5) as buffer:
        buffer.report_nowait("a", 10.0, "bad")
        buffer.report_nowait("b", 20.0, "good")
        await trio.sleep(0.5)
        await wait_all_tasks_blocked()
        assert (await store.get("b")).percent == 20.0
        assert (await store.get("a")).percent == 0.0
        assert buffer.statistics().pending == 0
        assert "the store refused the report for job a, dropped" in caplog.text
        buffer.report_nowait("a", 11.0, "fine")
    assert (await store.get("a")).percent == 11.0
