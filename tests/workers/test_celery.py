"""Celery tasks with live progress, end to end with real engines and no mocks: a real
``progress-sync serve`` process on the Redis store, a real ``celery worker`` process (solo
pool) on a Redis broker (database ``CELERY_DB``), the test process sending the tasks, and
real SSE clients following the jobs. The real clock (processes and sockets).

The tasks are in ``_celery_app.py``.
"""

from __future__ import annotations

import importlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import coredis
import pytest
import trio
from _server_process import check_stream, follow, server_process
from _task_workers import (
    CELERY_DB,
    python,
    require_module,
    unique_queue,
    wait_for_status,
    worker_process,
)

pytestmark = [pytest.mark.redis, pytest.mark.slow]

BROKER = f"redis://127.0.0.1:6379/{CELERY_DB}"


@pytest.fixture
def queue() -> str:
    return unique_queue()


@pytest.fixture
def celery_app(redis_url: str, redis_prefix: str, queue: str) -> Iterator[ModuleType]:
    """The tasks' module in this process, publishing to this test's queue, its jobs
    registered on this test's store prefix."""
    require_module("celery", "celery")
    os.environ.setdefault("PS_TEST_BROKER", BROKER)
    module = importlib.import_module("_celery_app")
    from progress_sync.celery import install

    module.progress.disconnect()
    module.app.conf.task_default_queue = queue
    module.progress = install(module.app, store_url=redis_url, prefix=redis_prefix)
    try:
        yield module
    finally:
        module.progress.disconnect()


@pytest.fixture
async def broker_cleanup(queue: str) -> AsyncIterator[None]:
    yield
    with trio.CancelScope(shield=True):
        client = coredis.Redis.from_url(BROKER, decode_responses=True)
        async with client:
            keys = [key async for key in client.scan_iter(match=f"*{queue}*")]
            if keys:
                await client.delete(keys)


def worker_argv(queue: str) -> list[str]:
    return python(
        "-m",
        "celery",
        "-A",
        "_celery_app",
        "worker",
        "--pool",
        "solo",
        "-Q",
        queue,
        "--without-gossip",
        "--without-mingle",
        "--without-heartbeat",
        "--loglevel",
        "INFO",
    )


def worker_env(redis_url: str, redis_prefix: str, queue: str, lease: float = 30) -> dict[str, str]:
    return {
        "PS_TEST_BROKER": BROKER,
        "PS_TEST_QUEUE": queue,
        "PS_TEST_LEASE": str(lease),
        "PROGRESS_SYNC_STORE": redis_url,
        "PROGRESS_SYNC_STORE_PREFIX": redis_prefix,
    }


def server_args(redis_url: str, redis_prefix: str) -> list[str]:
    return ["--store", redis_url, "--store-prefix", redis_prefix, "--flush-interval", "0.05"]


async def send(task: Any, *args: Any, **options: Any) -> str:
    """Send a task (a blocking call: in a thread); its id."""
    job_id = options.pop("task_id", None) or uuid.uuid4().hex
    await trio.to_thread.run_sync(lambda: task.apply_async(args, task_id=job_id, **options))
    return job_id


async def test_celery_tasks_stream_live_progress_and_end_from_celerys_outcome(
    celery_app: ModuleType, redis_url: str, redis_prefix: str, queue: str, broker_cleanup: None
):
    env = worker_env(redis_url, redis_prefix, queue)
    async with (
        server_process(*server_args(redis_url, redis_prefix)) as server,
        worker_process(worker_argv(queue), env, b"ready.") as worker,
        server.client() as client,
    ):
        # 200 reports at 100 Hz (2 s), followed over real SSE from before it is sent.
        counted: list[tuple[str, int, dict]] = []
        job_id = uuid.uuid4().hex
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, server.base_url, job_id, counted)
            await trio.sleep(0.2)
            assert await send(celery_app.count, 200, 100.0, task_id=job_id) == job_id
        final = check_stream(counted, "job-completed")
        assert final["result"] == {"steps": 200}
        assert final["percent"] == 100.0
        assert counted[0][2]["status"] in ("queued", "running")
        progress = [data for name, _, data in counted if name == "job-progress"]
        # Coalesced: a flush every 50 ms makes tens of events out of 200 reports.
        assert 5 <= len(progress) < 120, len(progress)
        assert any(0 < data["percent"] < 100 for data in progress)

        # The job is queued as soon as the task is sent, before a worker takes it.
        blocker = await send(celery_app.silent, 1.0)
        queued = await send(celery_app.silent, 0.0)
        snapshot = (await client.get(f"/api/jobs/{queued}")).json()
        assert snapshot["status"] == "queued"
        summary = await wait_for_status(client, queued, lambda s: s["status"] == "completed")
        # It reported nothing; it ends from Celery's outcome, with a JSON-safe summary.
        assert summary["result"] == {"type": "set", "repr": "{1, 2, 3}"}
        assert (await client.get(f"/api/jobs/{blocker}")).json()["status"] == "completed"

        # The tqdm wrapper inside a task.
        bar_id = await send(celery_app.bar, 50, 100.0)
        bar_events = await follow(server.base_url, bar_id)
        assert check_stream(bar_events, "job-completed")["result"] == 50

        # An exception: failed with its text, where it stopped.
        boom_id = await send(celery_app.boom, 30.0)
        failed = check_stream(await follow(server.base_url, boom_id), "job-failed")
        assert failed["error"] == "ValueError: boom at 30%"
        assert failed["percent"] == 30.0

        # Expired before a worker ran it (Celery revokes it): cancelled.
        busy = await send(celery_app.silent, 1.0)
        expired = await send(celery_app.silent, 0.0, expires=0.3)
        cancelled = check_stream(await follow(server.base_url, expired), "job-cancelled")
        assert cancelled["error"] == "expired before a worker ran it"
        await wait_for_status(client, busy, lambda s: s["status"] == "completed")
    # One traceback: the failing task's, logged by Celery; none of the integration's.
    assert worker.log.count(b"Traceback") == 1, worker.log.decode()


async def test_a_cancel_through_the_api_stops_the_task_and_nothing_lands_after_it(
    celery_app: ModuleType, redis_url: str, redis_prefix: str, queue: str, broker_cleanup: None
):
    env = worker_env(redis_url, redis_prefix, queue)
    async with (
        server_process(*server_args(redis_url, redis_prefix)) as server,
        worker_process(worker_argv(queue), env, b"ready."),
        server.client() as client,
    ):
        job_id = await send(celery_app.count, 3000, 100.0)  # 30 s
        await wait_for_status(client, job_id, lambda s: s["percent"] > 2)
        events: list[tuple[str, int, dict]] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, server.base_url, job_id, events)
            await trio.sleep(0.3)
            answer = await client.post(f"/api/jobs/{job_id}/cancel", json={"reason": "user"})
            assert answer.status_code == 202, answer.text
        final = check_stream(events, "job-cancelled")
        assert final["error"] == "user"
        # The solo worker is free again long before the 30 s task would have ended.
        after = await send(celery_app.count, 5, 100.0)
        await wait_for_status(client, after, lambda s: s["status"] == "completed", timeout=10)
        # Nothing the task reported after the cancel landed.
        assert (await client.get(f"/api/jobs/{job_id}")).json()["seq"] == final["seq"]

        # Cancelled while still queued: the worker stops it when it starts.
        busy = await send(celery_app.silent, 1.0)
        waiting = await send(celery_app.count, 3000, 100.0)
        answer = await client.post(f"/api/jobs/{waiting}/cancel")
        assert answer.status_code == 202
        await wait_for_status(client, busy, lambda s: s["status"] == "completed")
        after = await send(celery_app.count, 5, 100.0)
        await wait_for_status(client, after, lambda s: s["status"] == "completed", timeout=10)
        snapshot = (await client.get(f"/api/jobs/{waiting}")).json()
        assert (snapshot["status"], snapshot["seq"]) == ("cancelled", 2)


async def test_a_worker_killed_mid_task_leaves_the_job_failed_by_its_lease(
    celery_app: ModuleType, redis_url: str, redis_prefix: str, queue: str, broker_cleanup: None
):
    env = worker_env(redis_url, redis_prefix, queue, lease=1.5)
    async with (
        server_process(*server_args(redis_url, redis_prefix)) as server,
        worker_process(worker_argv(queue), env, b"ready.") as worker,
        server.client() as client,
    ):
        job_id = await send(celery_app.count, 3000, 100.0)
        running = await wait_for_status(client, job_id, lambda s: s["percent"] > 2)
        assert running["heartbeatTimeoutS"] == 1.5
        worker.kill()
        await worker.process.wait()
        failed = check_stream(await follow(server.base_url, job_id), "job-failed")
    assert "heartbeatTimeoutS" in failed["error"]
    assert failed["percent"] >= running["percent"]


async def test_a_worker_without_the_store_url_reports_over_http(
    celery_app: ModuleType, redis_url: str, redis_prefix: str, queue: str, broker_cleanup: None
):
    async with server_process(*server_args(redis_url, redis_prefix)) as server:
        env = {
            "PS_TEST_BROKER": BROKER,
            "PS_TEST_QUEUE": queue,
            "PS_TEST_LEASE": "5",
            "PROGRESS_SYNC_STORE": "",
            "PROGRESS_SYNC_SERVER": server.base_url,
        }
        async with (
            worker_process(worker_argv(queue), env, b"ready."),
            server.client() as client,
        ):
            job_id = await send(celery_app.count, 100, 100.0)
            final = check_stream(await follow(server.base_url, job_id), "job-completed")
            assert final["result"] == {"steps": 100}
            boom_id = await send(celery_app.boom, 40.0)
            failed = check_stream(await follow(server.base_url, boom_id), "job-failed")
            assert (failed["error"], failed["percent"]) == ("ValueError: boom at 40%", 40.0)
            # A cancel through the API reaches the worker over HTTP too.
            long_id = await send(celery_app.count, 3000, 100.0)
            await wait_for_status(client, long_id, lambda s: s["percent"] > 2)
            assert (await client.post(f"/api/jobs/{long_id}/cancel")).status_code == 202
            after = await send(celery_app.count, 5, 100.0)
            await wait_for_status(client, after, lambda s: s["status"] == "completed", timeout=10)
            health = (await client.get("/metrics")).text
    # The reports came through the server's ingest API.
    assert "progress_sync_reports_received_total" in health
    received = [
        float(line.split()[-1])
        for line in health.splitlines()
        if line.startswith("progress_sync_reports_received_total")
    ]
    assert received
    assert received[0] > 0
