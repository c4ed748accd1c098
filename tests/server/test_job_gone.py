"""A job that leaves the store while followed ends its streams with ``job-error``.

Subscriptions and in-process streams on the memory store in virtual time; on Redis, a stream
on a real server process while another process deletes the job, or Redis drops its key.
"""

from __future__ import annotations

import coredis
import pytest
import trio
from _server_process import server_process
from progress_sync import (
    JobGoneError,
    JobNotFoundError,
    JobStatus,
    MemoryStore,
    MultiSubscription,
    ProgressUpdate,
    open_redis_store,
)
from progress_sync.server.testing import collect_events


async def test_a_subscription_gets_its_pending_snapshot_then_job_gone(autojump_clock):
    store = MemoryStore()
    await store.register("a", status=JobStatus.RUNNING)
    await store.register("b", status=JobStatus.RUNNING)
    async with store.subscribe("a") as sub_a, store.subscribe("b") as sub_b:
        assert (await sub_a.receive()).seq == 1
        await store.apply_progress([ProgressUpdate("a", 5.0, "w", None, 1e9)])
        await store.delete("a")
        assert (await sub_a.receive()).percent == 5.0
        with pytest.raises(JobGoneError, match="'a' is gone: deleted") as caught:
            await sub_a.receive()
        assert (caught.value.job_id, caught.value.reason) == ("a", "deleted")
        with pytest.raises(trio.EndOfChannel):
            await sub_a.receive()
        multi = MultiSubscription([sub_b])
        assert (await multi.receive()).job_id == "b"
        await store.delete("b")
        with pytest.raises(JobGoneError):
            await multi.receive()
        assert multi.ended
    with pytest.raises(JobNotFoundError):
        await store.delete("a")


async def test_a_job_deleted_while_streamed_ends_its_single_and_multi_streams(
    progress_client, progress_store, autojump_clock, nursery
):
    for job_id in ("gone", "stays"):
        await progress_store.register(job_id, status=JobStatus.RUNNING)
    single: list = []
    multi: list = []

    async def follow_single() -> None:
        single.extend(await collect_events(progress_client, "gone", timeout=60))

    async def follow_multi() -> None:
        path = "/api/progress/stream?jobIds=gone,stays"
        multi.extend(await collect_events(progress_client, path=path, timeout=60))

    nursery.start_soon(follow_single)
    nursery.start_soon(follow_multi)
    await trio.sleep(1)
    await progress_store.delete("gone")
    await trio.sleep(1)
    await progress_store.finish("stays", JobStatus.COMPLETED)
    await trio.sleep(1)
    assert [e.event for e in single] == ["job-progress", "job-error"]
    assert single[-1].id == "0"
    assert single[-1].payload["error"] == "job gone"
    assert "deleted" in single[-1].payload["detail"]
    names = [(e.event, e.payload.get("jobId")) for e in multi]
    assert ("job-error", "gone") in names
    assert names[-1] == ("job-completed", "stays")


async def test_on_redis_every_server_process_ends_the_streams_of_a_job_that_disappears(
    redis_url: str, redis_prefix: str
):
    store_args = ("--store", redis_url, "--store-prefix", redis_prefix)
    async with (
        server_process(*store_args) as one,
        server_process(*store_args) as two,
        one.client() as http_one,
        two.client() as http_two,
        open_redis_store(redis_url, prefix=redis_prefix) as store,
    ):
        for job_id in ("deleted", "dropped"):
            answer = await http_one.post("/api/jobs", json={"jobId": job_id})
            assert answer.status_code == 201
        results: dict[tuple[str, str], list] = {}

        async def follow(name: str, http, job_id: str) -> None:  # type: ignore[no-untyped-def]
            results[name, job_id] = await collect_events(http, job_id, timeout=20)

        async with trio.open_nursery() as nursery:
            for name, http in (("one", http_one), ("two", http_two)):
                for job_id in ("deleted", "dropped"):
                    nursery.start_soon(follow, name, http, job_id)
            await trio.sleep(0.5)
            await store.delete("deleted")  # another process: told at once on the channel
            # Redis drops the key by itself (a TTL, an operator): found by the periodic check.
            client = coredis.Redis.from_url(redis_url, decode_responses=True)
            async with client:
                await client.delete([f"{redis_prefix}job:dropped"])
        assert len(results) == 4
        for (_, job_id), events in results.items():
            reason = "deleted" if job_id == "deleted" else "expired from the store"
            assert events[-1].event == "job-error", events
            assert events[-1].payload["error"] == "job gone"
            assert reason in events[-1].payload["detail"]
        assert (await http_two.get("/api/jobs/deleted")).status_code == 404
