"""Leases of external jobs: ``heartbeatTimeoutS``, heartbeats, and the reaper that ends a job
whose producer went silent ``failed``, exactly once.

The memory store runs in virtual time (its wall clock is trio's autojump clock). On Redis,
several stores (one per process in production) reap the same prefix at once on the real clock,
and two real server processes share one Redis.
"""

from __future__ import annotations

import sys

import pytest
import trio
import trio.testing
from _server_process import check_stream, follow, server_process
from progress_sync import (
    InvalidUpdateError,
    JobFinishedError,
    JobNotFoundError,
    JobStatus,
    MemoryStore,
    ProgressUpdate,
    open_lease_reaper,
    open_redis_store,
)
from progress_sync.client import open_progress_client


def _update(job_id: str, percent: float, at: float) -> ProgressUpdate:
    return ProgressUpdate(job_id, percent, "work", None, at)


async def test_a_silent_job_ends_failed_when_its_lease_runs_out(
    autojump_clock: trio.testing.MockClock,
):
    store = MemoryStore(clock=trio.current_time)
    await store.register("leased", status=JobStatus.RUNNING, heartbeat_timeout=10)
    await store.register("free", status=JobStatus.RUNNING)
    async with store.subscribe("leased") as sub, open_lease_reaper(store, interval=0.5):
        await trio.sleep(8)
        await store.apply_progress([_update("leased", 40, trio.current_time())])  # renews
        await trio.sleep(8)  # t=16: 8 s since the report
        assert (await store.heartbeat("leased")).status is JobStatus.RUNNING  # renews
        await trio.sleep(9.4)  # t=25.4: 9.4 s since the heartbeat
        assert (await store.get("leased")).status is JobStatus.RUNNING
        await trio.sleep(1.1)
        failed = await store.get("leased")
        assert failed.status is JobStatus.FAILED
        assert failed.percent == 40.0
        assert failed.heartbeat_timeout == 10.0
        assert failed.error is not None
        assert "no progress report or heartbeat for 10 s" in failed.error
        assert "heartbeatTimeoutS" in failed.error
        seen = [snapshot async for snapshot in sub]
        assert seen[-1].status is JobStatus.FAILED
        assert [s.seq for s in seen] == sorted({s.seq for s in seen})
    assert (await store.get("free")).status is JobStatus.RUNNING
    assert store.statistics().leases_expired == 1
    assert failed.to_dict()["heartbeatTimeoutS"] == 10.0


async def test_heartbeat_refuses_unknown_and_ended_jobs_and_bad_leases_are_refused():
    store = MemoryStore()
    with pytest.raises(JobNotFoundError):
        await store.heartbeat("nope")
    await store.register("a", heartbeat_timeout=5)
    await store.finish("a", JobStatus.COMPLETED)
    with pytest.raises(JobFinishedError, match="completed"):
        await store.heartbeat("a")
    for bad in (0, -1, 86401, float("nan"), "5", True):
        with pytest.raises(InvalidUpdateError, match="heartbeatTimeoutS"):
            await store.register("bad", heartbeat_timeout=bad)  # type: ignore[arg-type]
    snapshot = await store.register("no-lease")
    assert (await store.heartbeat("no-lease")) == snapshot  # nothing to renew, no change


async def test_a_job_that_ended_is_never_failed_by_its_lease(
    autojump_clock: trio.testing.MockClock,
):
    store = MemoryStore(clock=trio.current_time)
    await store.register("done", heartbeat_timeout=1)
    await store.finish("done", JobStatus.COMPLETED, result=1)
    await trio.sleep(5)
    assert await store.expire_leases() == []
    assert (await store.get("done")).status is JobStatus.COMPLETED


@pytest.mark.slow
async def test_on_redis_several_reapers_end_each_expired_job_exactly_once(
    redis_url: str, redis_prefix: str
):
    async with (
        open_redis_store(redis_url, prefix=redis_prefix) as one,
        open_redis_store(redis_url, prefix=redis_prefix) as two,
        open_redis_store(redis_url, prefix=redis_prefix) as three,
    ):
        ids = [f"job-{n}" for n in range(40)]
        for job_id in ids:
            await one.register(job_id, status=JobStatus.RUNNING, heartbeat_timeout=0.3)
        await one.register("kept", status=JobStatus.RUNNING, heartbeat_timeout=30)
        with pytest.raises(InvalidUpdateError, match="heartbeatTimeoutS"):
            await one.register("bad", heartbeat_timeout=0)
        async with two.subscribe("job-0") as sub2, three.subscribe("job-0") as sub3:
            await trio.sleep(0.4)
            ended: list[list] = [[], [], []]

            async def reap(index: int, store) -> None:  # type: ignore[no-untyped-def]
                ended[index] = await store.expire_leases()

            async with trio.open_nursery() as nursery:
                for index, store in enumerate((one, two, three)):
                    nursery.start_soon(reap, index, store)
            winners = [s.job_id for batch in ended for s in batch]
            assert sorted(winners) == sorted(ids)  # each once, by one of them
            total = sum(s.statistics().leases_expired for s in (one, two, three))
            assert total == len(ids)
            for store in (one, two, three):
                assert await store.expire_leases() == []
            for sub in (sub2, sub3):
                with trio.fail_after(5):
                    async for snapshot in sub:
                        if snapshot.is_terminal:
                            break
                assert snapshot.status is JobStatus.FAILED
                assert snapshot.seq == 2
        assert (await two.heartbeat("kept")).heartbeat_timeout == 30.0
        with pytest.raises(JobFinishedError):
            await two.heartbeat("job-1")
        with pytest.raises(JobNotFoundError):
            await two.heartbeat("nope")
        snapshot = await three.get("job-1")
        assert snapshot.status is JobStatus.FAILED
        assert "no progress report or heartbeat for 0.3 s" in (snapshot.error or "")
        assert (await three.get("kept")).status is JobStatus.RUNNING


@pytest.mark.slow
async def test_on_redis_progress_and_heartbeats_keep_a_lease_alive(
    redis_url: str, redis_prefix: str
):
    async with open_redis_store(redis_url, prefix=redis_prefix) as store:
        await store.register("alive", heartbeat_timeout=0.5)
        for n in range(4):
            await trio.sleep(0.25)
            if n % 2:
                await store.heartbeat("alive")
            else:
                await store.apply_progress([_update("alive", n, trio.current_time() + 1e9)])
            assert await store.expire_leases() == []
        assert (await store.get("alive")).status is JobStatus.RUNNING


@pytest.mark.slow
async def test_two_server_processes_on_redis_fail_a_silent_job_once(
    redis_url: str, redis_prefix: str
):
    store_args = ("--store", redis_url, "--store-prefix", redis_prefix)
    async with (
        server_process(*store_args) as a,
        server_process(*store_args) as b,
        a.client() as http_a,
        b.client() as http_b,
    ):
        answer = await http_a.post("/api/jobs", json={"jobId": "silent", "heartbeatTimeoutS": 1.5})
        assert answer.status_code == 201, answer.text
        answer = await http_b.post("/api/jobs/silent/progress", json={"percent": 30})
        assert answer.status_code == 202
        events: list[tuple[str, int, dict]] = []
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(follow, b.base_url, "silent", events)
                for _ in range(3):
                    await trio.sleep(0.7)
                    beat = await http_a.post("/api/jobs/silent/heartbeat")
                    assert beat.status_code == 200, beat.text
                    assert not events or events[-1][0] != "job-failed"
        final = check_stream(events, "job-failed")
        assert final["percent"] == 30
        assert "heartbeatTimeoutS" in final["error"]
        beat = await http_b.post("/api/jobs/silent/heartbeat")
        assert beat.status_code == 409
        await trio.sleep(1.2)  # both reapers have run again since
        expired = 0
        for http in (http_a, http_b):
            health = (await http.get("/healthz")).json()
            expired += health["store"]["leasesExpired"]
        assert expired == 1


async def test_the_http_api_takes_a_lease_and_heartbeats(progress_server):
    async with progress_server.client() as http:
        answer = await http.post("/api/jobs", json={"jobId": "l1", "heartbeatTimeoutS": 30})
        assert answer.status_code == 201
        snapshot = (await http.get("/api/jobs/l1")).json()
        assert snapshot["heartbeatTimeoutS"] == 30.0
        beat = await http.post("/api/jobs/l1/heartbeat")
        assert beat.status_code == 200
        assert beat.json()["seq"] == snapshot["seq"]
        for bad in (0, -3, 100000, "30"):
            answer = await http.post("/api/jobs", json={"heartbeatTimeoutS": bad})
            assert answer.status_code == 400, answer.text
            assert answer.json()["field"] == "heartbeatTimeoutS"
        answer = await http.post("/api/jobs", json={"kind": "demo", "heartbeatTimeoutS": 5})
        assert answer.status_code == 400
        assert answer.json()["field"] == "heartbeatTimeoutS"
        assert (await http.post("/api/jobs/nope/heartbeat")).status_code == 404
        await http.post("/api/jobs/l1/complete")
        assert (await http.post("/api/jobs/l1/heartbeat")).status_code == 409
        assert (await http.get("/api/jobs/l1")).json()["status"] == "completed"


@pytest.mark.slow
async def test_the_client_heartbeats_an_idle_job_and_a_killed_producer_fails(progress_server):
    async with open_progress_client(progress_server.base_url, flush_interval=0.05) as client:
        job = await client.register("idle", heartbeat_timeout=0.6)
        await trio.sleep(2.0)  # idle: only heartbeats keep it alive
        async with progress_server.client() as http:
            assert (await http.get("/api/jobs/idle")).json()["status"] == "running"
        await client.complete("idle")
    # A producer process killed with SIGKILL: its job fails once the lease runs out.
    script = (
        "import os, signal, time\n"
        "from progress_sync.client import ProgressClient\n"
        f"c = ProgressClient({progress_server.base_url!r}, flush_interval=0.05)\n"
        "c.register('killed', heartbeat_timeout=1.0)\n"
        "c.report_nowait('killed', 42.0, 'render')\n"
        "time.sleep(0.3)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    process = await trio.run_process([sys.executable, "-c", script], check=False)
    assert process.returncode == -9
    async with progress_server.client() as http:
        with trio.fail_after(10):
            while True:
                snapshot = (await http.get("/api/jobs/killed")).json()
                if snapshot["status"] != "running":
                    break
                await trio.sleep(0.1)
    assert snapshot["status"] == "failed"
    assert snapshot["percent"] == 42.0
    assert "heartbeatTimeoutS" in snapshot["error"]
    assert job.job_id == "idle"
