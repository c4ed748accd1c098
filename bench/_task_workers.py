"""``progress-sync bench --task-workers N --store redis://...``: task-queue workers writing
straight to the Redis store against the same workers through the HTTP client.

Each run starts a real ``progress-sync serve`` process on the Redis store (its own key prefix)
and N worker processes (``_task_worker_producer``), each reporting J jobs at R Hz for D
seconds with ``progress_sync.worker``: ``redis`` (``RedisProducer``: one script call per
flush, no HTTP) or ``http`` (``HttpProducer``: ``POST /api/progress`` batches). The two
transports alternate, ``rounds`` times each, on one machine in one invocation, so their
ratio is measured side by side. The figure is the server's CPU (user + system, its process
tree) per report; Redis's own CPU (``INFO cpu``, the whole Redis server: other clients of a
shared Redis count too) is shown beside it, since writing straight to Redis moves the writes
there.
"""

from __future__ import annotations

import json
import statistics
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import coredis
import trio

from ._processes import (
    delete_store_prefix,
    module_argv,
    open_server_process,
    progress_sync_argv,
    unique_store_prefix,
)
from ._workload import System

TRANSPORTS = ("redis", "http")


@dataclass(frozen=True)
class TaskWorkersRun:
    """One run of one transport.

    Attributes:
        transport: ``redis`` (straight to the store) or ``http`` (through the server).
        workers: worker processes.
        jobs: jobs per worker.
        rate: reports per second per job.
        reports: reports the workers made in all.
        seconds: wall-clock seconds the workers reported for (the longest).
        server_cpu: CPU seconds of the server's process tree during the run.
        redis_cpu: CPU seconds of the Redis server during the run.
    """

    transport: str
    workers: int
    jobs: int
    rate: float
    reports: int
    seconds: float
    server_cpu: float
    redis_cpu: float

    @property
    def server_us_per_report(self) -> float:
        """Server CPU microseconds per report."""
        return 1e6 * self.server_cpu / max(1, self.reports)

    @property
    def redis_us_per_report(self) -> float:
        """Redis CPU microseconds per report."""
        return 1e6 * self.redis_cpu / max(1, self.reports)


async def _redis_cpu(client: coredis.Redis[str]) -> float:
    info = await client.info("cpu")
    return float(str(info["used_cpu_user"])) + float(str(info["used_cpu_sys"]))


async def run_once(
    store: str,
    transport: str,
    *,
    workers: int,
    jobs: int,
    rate: float,
    duration: float,
    flush_interval: float,
) -> TaskWorkersRun:
    """One run: a server on ``store`` and ``workers`` producer processes over ``transport``."""
    prefix = unique_store_prefix()
    argv = progress_sync_argv(
        System.BATCHED, flush_interval=flush_interval, store=store, store_prefix=prefix
    )
    client: coredis.Redis[str] = coredis.Redis.from_url(store, decode_responses=True)
    try:
        async with client, open_server_process(argv) as server:
            url = store if transport == "redis" else server.url
            outputs: list[bytes] = []

            async def worker(index: int) -> None:
                done = await trio.run_process(
                    module_argv(
                        "progress_sync.bench._task_worker_producer",
                        *("--transport", transport, "--url", url, "--prefix", prefix),
                        *("--jobs", str(jobs), "--rate", repr(rate)),
                        *("--duration", repr(duration)),
                        *("--flush-interval", repr(flush_interval), "--name", f"w{index}"),
                    ),
                    capture_stdout=True,
                    stderr=subprocess.DEVNULL,
                )
                outputs.append(done.stdout)

            await trio.sleep(1.0)  # let the server settle after its start
            server_before, redis_before = server.cpu_seconds(), await _redis_cpu(client)
            async with trio.open_nursery() as nursery:
                for index in range(workers):
                    nursery.start_soon(worker, index)
            server_cpu = server.cpu_seconds() - server_before
            redis_cpu = await _redis_cpu(client) - redis_before
    finally:
        with trio.CancelScope(shield=True):
            await delete_store_prefix(store, prefix)
    answers = [json.loads(out.decode().strip().splitlines()[-1]) for out in outputs]
    return TaskWorkersRun(
        transport=transport,
        workers=workers,
        jobs=jobs,
        rate=rate,
        reports=sum(a["reports"] for a in answers),
        seconds=max(a["seconds"] for a in answers),
        server_cpu=server_cpu,
        redis_cpu=redis_cpu,
    )


async def run_task_workers(
    store: str,
    *,
    workers: int,
    jobs: int,
    rate: float,
    duration: float,
    flush_interval: float,
    rounds: int,
) -> list[TaskWorkersRun]:
    """``rounds`` runs of each transport, alternating."""
    runs = []
    for _ in range(rounds):
        for transport in TRANSPORTS:
            runs.append(
                await run_once(
                    store,
                    transport,
                    workers=workers,
                    jobs=jobs,
                    rate=rate,
                    duration=duration,
                    flush_interval=flush_interval,
                )
            )
    return runs


def table(runs: list[TaskWorkersRun], command: str) -> str:
    """The Markdown report: each run, then the medians and the http/redis ratio."""
    lines = [
        "# Task-queue workers: straight to Redis against through the HTTP client",
        "",
        f"`{command}`",
        "",
        "| transport | workers x jobs x Hz | reports | server CPU s | server µs/report "
        "| Redis CPU s | Redis µs/report |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for run in runs:
        lines.append(
            f"| {run.transport} | {run.workers} x {run.jobs} x {run.rate:g} | {run.reports} "
            f"| {run.server_cpu:.2f} | {run.server_us_per_report:.1f} "
            f"| {run.redis_cpu:.2f} | {run.redis_us_per_report:.1f} |"
        )
    medians = {
        transport: (
            statistics.median(r.server_us_per_report for r in runs if r.transport == transport),
            statistics.median(r.redis_us_per_report for r in runs if r.transport == transport),
        )
        for transport in TRANSPORTS
    }
    redis_server, redis_redis = medians["redis"]
    http_server, http_redis = medians["http"]
    ratio = http_server / redis_server if redis_server > 0 else float("inf")
    lines += [
        "",
        f"Median server CPU per report: through HTTP {http_server:.1f} µs, straight to Redis "
        f"{redis_server:.1f} µs: **{ratio:.1f}x** less server CPU per report straight to "
        f"Redis. Redis CPU per report: {http_redis:.1f} µs (HTTP) and {redis_redis:.1f} µs "
        "(straight).",
    ]
    return "\n".join(lines) + "\n"


def write(runs: list[TaskWorkersRun], output_dir: Path, tag: str, command: str) -> list[Path]:
    """Write TAG.json and TAG.md; their paths."""
    output_dir.mkdir(parents=True, exist_ok=True)
    data = {
        "command": command,
        "runs": [
            {
                **asdict(run),
                "serverUsPerReport": run.server_us_per_report,
                "redisUsPerReport": run.redis_us_per_report,
            }
            for run in runs
        ],
    }
    json_path = output_dir / f"{tag}.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")
    md_path = output_dir / f"{tag}.md"
    md_path.write_text(table(runs, command))
    return [json_path, md_path]
