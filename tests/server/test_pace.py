"""``minIntervalMs``: at most one event per job per interval for a subscriber, always the
latest state; terminal events and ``job-error`` never wait. In-process streams, virtual time.
"""

from __future__ import annotations

import trio
from progress_sync import JobStatus, ProgressUpdate
from progress_sync.server.testing import collect_events


async def _produce(store, job_ids, *, steps: int, every: float, end=JobStatus.COMPLETED):  # type: ignore[no-untyped-def]
    for step in range(1, steps + 1):
        await trio.sleep(every)
        at = 1e9 + trio.current_time()
        await store.apply_progress([ProgressUpdate(j, step * 1.0, "w", None, at) for j in job_ids])
    await trio.sleep(every)
    for job_id in job_ids:
        await store.finish(job_id, end)


async def test_a_paced_single_stream_sends_the_latest_state_once_per_interval(
    progress_client, progress_store, autojump_clock, nursery
):
    await progress_store.register("job", status=JobStatus.RUNNING)
    ended_at: list[float] = []
    events: list = []
    both_ended = trio.Event()

    async def follow(path: str, into: list) -> None:
        into.extend(await collect_events(progress_client, path=path, timeout=60))
        ended_at.append(trio.current_time())
        if len(ended_at) == 2:
            both_ended.set()

    paced: list = []
    nursery.start_soon(follow, "/api/jobs/job/progress/stream?minIntervalMs=1000", paced)
    nursery.start_soon(follow, "/api/jobs/job/progress/stream", events)
    await trio.sleep(0.01)
    started = trio.current_time()
    await _produce(progress_store, ["job"], steps=50, every=0.1)  # 5 s, 10 changes/s
    finished = trio.current_time()
    with trio.fail_after(5):
        await both_ended.wait()
    progress = [e.payload["percent"] for e in paced if e.event == "job-progress"]
    assert 5 <= len(progress) <= 7  # the first at once, then one per second over ~5 s
    assert progress == sorted(progress)
    assert progress[-1] >= 45  # the latest state, not the first held one
    assert paced[-1].event == "job-completed"
    assert max(ended_at) - finished < 0.05  # the terminal event did not wait
    assert len([e for e in events if e.event == "job-progress"]) > 40  # unpaced: all
    assert finished - started >= 5


async def test_a_paced_multi_job_stream_paces_each_job_and_never_delays_the_end(
    progress_client, progress_store, autojump_clock, nursery
):
    for job_id in ("a", "b"):
        await progress_store.register(job_id, status=JobStatus.RUNNING)
    paced: list = []
    done = trio.Event()

    async def follow() -> None:
        path = "/api/progress/stream?jobIds=a,b&minIntervalMs=500"
        paced.extend(await collect_events(progress_client, path=path, timeout=60))
        done.set()

    nursery.start_soon(follow)
    await trio.sleep(0.01)
    await _produce(progress_store, ["a", "b"], steps=30, every=0.1, end=JobStatus.FAILED)
    finished = trio.current_time()
    await done.wait()
    assert trio.current_time() - finished < 0.05
    for job_id in ("a", "b"):
        mine = [e for e in paced if e.payload.get("jobId") == job_id]
        progress = [e.payload["percent"] for e in mine if e.event == "job-progress"]
        assert 5 <= len(progress) <= 8, progress  # 3 s at one per 0.5 s
        assert progress[-1] >= 28
        assert mine[-1].event == "job-failed"


async def test_min_interval_ms_is_checked(progress_client):
    for value in ("-1", "60001", "soon"):
        answer = await progress_client.get(f"/api/jobs/x/progress/stream?minIntervalMs={value}")
        assert answer.status_code == 400
        body = await answer.get_json()
        assert body["field"] == "minIntervalMs"
