"""The Redis store beyond the shared contract: several stores (processes) on one Redis, one
pub/sub connection per store, key expiry, and Redis going away and coming back.

Real Redis, so the real clock (the autojump clock would jump while sockets are pending).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import coredis
import pytest
import trio
from _redis import free_port, private_redis
from progress_sync import (
    JobNotFoundError,
    JobStatus,
    ProgressUpdate,
    RedisStore,
    StoreUnavailableError,
    is_shared_store,
    open_export_store,
    open_redis_store,
)

pytestmark = pytest.mark.redis


def update(job_id: str, percent: float, stage: str = "work") -> ProgressUpdate:
    return ProgressUpdate(job_id, percent, stage, None, time.time())


@pytest.fixture
async def pair(redis_url: str, redis_prefix: str) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two stores on the same Redis and prefix: what two server processes hold."""
    async with (
        open_redis_store(redis_url, prefix=redis_prefix, retention=120) as a,
        open_redis_store(redis_url, prefix=redis_prefix, retention=120) as b,
    ):
        yield a, b


async def test_a_job_written_by_one_store_is_read_and_streamed_by_another(pair):
    a, b = pair
    await a.register("job-1", kind="demo")
    assert (await b.get("job-1")).kind == "demo"
    async with b.subscribe("job-1") as subscription:
        assert subscription.receive_nowait().seq == 1
        await a.apply_progress([update("job-1", 25)])
        with trio.fail_after(5):
            assert (await subscription.receive()).percent == 25.0
        await a.finish("job-1", JobStatus.COMPLETED, result=[1, 2])
        with trio.fail_after(5):
            received = [snapshot async for snapshot in subscription]
    assert received[-1].status is JobStatus.COMPLETED
    assert received[-1].result == [1, 2]
    assert (await b.list_jobs())[1] == 1


@pytest.mark.slow
async def test_wait_registered_wakes_when_another_store_registers_the_job(pair):
    a, b = pair
    async with trio.open_nursery() as nursery:
        found = []

        async def wait() -> None:
            found.append(await b.wait_registered("late", timeout=10))

        nursery.start_soon(wait)
        with trio.fail_after(5):  # b is waiting for the job (not finding it registered)
            while "late" not in b._registration_waiters:  # noqa: ASYNC110
                await trio.sleep(0.01)
        started = trio.current_time()
        await a.register("late")
    assert found[0].job_id == "late"
    assert trio.current_time() - started < 2


@pytest.mark.slow
async def test_one_pubsub_connection_per_store_however_many_subscribers(pair, redis_url):
    a, b = pair
    for number in range(30):
        await a.register(f"job-{number}")
    async with trio.open_nursery() as nursery:
        for number in range(30):
            for store in (a, b):

                async def follow(
                    store: RedisStore = store,
                    job_id: str = f"job-{number}",
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
                ) -> None:
                    async with store.subscribe(job_id) as subscription:
                        task_status.started()
                        async for _ in subscription:
                            pass

                await nursery.start(follow)
        assert a.statistics().subscribers == b.statistics().subscribers == 30
        async with coredis.Redis.from_url(redis_url, decode_responses=True) as client:
            counts = await client.pubsub_numsub(a.channel)
        assert counts[a.channel] == 2
        for number in range(30):
            await a.finish(f"job-{number}", JobStatus.COMPLETED)
    assert a.statistics().subscribers == b.statistics().subscribers == 0


async def test_terminal_jobs_get_a_ttl_and_running_ones_are_refreshed(redis_url, redis_prefix):
    async with (
        open_redis_store(redis_url, prefix=redis_prefix, retention=30, idle_timeout=600) as store,
        coredis.Redis.from_url(redis_url, decode_responses=True) as client,
    ):
        await store.register("job-1")
        key = f"{redis_prefix}job:1".replace("job:1", "job:job-1")
        assert 590_000 < await client.pttl(key) <= 600_000
        await client.pexpire(key, 5_000)
        await store.apply_progress([update("job-1", 10)])
        assert 590_000 < await client.pttl(key) <= 600_000
        await store.finish("job-1", JobStatus.COMPLETED)
        assert 25_000 < await client.pttl(key) <= 30_000


async def test_a_job_whose_key_expired_is_gone_everywhere(redis_url, redis_prefix):
    async with (
        open_redis_store(redis_url, prefix=redis_prefix) as store,
        coredis.Redis.from_url(redis_url, decode_responses=True) as client,
    ):
        await store.register("short")
        await store.register("other")
        await client.delete([f"{redis_prefix}job:short"])  # as if its TTL had run out
        page, total = await store.list_jobs()
        assert ([job.job_id for job in page], total) == (["other"], 1)
        with pytest.raises(JobNotFoundError):
            await store.get("short")
        assert (await store.apply_progress([update("short", 5)])).unknown_jobs == ("short",)
        await store.register("short")  # the id can be used again
        assert (await store.get("short")).seq == 1


async def test_open_refuses_a_url_that_is_not_redis_and_an_unreachable_redis():
    with pytest.raises(ValueError, match=r"starts with redis://, rediss:// or unix://"):
        async with open_redis_store("http://127.0.0.1:6379"):
            pass
    port = free_port()
    with pytest.raises(StoreUnavailableError, match=f"127.0.0.1:{port}.*could not be reached"):
        async with open_redis_store(f"redis://127.0.0.1:{port}/0", connect_timeout=1):
            pass
    with pytest.raises(ValueError, match="store must be 'memory' or a Redis URL"):
        is_shared_store("postgres://x")
    with pytest.raises(ValueError, match="store must be 'memory' or a Redis URL"):
        async with open_export_store("mongodb://x"):
            pass


async def test_store_settings_are_checked():
    with pytest.raises(ValueError, match="retention must be a finite number of seconds >= 0"):
        RedisStore(None, url="redis://x", retention=-1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="idle_timeout must be a finite number"):
        RedisStore(None, url="redis://x", idle_timeout=float("inf"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prefix must be a non-empty string"):
        RedisStore(None, url="redis://x", prefix="")  # type: ignore[arg-type]


async def test_the_password_is_not_shown_in_messages():
    port = free_port()
    with pytest.raises(StoreUnavailableError) as caught:
        async with open_redis_store(f"redis://user:s3cret@127.0.0.1:{port}/0"):
            pass
    assert "s3cret" not in str(caught.value)
    assert "user:***@127.0.0.1" in str(caught.value)


@pytest.mark.slow
async def test_redis_going_away_and_coming_back(tmp_path: Path):
    """Stop a PRIVATE Redis in the middle of a job: operations fail with
    StoreUnavailableError and are counted, the store reports itself unavailable, and when Redis
    is back a subscriber resyncs to the current snapshot, including changes it missed."""
    async with (
        private_redis(tmp_path) as redis,
        open_redis_store(redis.url) as a,
        open_redis_store(redis.url) as b,
    ):
        await a.register("job-1")
        await a.apply_progress([update("job-1", 30)])
        async with b.subscribe("job-1") as subscription:
            assert subscription.receive_nowait().percent == 30.0
            await redis.stop()
            with pytest.raises(StoreUnavailableError, match="could not be reached while writing"):
                await a.apply_progress([update("job-1", 40)])
            with pytest.raises(StoreUnavailableError, match="while reading job 'job-1'"):
                await a.get("job-1")
            with trio.fail_after(5):
                while b.statistics().available:  # noqa: ASYNC110 - no event to wait for
                    await trio.sleep(0.02)
            stats = a.statistics()
            assert not stats.available
            assert stats.unavailable_errors == 2
            await redis.start()
            # Write at once, maybe before b's listener is subscribed again: b must not miss it.
            with trio.fail_after(10):
                while True:
                    try:
                        await a.finish(
                            "job-1",
                            JobStatus.FAILED,
                            error="stopped at 55%",
                            last_progress=update("job-1", 55),
                        )
                        break
                    except StoreUnavailableError:
                        await trio.sleep(0.05)
            with trio.fail_after(10):
                received = [snapshot async for snapshot in subscription]
        assert received[-1].status is JobStatus.FAILED
        assert received[-1].percent == 55.0
        with trio.fail_after(10):
            while not (a.statistics().available and b.statistics().available):  # noqa: ASYNC110
                await trio.sleep(0.02)
        assert b.statistics().resyncs >= 2
        assert (await b.get("job-1")).error == "stopped at 55%"
