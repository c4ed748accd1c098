"""The export store's rules, whatever the caller does (in-memory store, virtual time)."""

from __future__ import annotations

import time

import pytest
import trio
from trio.testing import wait_all_tasks_blocked

from pipeline import (
    InvalidUpdateError,
    JobExistsError,
    JobNotFoundError,
    JobStatus,
    MemoryStore,
    ProgressUpdate,
    RegistrationTimeoutError,
)


def update(
    job_id: str, percent: float, stage: str = "work", at: float | None = None
) -> ProgressUpdate:
    return ProgressUpdate(job_id, percent, stage, None, time.time() if at is None else at)


async def test_register_with_the_real_initial_status(store):
    queued = await store.register("q")
    running = await store.register("r", status=JobStatus.RUNNING, stage="warming up")
    assert (queued.status, queued.seq, queued.percent) == (JobStatus.QUEUED, 1, 0.0)
    assert (running.status, running.stage) == (JobStatus.RUNNING, "warming up")
    assert queued.to_dict()["createdAt"].endswith("Z")


async def test_register_refuses_duplicates_terminal_statuses_and_bad_ids(store):
    await store.register("a")
    with pytest.raises(JobExistsError, match="job 'a' is registered already; choose another id"):
        await store.register("a")
    with pytest.raises(
        InvalidUpdateError, match="status: a job is registered as queued or running"
    ):
        await store.register("b", status=JobStatus.COMPLETED)
    for bad in ("", "has space", "-leading-dash", "x" * 129, "new\nline"):
        with pytest.raises(InvalidUpdateError, match="jobId: must be 1-128 letters"):
            await store.register(bad)
    assert store.statistics().jobs == 1


async def test_seq_grows_by_one_with_every_change(store):
    await store.register("a")
    for i in range(1, 4):
        await store.apply_progress([update("a", i * 10.0)])
    final = await store.finish("a", JobStatus.COMPLETED)
    assert final.seq == 5
    assert final.percent == 100.0


async def test_progress_moves_a_queued_job_to_running(store):
    await store.register("a")
    await store.apply_progress([update("a", 1.0)])
    assert (await store.get("a")).status is JobStatus.RUNNING


async def test_an_update_older_than_the_stored_one_is_ignored_and_counted(store):
    await store.register("a")
    now = time.time()
    await store.apply_progress([update("a", 50.0, at=now + 10)])
    result = await store.apply_progress([update("a", 40.0, at=now + 5)])
    assert result.ignored_stale == 1
    assert result.applied == 0
    snapshot = await store.get("a")
    assert (snapshot.percent, snapshot.seq) == (50.0, 2)
    assert store.statistics().ignored_stale == 1


async def test_the_first_terminal_state_wins_and_nothing_changes_the_job_after(store):
    await store.register("a")
    first = await store.finish("a", JobStatus.FAILED, error="disk full")
    second = await store.finish("a", JobStatus.COMPLETED, result={"x": 1})
    assert second == first
    result = await store.apply_progress([update("a", 99.0)])
    assert result.ignored_terminal == 1
    assert await store.get("a") == first
    assert store.statistics().ignored_terminal == 2


async def test_invalid_percent_is_rejected_and_nothing_in_the_batch_is_applied(store):
    await store.register("a")
    await store.register("b")
    for bad in (-0.1, 100.5, float("nan"), float("inf"), float("-inf")):
        with pytest.raises(
            InvalidUpdateError, match="percent: must be a finite number from 0 to 100"
        ):
            await store.apply_progress([update("a", 10.0), update("b", bad)])
    assert (await store.get("a")).seq == 1
    assert (await store.get("b")).seq == 1


async def test_one_batch_is_one_write_with_one_notification_per_changed_job(store):
    for job_id in "abc":
        await store.register(job_id)
    async with store.subscribe("a") as sub_a, store.subscribe("b") as sub_b:
        writes = store.statistics().writes
        result = await store.apply_progress([update("a", 1.0), update("b", 2.0), update("c", 3.0)])
        assert result.applied == 3
        assert store.statistics().writes == writes + 1
        assert store.statistics().notifications == 2
        # The unread initial snapshot was conflated: each subscriber gets the latest only.
        assert (await sub_a.receive()).percent == 1.0
        assert (await sub_b.receive()).percent == 2.0
        assert sub_a.conflated == sub_b.conflated == 1


async def test_updates_for_unknown_jobs_are_reported_not_applied(store):
    result = await store.apply_progress([update("ghost", 1.0)])
    assert result.unknown_jobs == ("ghost",)
    assert store.statistics().unknown_job_updates == 1


async def test_finish_errors(store):
    with pytest.raises(JobNotFoundError, match="job 'ghost' is not registered"):
        await store.finish("ghost", JobStatus.COMPLETED)
    await store.register("a")
    with pytest.raises(InvalidUpdateError, match="status: must be completed, failed or cancelled"):
        await store.finish("a", JobStatus.RUNNING)
    with pytest.raises(InvalidUpdateError, match="error: must be at most 2000 characters"):
        await store.finish("a", JobStatus.FAILED, error="e" * 2001)
    with pytest.raises(InvalidUpdateError, match="result: must be JSON-encodable"):
        await store.finish("a", JobStatus.COMPLETED, result=float("nan"))
    assert not (await store.get("a")).is_terminal


async def test_get_and_subscribe_unknown_jobs_raise(store):
    with pytest.raises(JobNotFoundError, match="register it first"):
        await store.get("ghost")
    with pytest.raises(JobNotFoundError):
        async with store.subscribe("ghost"):
            pass


async def test_a_subscriber_gets_the_current_snapshot_first(store):
    await store.register("a")
    await store.apply_progress([update("a", 30.0)])
    async with store.subscribe("a") as subscription:
        first = await subscription.receive()
        assert (first.percent, first.seq) == (30.0, 2)
        with pytest.raises(trio.WouldBlock):
            subscription.receive_nowait()


async def test_a_slow_subscriber_gets_only_the_latest_then_the_terminal_snapshot(store):
    await store.register("a")
    async with store.subscribe("a") as subscription:
        for i in range(1, 1001):
            await store.apply_progress([update("a", i / 10)])
        latest = await subscription.receive()
        assert latest.percent == 100.0
        assert subscription.conflated == 1000  # the initial snapshot and 999 updates replaced
        await store.finish("a", JobStatus.CANCELLED)
        received = [snapshot async for snapshot in subscription]
        assert [s.status for s in received] == [JobStatus.CANCELLED]
        with pytest.raises(trio.EndOfChannel):
            subscription.receive_nowait()


async def test_terminal_snapshot_is_last_even_when_unread_progress_is_pending(store):
    await store.register("a")
    async with store.subscribe("a") as subscription:
        await store.apply_progress([update("a", 10.0)])
        await store.finish("a", JobStatus.COMPLETED)
        await store.apply_progress([update("a", 20.0)])
        received = [snapshot async for snapshot in subscription]
        assert [s.status for s in received] == [JobStatus.COMPLETED]


async def test_subscribing_at_the_moment_a_job_finishes_still_ends_with_its_terminal_snapshot(
    store, nursery
):
    await store.register("a")
    seen: list[list[JobStatus]] = []

    async def subscriber():
        async with store.subscribe("a") as subscription:
            seen.append([snapshot.status async for snapshot in subscription])

    # Subscribers start around the terminal write: before, during and after.
    for _ in range(3):
        nursery.start_soon(subscriber)
    await store.finish("a", JobStatus.COMPLETED)
    for _ in range(3):
        nursery.start_soon(subscriber)
    await wait_all_tasks_blocked()
    assert len(seen) == 6
    assert all(statuses[-1] is JobStatus.COMPLETED for statuses in seen)


async def test_closing_a_subscription_leaves_the_store(store):
    await store.register("a")
    async with store.subscribe("a"):
        assert store.statistics().subscribers == 1
    assert store.statistics().subscribers == 0


async def test_closed_subscription_refuses_to_receive(store):
    await store.register("a")
    async with store.subscribe("a") as subscription:
        pass
    with pytest.raises(trio.ClosedResourceError, match="the subscription was closed"):
        await subscription.receive()


async def test_wait_registered_returns_when_the_job_is_registered(autojump_clock, store, nursery):
    async def register_later():
        await trio.sleep(3)
        await store.register("late")

    nursery.start_soon(register_later)
    start = trio.current_time()
    snapshot = await store.wait_registered("late", timeout=20)
    assert snapshot.job_id == "late"
    assert trio.current_time() - start == pytest.approx(3)


async def test_wait_registered_times_out_and_leaves_nothing_behind(autojump_clock, store):
    start = trio.current_time()
    with pytest.raises(
        RegistrationTimeoutError, match="job 'ghost' was not registered within 20 s"
    ):
        await store.wait_registered("ghost", timeout=20)
    assert trio.current_time() - start == pytest.approx(20)
    assert store._registration_waiters == {}


async def test_terminal_jobs_are_dropped_after_the_retention_time():
    now = [1000.0]
    store = MemoryStore(retention=60, clock=lambda: now[0])
    await store.register("old")
    await store.finish("old", JobStatus.COMPLETED)
    await store.register("running")
    now[0] += 61
    await store.register("new")
    with pytest.raises(JobNotFoundError):
        await store.get("old")
    assert (await store.get("running")).status is JobStatus.QUEUED


def test_retention_must_be_finite_and_not_negative():
    with pytest.raises(ValueError, match="retention must be a finite number of seconds >= 0"):
        MemoryStore(retention=-1)


async def test_list_jobs_pages_newest_first_with_a_status_filter(store):
    for i in range(5):
        await store.register(f"job-{i}")
    await store.finish("job-1", JobStatus.COMPLETED)
    page, total = await store.list_jobs(offset=1, limit=2)
    assert [s.job_id for s in page] == ["job-3", "job-2"]
    assert total == 5
    completed, total = await store.list_jobs(status=JobStatus.COMPLETED)
    assert ([s.job_id for s in completed], total) == (["job-1"], 1)
    with pytest.raises(ValueError, match="offset and limit must be >= 0"):
        await store.list_jobs(offset=-1)
