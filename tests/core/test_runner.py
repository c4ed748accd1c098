"""The job runner and the demo job kind, in virtual time."""

from __future__ import annotations

import logging

import pytest
import trio
from progress_sync import (
    DEMO_KIND,
    InvalidUpdateError,
    JobExistsError,
    JobFinishedError,
    JobKind,
    JobNotFoundError,
    JobQueueFullError,
    JobStatus,
    MemoryStore,
    StoreUnavailableError,
    open_job_runner,
    open_update_buffer,
)
from progress_sync._demo_job import demo_stage
from trio.testing import wait_all_tasks_blocked


async def _wait_terminal(store, job_id):
    async with store.subscribe(job_id) as subscription:
        return [snapshot async for snapshot in subscription][-1]


def _kind(name, run):
    return JobKind(name=name, run=run, parse_params=lambda raw: dict(raw))


async def test_a_demo_job_runs_to_completed_with_its_result(autojump_clock, store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}) as runner,
    ):
        first = await runner.submit("demo", {"durationS": 2, "updatesPerS": 50})
        assert first.status is JobStatus.RUNNING
        async with store.subscribe(first.job_id) as subscription:
            seen = [snapshot async for snapshot in subscription]
    percents = [s.percent for s in seen]
    assert percents == sorted(percents)
    assert len(seen) >= 5  # progress every flush interval over 2 s
    final = seen[-1]
    assert final.status is JobStatus.COMPLETED
    assert final.result == {"output": f"{first.job_id}.mp4", "durationS": 2.0, "updates": 100}


async def test_a_failing_job_ends_failed_with_its_message(autojump_clock, store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}) as runner,
    ):
        job = await runner.submit("demo", {"durationS": 2, "updatesPerS": 10, "failAtPercent": 50})
        final = await _wait_terminal(store, job.job_id)
    assert final.status is JobStatus.FAILED
    assert final.error == "simulated failure at 50.0% during visuals"
    # The failed state carries the job's last report, the one the error talks about.
    assert (final.percent, final.stage) == (50.0, "visuals")
    assert final.message == "frame 25 of 50"


async def test_a_crashing_job_never_takes_down_the_runner_or_other_jobs(autojump_clock, store):
    async def crash(reporter, params):
        raise KeyError("missing frame")

    async def ok(reporter, params):
        await trio.sleep(1)
        reporter.report(50.0, "half")
        return "done"

    kinds = {"crash": _kind("crash", crash), "ok": _kind("ok", ok)}
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds=kinds) as runner,
    ):
        crashed = await runner.submit("crash")
        fine = await runner.submit("ok")
        assert (await _wait_terminal(store, crashed.job_id)).error == "'missing frame'"
        assert (await _wait_terminal(store, fine.job_id)).result == "done"
        again = await runner.submit("ok")
        assert (await _wait_terminal(store, again.job_id)).status is JobStatus.COMPLETED


async def test_a_result_that_is_not_json_fails_the_job(autojump_clock, store):
    async def bad_result(reporter, params):
        return object()

    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"bad": _kind("bad", bad_result)}) as runner,
    ):
        job = await runner.submit("bad")
        final = await _wait_terminal(store, job.job_id)
    assert final.status is JobStatus.FAILED
    assert "the job's result was refused: result: must be JSON-encodable" in final.error


async def test_cancel_ends_the_job_cancelled(autojump_clock, store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}) as runner,
    ):
        job = await runner.submit("demo", {"durationS": 60})
        await trio.sleep(5)
        final = await runner.cancel(job.job_id, reason="the user asked")
        assert final.status is JobStatus.CANCELLED
        assert final.error == "the user asked"
        assert 0 < final.percent < 100
        assert runner.active_jobs == 0
        with pytest.raises(JobFinishedError, match="has ended already with status 'cancelled'"):
            await runner.cancel(job.job_id)
        with pytest.raises(JobNotFoundError):
            await runner.cancel("ghost")


async def test_cancel_an_external_job_writes_cancelled(autojump_clock, store):
    await store.register("external")
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={}) as runner,
    ):
        final = await runner.cancel("external", reason="user asked")
    assert final.status is JobStatus.CANCELLED


async def test_the_concurrency_limit_queues_the_extra_jobs_which_then_run(autojump_clock, store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}, max_concurrent=2) as runner,
    ):
        jobs = [await runner.submit("demo", {"durationS": 1, "updatesPerS": 10}) for _ in range(4)]
        assert [j.status for j in jobs] == [JobStatus.RUNNING] * 2 + [JobStatus.QUEUED] * 2
        await trio.sleep(0.5)
        await wait_all_tasks_blocked()
        assert (await store.get(jobs[3].job_id)).status is JobStatus.QUEUED
        finals = [await _wait_terminal(store, j.job_id) for j in jobs]
        assert {f.status for f in finals} == {JobStatus.COMPLETED}
        # The queued jobs started only when the first two ended, one second later.
        assert finals[3].updated_at >= finals[0].updated_at


async def test_leaving_the_runner_cancels_its_jobs_and_writes_cancelled(autojump_clock, store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}) as runner,
    ):
        job = await runner.submit("demo", {"durationS": 60})
        await trio.sleep(1)
    final = await store.get(job.job_id)
    assert final.status is JobStatus.CANCELLED
    assert final.error == "the server shut down before the job ended"


async def test_submit_refuses_unknown_kinds_and_bad_params(store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}) as runner,
    ):
        with pytest.raises(
            InvalidUpdateError, match="kind: unknown job kind 'render'; known kinds: demo"
        ):
            await runner.submit("render")
        with pytest.raises(
            InvalidUpdateError, match=r"params\.durationS: Input should be greater than 0"
        ):
            await runner.submit("demo", {"durationS": 0})
        with pytest.raises(
            InvalidUpdateError, match=r"params\.colour: Extra inputs are not permitted"
        ):
            await runner.submit("demo", {"colour": "red"})
        with pytest.raises(InvalidUpdateError, match=r"params\.failAtPercent"):
            await runner.submit("demo", {"failAtPercent": 101})
        assert runner.active_jobs == 0
    assert store.statistics().jobs == 0


async def test_max_concurrent_must_be_at_least_one(store):
    async with open_update_buffer(store) as buffer:
        with pytest.raises(ValueError, match="max_concurrent must be a whole number >= 1"):
            async with open_job_runner(store, buffer, kinds={}, max_concurrent=0):
                pass


def test_demo_stages_are_weighted():
    assert demo_stage(0) == ("script", 0.0)
    assert demo_stage(5) == ("script", 50.0)
    assert demo_stage(30) == ("visuals", 0.0)
    assert demo_stage(95) == ("mux", 50.0)
    assert demo_stage(100) == ("mux", 100.0)


async def test_registration_is_logged_and_a_failed_registration_loudly(autojump_clock, caplog):
    class DownForOneId(MemoryStore):
        async def register(self, job_id, **kwargs):
            if job_id == "unlucky":
                raise StoreUnavailableError("redis is down")
            return await super().register(job_id, **kwargs)

    store = DownForOneId()
    caplog.set_level(logging.INFO, logger="progress_sync")
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}, max_concurrent=1) as runner,
    ):
        await runner.submit("demo", {"durationS": 60}, job_id="x")
        await runner.submit("demo", {"durationS": 60}, job_id="y")
        assert "job x (demo) registered in the store with status running" in caplog.text
        assert "job y (demo) registered in the store with status queued" in caplog.text
        # A taken id is the client's mistake (a 409), not a failure of the store.
        with pytest.raises(JobExistsError):
            await runner.submit("demo", job_id="x")
        assert "job x not registered: the id is taken" in caplog.text
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        with pytest.raises(StoreUnavailableError):
            await runner.submit("demo", job_id="unlucky")
        [record] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "FAILED to register job unlucky in the store, so streams for it will not work" in (
            record.getMessage()
        )
        await runner.cancel("x")
        # The failed submissions took no slot: y starts as soon as x is cancelled.
        await wait_all_tasks_blocked()
        assert (await store.get("y")).status is JobStatus.RUNNING


async def test_cancel_of_a_job_that_ends_on_its_own_first_is_a_conflict(autojump_clock, store):
    async def quick(reporter, params):
        # Ends while shielded from the cancellation, as a job finishing its last step would.
        with trio.CancelScope(shield=True):
            await trio.sleep(1)
        return "done"

    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"quick": _kind("quick", quick)}) as runner,
    ):
        job = await runner.submit("quick")
        with pytest.raises(JobFinishedError, match="has ended already with status 'completed'"):
            await runner.cancel(job.job_id)


async def test_a_full_queue_refuses_new_jobs_and_leaves_the_others(autojump_clock, store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(
            store, buffer, kinds={"demo": DEMO_KIND}, max_concurrent=1, max_queued=2
        ) as runner,
    ):
        jobs = [await runner.submit("demo", {"durationS": 1}) for _ in range(3)]
        with pytest.raises(JobQueueFullError, match="2 jobs are already waiting to run"):
            await runner.submit("demo", {"durationS": 1})
        assert store.statistics().jobs == 3
        finals = [await _wait_terminal(store, job.job_id) for job in jobs]
        assert {f.status for f in finals} == {JobStatus.COMPLETED}
        # Room again once the queue has drained.
        await runner.submit("demo", {"durationS": 1})


async def test_max_queued_must_not_be_negative(store):
    async with open_update_buffer(store) as buffer:
        with pytest.raises(ValueError, match="max_queued must be a whole number >= 0"):
            async with open_job_runner(store, buffer, kinds={}, max_queued=-1):
                pass


async def test_cancel_all_cancels_every_job_with_the_shutdown_reason(autojump_clock, store):
    async with (
        open_update_buffer(store) as buffer,
        open_job_runner(store, buffer, kinds={"demo": DEMO_KIND}, max_concurrent=1) as runner,
    ):
        jobs = [await runner.submit("demo", {"durationS": 60}) for _ in range(3)]
        await runner.cancel_all()
        assert runner.active_jobs == 0
        for job in jobs:
            final = await store.get(job.job_id)
            assert (final.status, final.error) == (
                JobStatus.CANCELLED,
                "the server shut down before the job ended",
            )
