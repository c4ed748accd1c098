"""The producer for task-queue workers (``progress_sync.worker``) against the real Redis store
on 127.0.0.1, and the lease a heartbeat can give a job (store, HTTP route).

The producer is sync code: each test drives it from a worker thread (``trio.to_thread``), as a
Celery or RQ task would, on the real clock.
"""

from __future__ import annotations

import threading

import pytest
import trio
from progress_sync import (
    InvalidUpdateError,
    JobStatus,
    MemoryStore,
    StoreUnavailableError,
    open_redis_store,
)
from progress_sync.worker import open_redis_producer, open_task_producer

pytestmark = pytest.mark.redis


async def test_reports_are_coalesced_and_each_flush_is_one_script_call(
    redis_url: str, redis_prefix: str
):
    def produce() -> tuple[object, object, object]:
        with open_redis_producer(redis_url, prefix=redis_prefix, flush_interval=0.05) as p:
            assert p.register("a", stage="waiting") is True
            assert p.register("a") is False  # taken: nothing written
            assert p.get("a").status is JobStatus.QUEUED
            assert p.start("a", stage="go", heartbeat_timeout=5) is JobStatus.RUNNING

            def hammer(offset: int) -> None:
                for i in range(500):
                    p.report("a", min(100.0, (i + offset) / 10), "work", f"{i}")

            threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            p.flush()
            during = p.get("a")
            stats = p.statistics()
            final = p.finish("a", "completed", result={"n": 1})
            late = p.finish("a", "failed", error="too late")
            return during, stats, (final, late, p.get("a"))

    during, stats, (final, late, after) = await trio.to_thread.run_sync(produce)
    assert during.status is JobStatus.RUNNING
    assert during.heartbeat_timeout == 5.0
    assert stats.reports == 2000  # type: ignore[attr-defined]
    assert stats.coalesced > 1900  # type: ignore[attr-defined]
    # Registration, start, heartbeat and a handful of batches: far fewer writes than reports.
    assert stats.batches < 50  # type: ignore[attr-defined]
    assert (final, late) == (JobStatus.COMPLETED, JobStatus.COMPLETED)  # first terminal wins
    assert after.result == {"n": 1}  # type: ignore[attr-defined]


async def test_a_job_ended_elsewhere_is_seen_and_nothing_lands_after_it(
    redis_url: str, redis_prefix: str
):
    ended: list[object] = []
    seen = threading.Event()

    def start() -> None:
        producer.register("c")
        assert producer.start("c", heartbeat_timeout=5) is JobStatus.RUNNING
        producer.report("c", 10.0, "work")
        producer.flush()
        producer.watch("c", lambda snapshot: (ended.append(snapshot), seen.set()))

    with open_redis_producer(redis_url, prefix=redis_prefix, flush_interval=0.05) as producer:
        await trio.to_thread.run_sync(start)
        async with open_redis_store(redis_url, prefix=redis_prefix) as store:
            await trio.sleep(0.2)
            cancelled = await store.finish("c", "cancelled", error="by the API")
            assert await trio.to_thread.run_sync(seen.wait, 10)
            await trio.to_thread.run_sync(producer.report, "c", 90.0, "late")
            await trio.to_thread.run_sync(producer.flush)
            assert (await store.get("c")).seq == cancelled.seq
            # A job cancelled before it started says so at start.
            await trio.to_thread.run_sync(lambda: producer.register("q"))
            await store.finish("q", "cancelled")
            status = await trio.to_thread.run_sync(lambda: producer.start("q"))
            assert status is JobStatus.CANCELLED
    assert ended == [JobStatus.CANCELLED]


async def test_an_unregistered_job_is_registered_running_at_start(
    redis_url: str, redis_prefix: str
):
    def run() -> object:
        with open_task_producer(store_url=redis_url, prefix=redis_prefix) as producer:
            assert producer.start("late", stage="s", heartbeat_timeout=3) is JobStatus.RUNNING
            return producer.get("late")  # type: ignore[attr-defined]

    snapshot = await trio.to_thread.run_sync(run)
    assert snapshot.status is JobStatus.RUNNING  # type: ignore[attr-defined]
    assert snapshot.heartbeat_timeout == 3.0  # type: ignore[attr-defined]


async def test_unreachable_redis_and_missing_settings_are_refused(monkeypatch):
    from _redis import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"

    def open_dead() -> None:
        with open_redis_producer(url, connect_timeout=0.5):
            pass

    with pytest.raises(StoreUnavailableError, match=r"could not be reached|cannot"):
        await trio.to_thread.run_sync(open_dead)
    for name in ("PROGRESS_SYNC_STORE", "PROGRESS_SYNC_SERVER"):
        monkeypatch.delenv(name, raising=False)

    def open_nothing() -> None:
        with open_task_producer():
            pass

    with pytest.raises(ValueError, match="PROGRESS_SYNC_STORE=redis"):
        await trio.to_thread.run_sync(open_nothing)
    with (
        pytest.raises(ValueError, match="flush_interval"),
        open_redis_producer(url, flush_interval=0),
    ):
        pass


async def test_a_producer_outside_its_block_refuses_to_report(redis_url: str, redis_prefix: str):
    def run() -> None:
        with open_redis_producer(redis_url, prefix=redis_prefix) as producer:
            pass
        with pytest.raises(RuntimeError, match="not open"):
            producer.report("x", 1.0)
        with pytest.raises(RuntimeError, match="not open"):
            producer.start("x")

    await trio.to_thread.run_sync(run)


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_a_heartbeat_gives_a_job_registered_without_a_lease_its_lease(
    backend: str, redis_url: str, redis_prefix: str
):
    async def check(store) -> None:
        await store.register("w", status=JobStatus.QUEUED)
        assert (await store.get("w")).heartbeat_timeout is None
        given = await store.heartbeat("w", heartbeat_timeout=2.5)
        assert given.heartbeat_timeout == 2.5
        assert given.seq == 1  # no new seq
        kept = await store.heartbeat("w")
        assert kept.heartbeat_timeout == 2.5
        with pytest.raises(InvalidUpdateError, match="heartbeatTimeoutS"):
            await store.heartbeat("w", heartbeat_timeout=0)

    if backend == "memory":
        await check(MemoryStore())
    else:
        async with open_redis_store(redis_url, prefix=redis_prefix) as store:
            await check(store)
            # The lease given by a heartbeat expires like one given at registration.
            await store.register("silent", status=JobStatus.QUEUED)
            await store.heartbeat("silent", heartbeat_timeout=0.2)
            await trio.sleep(0.3)
            assert [s.job_id for s in await store.expire_leases()] == ["silent"]


async def test_the_heartbeat_route_takes_an_optional_lease(progress_server):
    async with progress_server.client() as http:
        assert (
            await http.post("/api/jobs", json={"jobId": "h", "status": "queued"})
        ).status_code == 201
        answer = await http.post("/api/jobs/h/heartbeat", json={"heartbeatTimeoutS": 12})
        assert answer.status_code == 200, answer.text
        assert answer.json()["heartbeatTimeoutS"] == 12.0
        for body in ({"heartbeatTimeoutS": 0}, {"heartbeatTimeoutS": "5"}, {"lease": 5}):
            answer = await http.post("/api/jobs/h/heartbeat", json=body)
            assert answer.status_code == 400, answer.text
            assert answer.json()["field"] in ("heartbeatTimeoutS", "lease")
        assert (await http.post("/api/jobs/h/heartbeat")).status_code == 200  # no body: kept
        assert (await http.get("/api/jobs/h")).json()["heartbeatTimeoutS"] == 12.0
