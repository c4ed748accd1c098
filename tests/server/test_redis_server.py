"""Servers on the Redis store: two server processes sharing jobs, ``serve --workers 2``, and a
private Redis stopped and restarted in the middle of a job while a client follows it.

Real servers on 127.0.0.1 ephemeral ports and the real clock (sockets).
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from _redis import free_port, private_redis
from _server_process import SERVE, check_stream, follow, server_process
from click.testing import CliRunner
from progress_sync.server import ServerConfig, serve
from progress_sync.server._cli import main

pytestmark = [pytest.mark.redis, pytest.mark.slow]


async def test_a_job_created_on_one_server_process_is_streamed_and_polled_from_another(
    redis_url: str, redis_prefix: str
):
    store = ["--store", redis_url, "--store-prefix", redis_prefix, "--flush-interval", "0.05"]
    async with server_process(*store) as a, server_process(*store) as b:
        assert a.base_url != b.base_url
        async with trio.open_nursery() as nursery:
            early: list[tuple[str, int, dict]] = []

            async def follow_early() -> None:
                early.extend(await follow(b.base_url, "made-on-a"))

            nursery.start_soon(follow_early)  # opened on B before the job exists
            async with b.client() as probe:
                with trio.fail_after(10):
                    while (await probe.get("/healthz")).json()["openStreams"] < 1:  # noqa: ASYNC110
                        await trio.sleep(0.02)
            async with a.client() as client:
                created = await client.post(
                    "/api/jobs",
                    json={
                        "kind": "demo",
                        "jobId": "made-on-a",
                        "params": {"durationS": 1.5, "updatesPerS": 40},
                    },
                )
            assert created.status_code == 201
            late = await follow(b.base_url, "made-on-a")
        for events in (early, late):
            final = check_stream(events, "job-completed")
            assert final["percent"] == 100
            assert final["result"]["output"] == "made-on-a.mp4"
        assert len(early) >= 5  # progress events, not just the end
        async with b.client() as client:
            polled = (await client.get("/api/jobs/made-on-a")).json()
            health = (await client.get("/healthz")).json()
        assert (polled["status"], polled["percent"], polled["seq"]) == (
            "completed",
            100,
            early[-1][1],
        )
        assert health["status"] == "ok"
        assert health["store"]["backend"] == "RedisStore"
        assert health["activeJobs"] == 0  # the job ran on A, not here


def _worker_pids(parent: int) -> list[int]:
    """Pids of the multiprocessing workers started by ``parent`` (not its resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return pids


async def test_serve_with_two_workers_on_redis(redis_url: str, redis_prefix: str):
    args = ["--workers", "2", "--store", redis_url, "--store-prefix", redis_prefix]
    async with server_process(*args, "--flush-interval", "0.05") as server:
        assert len(_worker_pids(server.process.pid)) == 2
        async with server.client() as client:
            job_ids = []
            for _ in range(4):
                created = await client.post(
                    "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.5}}
                )
                assert created.status_code == 201
                job_ids.append(created.json()["jobId"])
        for job_id in job_ids:
            check_stream(await follow(server.base_url, job_id), "job-completed")
            # A new connection each time: any worker may answer.
            async with server.client() as client:
                assert (await client.get(f"/api/jobs/{job_id}")).json()["status"] == "completed"
    assert server.process.returncode == 0
    assert b"with 2 workers" in server.log


async def test_serve_with_two_workers_stops_when_redis_cannot_be_reached():
    port = free_port()
    process = await trio.run_process(
        [*SERVE, "--port", "0", "--workers", "2", "--store", f"redis://127.0.0.1:{port}/0"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert process.returncode == 1
    assert b"could not be reached" in process.stderr
    assert b"a worker stopped with exit code 3" in process.stderr


def test_cli_refuses_several_workers_on_the_memory_store():
    result = CliRunner().invoke(main, ["serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "workers=2 needs a shared store" in result.output
    assert "--store redis://" in result.output


def test_cli_reports_an_unreachable_redis_and_a_bad_store_url():
    port = free_port()
    for command in ("serve", "demo"):
        result = CliRunner().invoke(
            main, [command, "--port", "0", "--store", f"redis://127.0.0.1:{port}/0"]
        )
        assert result.exit_code == 1, result.output
        assert "could not be reached while connecting" in result.output
        assert "is Redis running there?" in result.output
    result = CliRunner().invoke(main, ["serve", "--store", "postgres://db"])
    assert result.exit_code == 2
    assert "store must be 'memory' or a Redis URL" in result.output


def test_cli_takes_the_store_from_the_environment():
    result = CliRunner().invoke(
        main, ["serve", "--workers", "2"], env={"PROGRESS_SYNC_STORE": "ftp://nope"}
    )
    assert result.exit_code == 2
    assert "'ftp://nope'" in result.output


def test_server_config_checks_the_store_settings():
    with pytest.raises(ValueError, match="workers=3 needs a shared store"):
        ServerConfig(workers=3)
    with pytest.raises(ValueError, match="workers must be a whole number >= 1"):
        ServerConfig(workers=0)
    with pytest.raises(ValueError, match="job_retention must be a finite number of seconds"):
        ServerConfig(job_retention=-1)
    with pytest.raises(ValueError, match="store_prefix must be a non-empty string"):
        ServerConfig(store_prefix="")
    with pytest.raises(ValueError, match="store must be 'memory' or a Redis URL"):
        ServerConfig(store="sqlite://x")
    assert ServerConfig(workers=2, store="redis://127.0.0.1:6379/0").workers == 2


async def test_a_stream_survives_redis_stopping_and_restarting_in_the_middle_of_a_job(
    tmp_path: Path,
    nursery: trio.Nursery,
    progress_server_config: ServerConfig,
    caplog: pytest.LogCaptureFixture,
):
    """Stop a PRIVATE Redis while a job runs and a client follows it: the job keeps reporting,
    /healthz says degraded and polls get 503, the stream keeps its heartbeats; when Redis is
    back the stream resyncs and ends with the terminal event, and nothing is lost."""
    async with private_redis(tmp_path) as redis:
        config = replace(
            progress_server_config, store=redis.url, heartbeat_interval=0.2, flush_interval=0.05
        )
        stop = trio.Event()
        urls = await nursery.start(partial(serve, config, shutdown_trigger=stop.wait))
        base_url = urls[0]
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
                created = await client.post(
                    "/api/jobs",
                    json={"kind": "demo", "params": {"durationS": 2.0, "updatesPerS": 50}},
                )
                job_id = created.json()["jobId"]
                events: list[tuple[str, int, dict]] = []
                heartbeats: list[float] = []
                outage: list[float] = []
                async with trio.open_nursery() as followers:

                    async def follow_events() -> None:
                        await follow(base_url, job_id, events)

                    async def count_heartbeats() -> None:
                        url = f"/api/jobs/{job_id}/progress/stream"
                        async with client.stream("GET", url) as response:
                            # Read to the end (the server ends the stream after the
                            # terminal event).
                            async for line in response.aiter_lines():
                                if line.startswith(": heartbeat"):
                                    heartbeats.append(trio.current_time())

                    followers.start_soon(follow_events)
                    followers.start_soon(count_heartbeats)
                    with trio.fail_after(10):
                        while not any(data["percent"] > 10 for _, _, data in events):  # noqa: ASYNC110
                            await trio.sleep(0.02)
                    await redis.stop()
                    outage.append(trio.current_time())
                    with trio.fail_after(10):
                        while (await client.get("/healthz")).json()["status"] != "degraded":  # noqa: ASYNC110
                            await trio.sleep(0.05)
                    polled = await client.get(f"/api/jobs/{job_id}")
                    assert polled.status_code == 503
                    assert polled.headers["retry-after"] == "1"
                    assert polled.json()["error"] == "store unavailable"
                    # The job ends while Redis is away: its runner tries to write the terminal
                    # state and is told the store is unavailable.
                    retrying = f"retrying terminal state of job {job_id}"
                    with trio.fail_after(10):
                        while not any(retrying in r.getMessage() for r in caplog.records):  # noqa: ASYNC110
                            await trio.sleep(0.05)
                    await redis.start()
                    outage.append(trio.current_time())
                    with trio.fail_after(30):
                        while (await client.get("/healthz")).json()["status"] != "ok":  # noqa: ASYNC110
                            await trio.sleep(0.05)
                final = check_stream(events, "job-completed")
                assert final["percent"] == 100
                assert final["result"]["output"] == f"{job_id}.mp4"
                assert any(outage[0] < t < outage[1] for t in heartbeats)
                polled = (await client.get(f"/api/jobs/{job_id}")).json()
                assert (polled["status"], polled["seq"]) == ("completed", events[-1][1])
                health = (await client.get("/healthz")).json()
                assert health["store"]["unavailableErrors"] >= 1
                assert health["sink"]["failedWrites"] >= 1
                assert health["store"]["resyncs"] >= 2
        finally:
            stop.set()
