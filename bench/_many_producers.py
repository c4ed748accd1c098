"""Many small producers: each job its own progress client, both producer paths side by side.

``--jobs`` external jobs (1,000 by default) on our server (batched, in-memory store), each
reported by its own ``open_progress_client`` (trio) at ``--rate`` Hz (10 by default) with a
flush interval of 1 / rate, so every client sends one batch of one update per interval:
through the persistent connection (``path="websocket"``: one WebSocket per client, a frame
per batch) or through ``POST /api/progress`` (``path="http"``: a request per batch), the paths
alternating round by round (ws http, http ws, ...) against a fresh server each.

Figures per run: updates the server accepted per second (against jobs x rate offered), the
server's CPU per accepted update (µs; user + system, psutil, over the reporting window), and
the load generator's CPU share (every client runs in this one process: near 100% means the
client side, not the server, was the limit).

Run: ``python -m progress_sync.bench._many_producers [--jobs 1000] [--rate 10] [--duration 5]
[--rounds 2]``; writes ``bench/results/many-producers.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import trio
from progress_sync.client import open_progress_client

from ._processes import open_server_process, progress_sync_argv
from ._recorder import cpu_seconds
from ._workload import System

PATHS = ("websocket", "http")


@dataclass
class ManyRun:
    """One path in one round."""

    path: str
    round: int
    jobs: int
    rate: float
    window_s: float
    accepted: int
    batches: int
    server_cpu_s: float
    client_cpu_s: float
    paths_used: dict[str, int]

    @property
    def accepted_per_s(self) -> float:
        return self.accepted / self.window_s if self.window_s else math.nan

    @property
    def us_per_update(self) -> float:
        return self.server_cpu_s / self.accepted * 1e6 if self.accepted else math.nan


@dataclass
class ManyReport:
    """Every run, and the medians per path."""

    command: str
    started_utc: str
    load_average: tuple[float, ...]
    runs: list[ManyRun] = field(default_factory=list)

    def median(self, path: str, attribute: str) -> float:
        values = [getattr(r, attribute) for r in self.runs if r.path == path]
        return statistics.median(values) if values else math.nan

    def markdown(self) -> str:
        first = self.runs[0] if self.runs else None
        offered = first.jobs * first.rate if first else math.nan
        lines = [
            f"# Many small producers: {self.started_utc}",
            "",
            f"`{self.command}`; load average at the start {self.load_average}",
            "",
            f"{first.jobs if first else '?'} jobs, each its own trio progress client reporting at "
            f"{first.rate if first else '?':g} Hz (offered {offered:,.0f} updates/s); medians "
            "of the rounds.",
            "",
            "| path | updates/s accepted | server µs per update | client CPU |",
            "| --- | --- | --- | --- |",
        ]
        for path in PATHS:
            lines.append(
                f"| {path} | {self.median(path, 'accepted_per_s'):,.0f} | "
                f"{self.median(path, 'us_per_update'):.1f} | "
                f"{self.median(path, 'client_share'):.0%} |"
            )
        ws, http = self.median("websocket", "us_per_update"), self.median("http", "us_per_update")
        lines += [
            "",
            f"Server CPU per update, http ÷ websocket: **{http / ws:.1f}x**.",
            "",
            "| path | round | window s | accepted | batches | server CPU s | client CPU s | "
            "paths used |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.runs:
            lines.append(
                f"| {r.path} | {r.round} | {r.window_s:.2f} | {r.accepted:,} | {r.batches:,} | "
                f"{r.server_cpu_s:.2f} | {r.client_cpu_s:.2f} | {r.paths_used} |"
            )
        return "\n".join(lines) + "\n"


def _client_share(run: ManyRun) -> float:
    return run.client_cpu_s / run.window_s if run.window_s else math.nan


ManyRun.client_share = property(_client_share)  # type: ignore[attr-defined]  # a derived figure


async def _register(url: str, job_ids: list[str]) -> None:
    limiter = trio.CapacityLimiter(16)
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one(job_id: str) -> None:
            async with limiter:
                response = await client.post("/api/jobs", json={"jobId": job_id})
                response.raise_for_status()

        async with trio.open_nursery() as nursery:
            for job_id in job_ids:
                nursery.start_soon(one, job_id)


async def _one_path(args: argparse.Namespace, path: str, rnd: int) -> ManyRun:
    argv = progress_sync_argv(System.BATCHED, flush_interval=0.5)
    async with open_server_process(argv) as server:
        job_ids = [f"many-{rnd}-{j}" for j in range(args.jobs)]
        await _register(server.url, job_ids)
        interval = 1.0 / args.rate
        start = trio.Event()
        totals = {"accepted": 0, "batches": 0}
        opened = {"clients": 0}
        used: dict[str, int] = {}

        async def producer(job_id: str, index: int) -> None:
            async with open_progress_client(
                server.url,
                flush_interval=interval,
                path="websocket" if path == "websocket" else "http",
            ) as client:
                # One report before the window opens the client's connection (the
                # WebSocket's handshake is not part of what is measured).
                client.report_nowait(job_id, 0.0, "many")
                await client.flush()
                opened["clients"] += 1
                await start.wait()
                # Spread the clients' ticks over the interval, as independent producers are.
                await trio.sleep(interval * index / args.jobs)
                deadline = trio.current_time() + args.duration
                n = 0
                while trio.current_time() < deadline:
                    n += 1
                    client.report_nowait(job_id, min(100.0, n * 0.1), "many")
                    await trio.sleep(interval)
                stats = client.statistics()
            totals["accepted"] += stats.updates_accepted - 1  # the warm-up report
            totals["batches"] += stats.batches_sent - 1
            used[stats.path] = used.get(stats.path, 0) + 1

        async with trio.open_nursery() as nursery:
            for index, job_id in enumerate(job_ids):
                nursery.start_soon(producer, job_id, index)
            with trio.fail_after(120):
                while opened["clients"] < args.jobs:  # noqa: ASYNC110  # a count, not an event
                    await trio.sleep(0.1)
            await trio.sleep(0.5)
            server_before = server.cpu_seconds()
            client_before = cpu_seconds()
            began = time.perf_counter()
            start.set()
        window = time.perf_counter() - began
        run = ManyRun(
            path=path,
            round=rnd,
            jobs=args.jobs,
            rate=args.rate,
            window_s=window,
            accepted=totals["accepted"],
            batches=totals["batches"],
            server_cpu_s=server.cpu_seconds() - server_before,
            client_cpu_s=cpu_seconds() - client_before,
            paths_used=used,
        )
    print(
        f"  {path:9} round {rnd}: {run.accepted_per_s:,.0f} updates/s accepted, "
        f"{run.us_per_update:.1f} µs/update, client CPU {_client_share(run):.0%}, used {used}",
        flush=True,
    )
    return run


async def run(args: argparse.Namespace, report: ManyReport) -> None:
    """Every round, both paths, alternating."""
    for rnd in range(args.rounds):
        for path in PATHS if rnd % 2 == 0 else PATHS[::-1]:
            report.runs.append(await _one_path(args, path, rnd))


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--tag", default="many-producers")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    report = ManyReport(
        command="python -m progress_sync.bench._many_producers "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        started_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        load_average=tuple(round(x, 2) for x in os.getloadavg()),
    )
    trio.run(run, args, report)
    text = report.markdown()
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.tag}.md").write_text(text)
    (args.output_dir / f"{args.tag}.json").write_text(
        json.dumps(asdict(report), indent=2, default=str) + "\n"
    )


if __name__ == "__main__":
    main()
