"""RQ jobs with live progress, end to end with real engines and no mocks: a real
``progress-sync serve`` process on the Redis store, a real ``rq worker`` process (forking a
work horse per job) on Redis database ``RQ_DB``, the test process enqueueing, and real SSE
clients following the jobs. The real clock (processes and sockets).

The job functions are in ``_rq_jobs.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import coredis
import pytest
import trio
from _server_process import check_stream, follow, server_process
from _task_workers import (
    RQ_DB,
    python,
    require_module,
    unique_queue,
    wait_for_status,
    worker_process,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

RQ_URL = f"redis://127.0.0.1:6379/{RQ_DB}"


@pytest.fixture
def queue_name() -> str:
    return unique_queue()


@pytest.fixture
def rq_jobs(redis_url: str, redis_prefix: str) -> Iterator[ModuleType]:
    """The job functions' module in this process, its jobs registered on this test's prefix."""
    require_module("rq", "rq")
    module = importlib.import_module("_rq_jobs")
    from progress_sync import rq

    rq.configure(store_url=redis_url, prefix=redis_prefix)
    try:
        yield module
    finally:
        rq.configure()


@pytest.fixture
def queue(rq_jobs: ModuleType, queue_name: str) -> Iterator[Any]:
    from progress_sync.rq import ProgressQueue
    from redis import Redis

    connection = Redis.from_url(RQ_URL)
    try:
        yield ProgressQueue(queue_name, connection=connection)
    finally:
        connection.close()


@pytest.fixture
async def rq_cleanup(queue_name: str) -> AsyncIterator[None]:
    yield
    with trio.CancelScope(shield=True):
        client = coredis.Redis.from_url(RQ_URL, decode_responses=True)
        async with client:
            keys = [key async for key in client.scan_iter(match=f"*{queue_name}*")]
            if keys:
                await client.delete(keys)


def worker_argv(queue_name: str) -> list[str]:
    return python(
        "-m",
        "rq.cli",
        "worker",
        "-w",
        "_rq_jobs.TestWorker",
        "--job-class",
        "progress_sync.rq.ProgressJob",
        "--queue-class",
        "progress_sync.rq.ProgressQueue",
        "--url",
        RQ_URL,
        queue_name,
    )


def worker_env(redis_url: str, redis_prefix: str, lease: float = 30) -> dict[str, str]:
    return {
        "PS_TEST_LEASE": str(lease),
        "PROGRESS_SYNC_STORE": redis_url,
        "PROGRESS_SYNC_STORE_PREFIX": redis_prefix,
    }


def server_args(redis_url: str, redis_prefix: str) -> list[str]:
    return ["--store", redis_url, "--store-prefix", redis_prefix, "--flush-interval", "0.05"]


async def enqueue(queue: Any, function: Any, *args: Any, **options: Any) -> str:
    """Enqueue a job (a blocking call: in a thread); its id."""
    job = await trio.to_thread.run_sync(lambda: queue.enqueue(function, *args, **options))
    return str(job.id)


async def test_rq_jobs_stream_live_progress_and_end_from_rqs_status(
    rq_jobs: ModuleType, queue: Any, redis_url: str, redis_prefix: str, rq_cleanup: None
):
    async with (
        server_process(*server_args(redis_url, redis_prefix)) as server,
        worker_process(
            worker_argv(queue.name), worker_env(redis_url, redis_prefix), b"Listening on"
        ),
        server.client() as client,
    ):
        counted: list[tuple[str, int, dict]] = []
        job_id = "rq-count-1"
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, server.base_url, job_id, counted)
            await trio.sleep(0.2)
            await enqueue(queue, rq_jobs.count, 200, 100.0, job_id=job_id)
        final = check_stream(counted, "job-completed")
        assert final["result"] == {"steps": 200}
        progress = [data for name, _, data in counted if name == "job-progress"]
        assert 5 <= len(progress) < 120, len(progress)

        blocker = await enqueue(queue, rq_jobs.silent, 1.0)
        queued = await enqueue(queue, rq_jobs.silent, 0.0)
        assert (await client.get(f"/api/jobs/{queued}")).json()["status"] == "queued"
        done = await wait_for_status(client, queued, lambda s: s["status"] == "completed")
        assert done["result"] == {"type": "set", "repr": "{1, 2, 3}"}
        assert (await client.get(f"/api/jobs/{blocker}")).json()["status"] == "completed"

        bar_id = await enqueue(queue, rq_jobs.bar, 50, 100.0)
        assert check_stream(await follow(server.base_url, bar_id), "job-completed")["result"] == 50

        boom_id = await enqueue(queue, rq_jobs.boom, 30.0)
        failed = check_stream(await follow(server.base_url, boom_id), "job-failed")
        assert failed["error"] == "ValueError: boom at 30%"
        assert failed["percent"] == 30.0


async def test_cancels_from_the_api_and_from_rq_stop_the_job(
    rq_jobs: ModuleType, queue: Any, redis_url: str, redis_prefix: str, rq_cleanup: None
):
    from rq.command import send_stop_job_command

    async with (
        server_process(*server_args(redis_url, redis_prefix)) as server,
        worker_process(
            worker_argv(queue.name), worker_env(redis_url, redis_prefix), b"Listening on"
        ),
        server.client() as client,
    ):
        # Through the API: the worker sees it on the store's channel and stops the job.
        job_id = await enqueue(queue, rq_jobs.count, 3000, 100.0)  # 30 s
        await wait_for_status(client, job_id, lambda s: s["percent"] > 2)
        answer = await client.post(f"/api/jobs/{job_id}/cancel")
        assert answer.status_code == 202, answer.text
        final = check_stream(await follow(server.base_url, job_id), "job-cancelled")
        after = await enqueue(queue, rq_jobs.count, 5, 100.0)
        await wait_for_status(client, after, lambda s: s["status"] == "completed", timeout=10)
        assert (await client.get(f"/api/jobs/{job_id}")).json()["seq"] == final["seq"]
        stopped = await trio.to_thread.run_sync(lambda: queue.fetch_job(job_id).get_status())
        assert stopped == "stopped"

        # Through RQ: send_stop_job_command.
        job_id = await enqueue(queue, rq_jobs.count, 3000, 100.0)
        await wait_for_status(client, job_id, lambda s: s["percent"] > 2)
        await trio.to_thread.run_sync(send_stop_job_command, queue.connection, job_id)
        final = check_stream(await follow(server.base_url, job_id), "job-cancelled")
        assert final["error"] == "stopped in RQ"

        # Cancelled while queued, through the API: it never runs. And RQ's own job.cancel().
        busy = await enqueue(queue, rq_jobs.silent, 1.0)
        waiting = await enqueue(queue, rq_jobs.count, 3000, 100.0)
        in_rq = await enqueue(queue, rq_jobs.count, 3000, 100.0)
        assert (await client.post(f"/api/jobs/{waiting}/cancel")).status_code == 202
        await trio.to_thread.run_sync(lambda: queue.fetch_job(in_rq).cancel())
        snapshot = (await client.get(f"/api/jobs/{in_rq}")).json()
        assert (snapshot["status"], snapshot["error"]) == ("cancelled", "cancelled in RQ")
        await wait_for_status(client, busy, lambda s: s["status"] == "completed")
        after = await enqueue(queue, rq_jobs.count, 5, 100.0)
        await wait_for_status(client, after, lambda s: s["status"] == "completed", timeout=10)
        snapshot = (await client.get(f"/api/jobs/{waiting}")).json()
        assert (snapshot["status"], snapshot["seq"]) == ("cancelled", 2)
        status = await trio.to_thread.run_sync(lambda: queue.fetch_job(waiting).get_status())
        assert status == "canceled"


async def test_a_worker_killed_mid_job_leaves_the_job_failed_by_its_lease(
    rq_jobs: ModuleType, queue: Any, redis_url: str, redis_prefix: str, rq_cleanup: None
):
    env = worker_env(redis_url, redis_prefix, lease=1.5)
    async with (
        server_process(*server_args(redis_url, redis_prefix)) as server,
        worker_process(worker_argv(queue.name), env, b"Listening on") as worker,
        server.client() as client,
    ):
        job_id = await enqueue(queue, rq_jobs.count, 3000, 100.0)
        running = await wait_for_status(client, job_id, lambda s: s["percent"] > 2)
        assert running["heartbeatTimeoutS"] == 1.5
        worker.kill_with_children()  # the worker and its work horse
        await worker.process.wait()
        failed = check_stream(await follow(server.base_url, job_id), "job-failed")
    assert "heartbeatTimeoutS" in failed["error"]
    assert failed["percent"] >= running["percent"]
