"""The export store contract: every rule of ``ExportStore``, run against BOTH stores.

``store`` here is a ``MemoryStore`` or a ``RedisStore`` on the shared test Redis (own prefix,
cleaned up). Both get the same fake wall clock (``wall``), so retention is tested without
waiting. Timing tests use virtual time on the memory store (``clock``: trio's autojump clock)
and the real clock on Redis, whose sockets the autojump clock would jump over.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing
from _redis import delete_prefix, require_shared_redis, unique_prefix
from progress_sync import (
    MAX_MESSAGE_LENGTH,
    MAX_STAGE_LENGTH,
    ExportStore,
    InvalidUpdateError,
    JobExistsError,
    JobNotFoundError,
    JobStatus,
    MemoryStore,
    ProgressUpdate,
    RegistrationTimeoutError,
    open_redis_store,
)


class WallClock:
    """A settable stand-in for ``time.time``."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def wall() -> WallClock:
    return WallClock()


@pytest.fixture
def clock(kind: str) -> trio.testing.MockClock | None:
    """trio's autojump clock for the memory store; None (the real clock) for Redis."""
    return trio.testing.MockClock(autojump_threshold=0) if kind == "memory" else None


@pytest.fixture
async def store(kind: str, wall: WallClock) -> AsyncIterator[ExportStore]:
    if kind == "memory":
        yield MemoryStore(retention=60, clock=wall)
        return
    url, prefix = require_shared_redis(), unique_prefix()
    try:
        async with open_redis_store(url, prefix=prefix, retention=60, clock=wall) as redis_store:
            yield redis_store
    finally:
        with trio.CancelScope(shield=True):
            await delete_prefix(url, prefix)


def update(
    job_id: str,
    percent: float,
    stage: str = "work",
    message: str | None = None,
    *,
    at: float | None = None,
) -> ProgressUpdate:
    return ProgressUpdate(job_id, percent, stage, message, time.time() if at is None else at)


# -- register ------------------------------------------------------------------------------


async def test_register_gives_seq_1_and_the_initial_state(store: ExportStore, wall: WallClock):
    snapshot = await store.register("job-1", stage="waiting", message="in line", kind="demo")
    assert snapshot.seq == 1
    assert snapshot.status is JobStatus.QUEUED
    assert snapshot.percent == 0.0
    assert (snapshot.stage, snapshot.message, snapshot.kind) == ("waiting", "in line", "demo")
    assert snapshot.created_at == snapshot.updated_at == wall.now
    assert await store.get("job-1") == snapshot
    running = await store.register("job-2", status=JobStatus.RUNNING)
    assert running.status is JobStatus.RUNNING
    assert running.kind is None
    assert running.message is None


async def test_register_refuses_a_taken_id_a_terminal_status_and_a_bad_id(store: ExportStore):
    await store.register("job-1")
    with pytest.raises(JobExistsError, match="'job-1' is registered already"):
        await store.register("job-1")
    with pytest.raises(InvalidUpdateError, match="registered as queued or running, not completed"):
        await store.register("job-2", status=JobStatus.COMPLETED)
    with pytest.raises(InvalidUpdateError, match="jobId: must be 1-128 letters"):
        await store.register("bad id")
    with pytest.raises(InvalidUpdateError, match="stage: must be at most"):
        await store.register("job-3", stage="x" * (MAX_STAGE_LENGTH + 1))
    with pytest.raises(JobNotFoundError):
        await store.get("job-2")


# -- progress --------------------------------------------------------------------------------


async def test_each_change_adds_one_to_seq_and_progress_moves_queued_to_running(
    store: ExportStore,
):
    await store.register("job-1")
    result = await store.apply_progress([update("job-1", 10, "render", "frame 1")])
    assert (result.applied, result.ignored_terminal, result.ignored_stale) == (1, 0, 0)
    snapshot = await store.get("job-1")
    assert (snapshot.seq, snapshot.status, snapshot.percent) == (2, JobStatus.RUNNING, 10.0)
    assert (snapshot.stage, snapshot.message) == ("render", "frame 1")
    await store.apply_progress([update("job-1", 20.5)])
    snapshot = await store.get("job-1")
    assert (snapshot.seq, snapshot.percent, snapshot.message) == (3, 20.5, None)
    assert [job.job_id for job in (await store.list_jobs(status=JobStatus.RUNNING))[0]] == ["job-1"]
    assert (await store.list_jobs(status=JobStatus.QUEUED))[1] == 0


async def test_a_job_twice_in_one_batch_is_applied_in_order(store: ExportStore):
    await store.register("job-1")
    now = time.time()
    result = await store.apply_progress(
        [update("job-1", 30, at=now), update("job-1", 40, at=now + 0.001)]
    )
    assert result.applied == 2
    snapshot = await store.get("job-1")
    assert (snapshot.seq, snapshot.percent) == (3, 40.0)


@pytest.mark.slow
async def test_a_batch_writes_many_jobs_and_reports_unknown_ones(store: ExportStore):
    for number in range(5):
        await store.register(f"job-{number}")
    result = await store.apply_progress(
        [update(f"job-{number}", number * 10.0) for number in range(5)]
        + [update("ghost", 50), update("phantom", 60)]
    )
    assert result.applied == 5
    assert sorted(result.unknown_jobs) == ["ghost", "phantom"]
    assert [(await store.get(f"job-{n}")).percent for n in range(5)] == [0, 10, 20, 30, 40]
    assert store.statistics().unknown_job_updates == 2


async def test_an_update_older_than_the_stored_state_is_ignored(store: ExportStore):
    await store.register("job-1")
    now = time.time()
    await store.apply_progress([update("job-1", 50, "late", at=now + 10)])
    result = await store.apply_progress([update("job-1", 40, "early", at=now + 5)])
    assert (result.applied, result.ignored_stale) == (0, 1)
    snapshot = await store.get("job-1")
    assert (snapshot.seq, snapshot.percent, snapshot.stage) == (2, 50.0, "late")
    # An equal timestamp is not older: it is applied.
    assert (await store.apply_progress([update("job-1", 55, at=now + 10)])).applied == 1
    assert store.statistics().ignored_stale == 1


async def test_the_first_update_is_never_stale_whatever_the_producers_clock(store: ExportStore):
    # A producer whose clock is a minute behind the server's still moves a new job.
    await store.register("job-1")
    behind = time.time() - 60
    assert (await store.apply_progress([update("job-1", 10, at=behind)])).applied == 1
    assert (await store.apply_progress([update("job-1", 20, at=behind + 1)])).applied == 1
    assert (await store.get("job-1")).percent == 20.0
    await store.register("job-2")
    final = await store.finish(
        "job-2", JobStatus.FAILED, error="x", last_progress=update("job-2", 30, at=behind)
    )
    assert final.percent == 30.0


async def test_a_cancelled_job_keeps_its_reason_and_a_completed_one_none(store: ExportStore):
    await store.register("job-1")
    await store.register("job-2")
    cancelled = await store.finish("job-1", JobStatus.CANCELLED, error="user asked")
    completed = await store.finish("job-2", JobStatus.COMPLETED, error="ignored")
    assert (cancelled.error, completed.error) == ("user asked", None)
    assert (await store.get("job-1")).error == "user asked"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("percent", "reason"),
    [
        (100.5, "from 0 to 100, not 100.5"),
        (-1, "from 0 to 100, not -1.0"),
        (math.nan, "not nan"),
        (math.inf, "not inf"),
        (True, "not bool"),
        ("50", "not str"),
    ],
)
async def test_an_invalid_percent_is_rejected_and_nothing_in_the_batch_is_applied(
    store: ExportStore, percent: object, reason: str
):
    await store.register("job-1")
    await store.register("job-2")
    bad = ProgressUpdate("job-2", percent, "x", None, time.time())  # type: ignore[arg-type]
    with pytest.raises(InvalidUpdateError, match=f"percent: must be a .*{reason}"):
        await store.apply_progress([update("job-1", 10), bad])
    assert (await store.get("job-1")).seq == 1
    assert (await store.get("job-2")).seq == 1


async def test_over_long_text_is_rejected(store: ExportStore):
    await store.register("job-1")
    with pytest.raises(InvalidUpdateError, match=f"stage: must be at most {MAX_STAGE_LENGTH}"):
        await store.apply_progress([update("job-1", 1, "s" * (MAX_STAGE_LENGTH + 1))])
    with pytest.raises(InvalidUpdateError, match=f"message: must be at most {MAX_MESSAGE_LENGTH}"):
        await store.apply_progress([update("job-1", 1, "s", "m" * (MAX_MESSAGE_LENGTH + 1))])
    assert (await store.get("job-1")).seq == 1


async def test_text_round_trips_unchanged(store: ExportStore):
    await store.register("job-1")
    stage, message = 'ünïcödé ✓ "quoted" \\ /', "line 1\nline 2\r\n\ttab {json} [1]"
    await store.apply_progress([update("job-1", 33.3, stage, message)])
    snapshot = await store.get("job-1")
    assert (snapshot.stage, snapshot.message, snapshot.percent) == (stage, message, 33.3)


# -- clean numbers, monotonic percent, rate and time left -------------------------------------


async def test_percent_is_rounded_to_hundredths_everywhere(store: ExportStore):
    await store.register("job-1")
    await store.apply_progress([update("job-1", 13.469999999999999)])
    assert (await store.get("job-1")).percent == 13.47
    assert '"percent":13.47,' in (await store.get("job-1")).json_text
    await store.apply_progress([update("job-1", 33.333333333333336)])
    assert (await store.get("job-1")).percent == 33.33
    last = ProgressUpdate("job-1", 66.66666666666667, "end", None, time.time() + 1)
    failed = await store.finish("job-1", JobStatus.FAILED, error="x", last_progress=last)
    assert failed.percent == 66.67


async def test_a_lower_percent_keeps_the_higher_one_unless_the_report_resets(
    store: ExportStore,
):
    await store.register("job-1")
    at = time.time()
    seen = []
    for n, percent in enumerate((20.0, 80.0, 40.0)):
        await store.apply_progress([update("job-1", percent, f"step {n}", at=at + n)])
        seen.append(await store.get("job-1"))
    assert [s.percent for s in seen] == [20.0, 80.0, 80.0]
    assert seen[-1].stage == "step 2"  # the rest of the report is applied
    assert [s.attempt for s in seen] == [1, 1, 1]
    assert store.statistics().lower_percent_kept == 1
    retry = ProgressUpdate("job-1", 5.0, "retry", None, at + 3, reset=True)
    await store.apply_progress([retry])
    restarted = await store.get("job-1")
    assert (restarted.percent, restarted.attempt, restarted.stage) == (5.0, 2, "retry")
    assert restarted.rate is None  # the rate starts over with the new attempt
    assert restarted.to_dict()["attempt"] == 2
    await store.apply_progress([update("job-1", 3.0, at=at + 4)])
    assert (await store.get("job-1")).percent == 5.0
    # The pending report folded into a terminal state follows the same rule.
    lower = ProgressUpdate("job-1", 1.0, "end", None, at + 5)
    failed = await store.finish("job-1", JobStatus.FAILED, error="x", last_progress=lower)
    assert (failed.percent, failed.stage, failed.attempt) == (5.0, "end", 2)


async def test_rate_and_eta_converge_on_a_steady_job(store: ExportStore):
    await store.register("job-1", status=JobStatus.RUNNING)
    at = time.time()
    snapshots = []
    for step in range(0, 41):  # 2 %/s, one report every 0.5 s, for 20 s
        await store.apply_progress([update("job-1", step * 1.0, at=at + step * 0.5)])
        snapshots.append(await store.get("job-1"))
    assert snapshots[1].rate is None  # not enough history yet
    assert snapshots[1].eta_seconds is None
    assert snapshots[3].eta_seconds is None  # 2 s of history is needed
    assert snapshots[4].eta_seconds == 48.0  # (100 - 4) / 2
    last = snapshots[-1]
    assert last.rate == 2.0
    assert last.eta_seconds == 30.0  # (100 - 40) / 2
    data = last.to_dict()
    assert (data["rate"], data["etaSeconds"]) == (2.0, 30.0)
    done = await store.finish("job-1", JobStatus.COMPLETED)
    assert (done.rate, done.eta_seconds) == (None, None)


async def test_eta_does_not_swing_when_a_job_pauses_and_resumes(store: ExportStore):
    await store.register("job-1", status=JobStatus.RUNNING)
    at, percent, t = time.time(), 0.0, 0.0
    etas: list[float | None] = []

    async def run(seconds: float, speed: float) -> None:
        nonlocal percent, t
        for _ in range(int(seconds * 2)):
            t += 0.5
            percent += speed * 0.5
            await store.apply_progress([update("job-1", percent, at=at + t)])
            etas.append((await store.get("job-1")).eta_seconds)

    await run(10, 1.0)  # 1 %/s
    before = etas[-1]
    assert before is not None
    assert 89.0 <= before <= 91.0
    await run(20, 0.0)  # paused: no ETA rather than a growing one
    assert etas[-1] is None
    await run(3, 1.0)  # resumed at the same speed: the ETA picks up where it was
    after = [eta for eta in etas[-6:] if eta is not None]
    assert len(after) == 6  # at once, no wait for new history
    # Within 10% of the truth (the pause began inside a sample), never above the ETA before
    # the pause: an EWMA over wall time would have shown several times that on resuming.
    assert all(abs(eta - (100 - percent)) < 0.1 * (100 - percent) for eta in after), etas
    assert max(eta for eta in etas[20:] if eta is not None) <= before + 5


async def test_a_producers_eta_wins(store: ExportStore):
    await store.register("job-1", status=JobStatus.RUNNING)
    own = ProgressUpdate("job-1", 10.0, "w", None, time.time(), eta_seconds=123.4)
    await store.apply_progress([own])
    snapshot = await store.get("job-1")
    assert snapshot.eta_seconds == 123.4
    await store.apply_progress([update("job-1", 11.0)])
    assert (await store.get("job-1")).eta_seconds is None  # the next report has none
    with pytest.raises(InvalidUpdateError, match="etaSeconds"):
        await store.apply_progress([ProgressUpdate("job-1", 1, "w", None, 1.0, -1.0)])
    with pytest.raises(InvalidUpdateError, match="reset"):
        await store.apply_progress([ProgressUpdate("job-1", 1, "w", None, 1.0, None, 1)])  # type: ignore[arg-type]


# -- terminal states -------------------------------------------------------------------------


async def test_the_first_terminal_state_wins_and_nothing_changes_after_it(store: ExportStore):
    await store.register("job-1")
    await store.apply_progress([update("job-1", 40, "render")])
    done = await store.finish("job-1", JobStatus.COMPLETED, result={"file": "out.mp4", "n": 1.5})
    assert (done.status, done.percent, done.seq) == (JobStatus.COMPLETED, 100.0, 3)
    assert done.result == {"file": "out.mp4", "n": 1.5}
    assert done.error is None
    again = await store.finish("job-1", JobStatus.FAILED, error="too late")
    assert again == done
    result = await store.apply_progress([update("job-1", 50, at=time.time() + 60)])
    assert (result.applied, result.ignored_terminal) == (0, 1)
    assert await store.get("job-1") == done
    assert store.statistics().ignored_terminal == 2


async def test_finish_applies_the_last_buffered_progress_unless_it_is_stale(store: ExportStore):
    await store.register("job-1")
    now = time.time()
    await store.apply_progress([update("job-1", 20, "load", at=now)])
    failed = await store.finish(
        "job-1",
        JobStatus.FAILED,
        error="disk full",
        last_progress=update("job-1", 61.5, "render", "frame 9", at=now + 1),
    )
    assert (failed.status, failed.percent, failed.stage, failed.message) == (
        JobStatus.FAILED,
        61.5,
        "render",
        "frame 9",
    )
    assert failed.error == "disk full"
    assert failed.result is None
    await store.register("job-2")
    await store.apply_progress([update("job-2", 20, "load", at=now + 5)])
    cancelled = await store.finish(
        "job-2", JobStatus.CANCELLED, last_progress=update("job-2", 10, "old", at=now)
    )
    assert (cancelled.status, cancelled.percent, cancelled.stage) == (
        JobStatus.CANCELLED,
        20.0,
        "load",
    )
    assert cancelled.reported_at >= now + 5


async def test_finish_refuses_bad_input_and_unknown_jobs(store: ExportStore):
    await store.register("job-1")
    with pytest.raises(
        InvalidUpdateError, match="must be completed, failed or cancelled, not running"
    ):
        await store.finish("job-1", JobStatus.RUNNING)
    with pytest.raises(InvalidUpdateError, match="result: must be JSON-encodable"):
        await store.finish("job-1", JobStatus.COMPLETED, result={"x": object()})
    with pytest.raises(InvalidUpdateError, match="error: must be at most"):
        await store.finish("job-1", JobStatus.FAILED, error="e" * (MAX_MESSAGE_LENGTH + 1))
    with pytest.raises(InvalidUpdateError, match="percent"):
        await store.finish("job-1", JobStatus.FAILED, last_progress=update("job-1", 101))
    with pytest.raises(JobNotFoundError, match="'ghost' is not registered"):
        await store.finish("ghost", JobStatus.COMPLETED)
    assert (await store.get("job-1")).status is JobStatus.QUEUED


# -- reading -----------------------------------------------------------------------------------


async def test_get_of_an_unknown_job_raises(store: ExportStore):
    with pytest.raises(JobNotFoundError, match="'nope' is not registered; register it first"):
        await store.get("nope")


async def test_list_jobs_newest_first_with_status_filter_and_pages(store: ExportStore):
    for number in range(6):
        await store.register(f"job-{number}")
    await store.apply_progress([update("job-1", 5), update("job-4", 5)])
    await store.finish("job-2", JobStatus.COMPLETED)
    page, total = await store.list_jobs()
    assert total == 6
    assert [job.job_id for job in page] == [f"job-{n}" for n in (5, 4, 3, 2, 1, 0)]
    page, total = await store.list_jobs(offset=1, limit=2)
    assert ([job.job_id for job in page], total) == (["job-4", "job-3"], 6)
    page, total = await store.list_jobs(status=JobStatus.RUNNING)
    assert ([job.job_id for job in page], total) == (["job-4", "job-1"], 2)
    page, total = await store.list_jobs(status=JobStatus.COMPLETED)
    assert ([job.job_id for job in page], total) == (["job-2"], 1)
    assert await store.list_jobs(limit=0) == ([], 6)
    assert await store.list_jobs(offset=10) == ([], 6)
    with pytest.raises(ValueError, match="offset and limit must be >= 0"):
        await store.list_jobs(offset=-1)


async def test_terminal_jobs_expire_after_the_retention_and_others_stay(
    store: ExportStore, wall: WallClock
):
    await store.register("done")
    await store.register("running")
    await store.finish("done", JobStatus.COMPLETED)
    wall.now += 59
    await store.register("trigger-1")
    assert (await store.get("done")).status is JobStatus.COMPLETED
    wall.now += 2  # now 61 s after the terminal state; retention is 60 s
    await store.apply_progress([update("running", 50)])
    await store.register("trigger-2")
    with pytest.raises(JobNotFoundError):
        await store.get("done")
    page, total = await store.list_jobs()
    assert total == 3
    assert {job.job_id for job in page} == {"running", "trigger-1", "trigger-2"}
    assert store.statistics().jobs == 3


# -- subscriptions ---------------------------------------------------------------------------


async def test_a_subscriber_gets_the_current_snapshot_then_every_change_then_ends(
    store: ExportStore,
):
    await store.register("job-1")
    await store.apply_progress([update("job-1", 10)])
    async with store.subscribe("job-1") as subscription:
        assert store.statistics().subscribers == 1
        first = subscription.receive_nowait()
        assert (first.seq, first.percent) == (2, 10.0)
        with pytest.raises(trio.WouldBlock):
            subscription.receive_nowait()
        await store.apply_progress([update("job-1", 20)])
        assert (await subscription.receive()).percent == 20.0
        await store.finish("job-1", JobStatus.COMPLETED)
        # finish() has told this subscriber when it returns.
        assert subscription.receive_nowait().status is JobStatus.COMPLETED
        with pytest.raises(trio.EndOfChannel):
            subscription.receive_nowait()
        assert [s async for s in subscription] == []
    assert store.statistics().subscribers == 0
    assert store.statistics().notifications >= 2


@pytest.mark.slow
async def test_a_slow_subscriber_gets_the_latest_state_and_the_terminal_one(store: ExportStore):
    await store.register("job-1")
    async with store.subscribe("job-1") as subscription:
        for step in range(1, 51):
            await store.apply_progress([update("job-1", float(step))])
        await store.finish("job-1", JobStatus.FAILED, error="boom")
        # The subscriber did not read while 51 changes happened: it gets the terminal state
        # (the latest), not a backlog.
        received = [snapshot async for snapshot in subscription]
    assert [s.status for s in received] == [JobStatus.FAILED]
    assert received[0].percent == 50.0
    assert received[0].error == "boom"
    assert subscription.conflated >= 1


async def test_a_subscriber_that_reads_now_and_then_sees_increasing_seqs(store: ExportStore):
    await store.register("job-1")
    seen: list[int] = []
    async with store.subscribe("job-1") as subscription, trio.open_nursery() as nursery:

        async def read() -> None:
            async for snapshot in subscription:
                seen.append(snapshot.seq)

        nursery.start_soon(read)
        for step in range(1, 21):
            await store.apply_progress([update("job-1", float(step))])
            if step % 5 == 0:
                await trio.sleep(0.01)
        await store.finish("job-1", JobStatus.COMPLETED)
    assert seen == sorted(set(seen))
    assert len(seen) >= 4
    assert seen[-1] == 22


async def test_subscribing_to_an_unknown_job_raises(store: ExportStore):
    with pytest.raises(JobNotFoundError, match="'ghost' is not registered"):
        async with store.subscribe("ghost"):
            pass
    assert store.statistics().subscribers == 0


async def test_subscribing_while_the_job_finishes_still_ends_with_the_terminal_snapshot(
    store: ExportStore,
):
    for attempt in range(20):
        job_id = f"race-{attempt}"
        await store.register(job_id)
        await store.apply_progress([update(job_id, 50)])
        outcomes: list[JobStatus] = []

        async def follow(job_id: str = job_id, outcomes: list[JobStatus] = outcomes) -> None:
            async with store.subscribe(job_id) as subscription:
                with trio.fail_after(5):
                    outcomes.extend([snapshot.status async for snapshot in subscription])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow)
            for _ in range(attempt % 4):
                await trio.lowlevel.checkpoint()
            await store.finish(job_id, JobStatus.COMPLETED)
        assert outcomes[-1] is JobStatus.COMPLETED
        assert outcomes.count(JobStatus.COMPLETED) == 1


async def test_many_subscribers_of_one_job_all_get_the_terminal_state(store: ExportStore):
    await store.register("job-1")
    ends: list[JobStatus] = []
    async with trio.open_nursery() as nursery:

        async def follow(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            async with store.subscribe("job-1") as subscription:
                task_status.started()
                ends.append([s async for s in subscription][-1].status)

        for _ in range(10):
            await nursery.start(follow)
        await store.apply_progress([update("job-1", 70)])
        await store.finish("job-1", JobStatus.CANCELLED)
    assert ends == [JobStatus.CANCELLED] * 10


# -- waiting for registration ------------------------------------------------------------------


@pytest.mark.slow
async def test_wait_registered_returns_once_the_job_is_registered(
    store: ExportStore, clock: trio.testing.MockClock | None
):
    async with trio.open_nursery() as nursery:
        results = []

        async def wait() -> None:
            results.append(await store.wait_registered("late", timeout=30))

        nursery.start_soon(wait)
        await trio.sleep(0.2)
        assert results == []
        registered = await store.register("late", stage="hello")
    assert results == [registered]
    assert (await store.wait_registered("late", timeout=0)).stage == "hello"


@pytest.mark.slow
async def test_wait_registered_times_out(
    store: ExportStore, clock: trio.testing.MockClock | None, kind: str
):
    timeout = 5.0 if kind == "memory" else 0.3  # virtual seconds on memory, real on Redis
    started = trio.current_time()
    with pytest.raises(
        RegistrationTimeoutError, match=f"'never' was not registered within {timeout:g} s"
    ):
        await store.wait_registered("never", timeout=timeout)
    assert trio.current_time() - started >= timeout
    await store.register("never")  # leaves nothing behind that breaks a later registration
    assert (await store.wait_registered("never", timeout=timeout)).seq == 1
