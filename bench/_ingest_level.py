"""The ingest level: server CPU per report on each producer path, against the stack's floor.

Our server (``progress-sync serve``, batched, in-memory store, no subscribers) and the floor
(``bench._raw_asgi``: a raw ASGI app on the same Hypercorn that reads the body and decodes the
JSON with the standard library, nothing else) take the same reports, alternating in one run
(ours then the floor, the floor then ours, ...), on each path:

- ``array``: ``POST /api/progress`` with a JSON array, ``PRODUCERS`` producer tasks each
  posting the reports of its share of the jobs every ``tick`` seconds (100 jobs x 100 Hz:
  125 reports per request, 80 requests/s), one request in flight per task;
- ``ndjson``: the same as NDJSON;
- ``ws``: the same arrays as text frames of one WebSocket per producer task
  (``GET /api/progress/ws``), each answered before the next is sent;
- ``per-job``: ``POST /api/jobs/{jobId}/progress``, one report per request, each job every
  ``per_job_interval`` seconds (100 jobs: 500 requests/s at the default 0.2 s).

The figure is the server process's CPU (user + system, psutil) over the window divided by the
reports it accepted: µs per report; the target is ours ÷ floor <= 1.5 on each path.

Run: ``python -m progress_sync.bench._ingest_level [--duration 5] [--rounds 3]``; it writes
``bench/results/ingest.json`` and ``.md`` (``--output-dir``, ``--tag``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from websockets.trio.client import connect as connect_websocket

from ._processes import ServerProcess, module_argv, open_server_process, progress_sync_argv
from ._recorder import cpu_seconds
from ._workload import System

PATHS = ("array", "ndjson", "ws", "per-job")
PRODUCERS = 4
TARGET = 1.5


@dataclass
class PathResult:
    """One path on one system in one round."""

    system: str
    path: str
    round: int
    reports: int
    requests: int
    window_s: float
    server_cpu_s: float
    client_cpu_s: float

    @property
    def us_per_report(self) -> float:
        return self.server_cpu_s / self.reports * 1e6 if self.reports else math.nan


@dataclass
class IngestReport:
    """Every run of the level, and the ratios per path (medians over rounds)."""

    command: str
    started_utc: str
    load_average: tuple[float, float, float]
    duration_s: float
    jobs: int
    rate: float
    tick_s: float
    per_job_interval_s: float
    runs: list[PathResult] = field(default_factory=list)

    def median_us(self, system: str, path: str) -> float:
        values = [r.us_per_report for r in self.runs if r.system == system and r.path == path]
        return statistics.median(values) if values else math.nan

    def ratio(self, path: str) -> float:
        return self.median_us("ours", path) / self.median_us("floor", path)

    def markdown(self) -> str:
        lines = [
            f"# Ingest level: {self.started_utc}",
            "",
            f"`{self.command}`; load average at the start {self.load_average}",
            "",
            f"{self.jobs} jobs x {self.rate:g} Hz for {self.duration_s:g} s per run; "
            f"{PRODUCERS} producers, a batch every {self.tick_s:g} s; per-job path: each job "
            f"every {self.per_job_interval_s:g} s. Medians of {self.rounds} rounds.",
            "",
            "| path | ours µs/report | floor µs/report | ours ÷ floor | target |",
            "| --- | --- | --- | --- | --- |",
        ]
        for path in PATHS:
            if not any(r.path == path for r in self.runs):
                continue
            ratio = self.ratio(path)
            lines.append(
                f"| {path} | {self.median_us('ours', path):.2f} | "
                f"{self.median_us('floor', path):.2f} | **{ratio:.2f}x** | "
                f"<= {TARGET:g}x {'met' if ratio <= TARGET else 'missed'} |"
            )
        lines += [
            "",
            "| system | path | round | reports | requests | window s | server CPU s | "
            "client CPU s | µs/report |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in self.runs:
            lines.append(
                f"| {r.system} | {r.path} | {r.round} | {r.reports:,} | {r.requests:,} | "
                f"{r.window_s:.2f} | {r.server_cpu_s:.3f} | {r.client_cpu_s:.3f} | "
                f"{r.us_per_report:.2f} |"
            )
        return "\n".join(lines) + "\n"

    @property
    def rounds(self) -> int:
        return max((r.round for r in self.runs), default=-1) + 1


def _reports(
    job_ids: Sequence[str], due: int, base: float, previous: float, wall: float
) -> list[dict[str, Any]]:
    return [
        {
            "jobId": job_id,
            "percent": round(base + 0.5 * k / due, 3),
            "stage": "bench",
            "reportedAt": previous + (wall - previous) * (k + 1) / due,
        }
        for k in range(due)
        for job_id in job_ids
    ]


async def _batches(
    job_ids: Sequence[str],
    duration: float,
    rate: float,
    tick: float,
    deliver: Callable[[list[dict[str, Any]]], Awaitable[None]],
) -> None:
    """Every ``tick``, the reports due since the last one for ``job_ids``, to ``deliver``."""
    start = trio.current_time()
    end = start + duration
    sent = 0
    previous = time.time()
    next_tick = start
    while (now := trio.current_time()) < end:
        due = min(int((now - start) * rate) - sent, math.ceil(2 * rate * tick))
        if due > 0:
            wall = time.time()
            await deliver(_reports(job_ids, due, 99.0 * (now - start) / duration, previous, wall))
            previous = wall
            sent += due
        next_tick += tick
        await trio.sleep_until(max(next_tick, trio.current_time()))


@dataclass
class _Counts:
    reports: int = 0
    requests: int = 0


def _check(response: httpx.Response) -> int:
    if response.status_code not in (200, 202):
        raise RuntimeError(
            f"{response.request.url} answered {response.status_code} {response.text}"
        )
    return int(response.json()["accepted"])


async def _run_path(
    url: str, path: str, job_ids: list[str], args: argparse.Namespace, counts: _Counts
) -> None:
    shares = [job_ids[t::PRODUCERS] for t in range(PRODUCERS)]
    limits = httpx.Limits(max_connections=PRODUCERS * 4, max_keepalive_connections=PRODUCERS * 4)
    async with (
        httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client,
        trio.open_nursery() as nursery,
    ):
        for share in shares:
            if path in ("array", "ndjson"):

                async def deliver(
                    reports: list[dict[str, Any]], *, ndjson: bool = path == "ndjson"
                ) -> None:
                    if ndjson:
                        content = "\n".join(json.dumps(r, separators=(",", ":")) for r in reports)
                        kind = "application/x-ndjson"
                    else:
                        content = json.dumps(reports, separators=(",", ":"))
                        kind = "application/json"
                    response = await client.post(
                        "/api/progress", content=content, headers={"content-type": kind}
                    )
                    counts.reports += _check(response)
                    counts.requests += 1

                nursery.start_soon(_batches, share, args.duration, args.rate, args.tick, deliver)
            elif path == "ws":
                nursery.start_soon(_socket_producer, url, share, args, counts)
            else:

                async def deliver_each(reports: list[dict[str, Any]]) -> None:
                    # One request per job with its latest report (a per-job producer).
                    latest = {r["jobId"]: r for r in reports}
                    for job_id, report in latest.items():
                        body = {k: v for k, v in report.items() if k != "jobId"}
                        response = await client.post(f"/api/jobs/{job_id}/progress", json=body)
                        counts.reports += _check(response)
                        counts.requests += 1

                rate = 1.0 / args.per_job_interval
                nursery.start_soon(
                    _batches, share, args.duration, rate, args.per_job_interval, deliver_each
                )


async def _socket_producer(
    url: str, job_ids: list[str], args: argparse.Namespace, counts: _Counts
) -> None:
    ws_url = url.replace("http://", "ws://") + "/api/progress/ws"
    async with connect_websocket(ws_url, compression=None, proxy=None, max_size=None) as socket:

        async def deliver(reports: list[dict[str, Any]]) -> None:
            await socket.send(json.dumps(reports, separators=(",", ":")))
            answer = json.loads(await socket.recv())
            counts.reports += int(answer["accepted"])
            counts.requests += 1

        await _batches(job_ids, args.duration, args.rate, args.tick, deliver)


async def _measure(
    server: ServerProcess,
    system: str,
    path: str,
    rnd: int,
    job_ids: list[str],
    args: argparse.Namespace,
) -> PathResult:
    counts = _Counts()
    cpu_before = server.cpu_seconds()
    client_before = cpu_seconds()
    started = time.perf_counter()
    await _run_path(server.url, path, job_ids, args, counts)
    window = time.perf_counter() - started
    await trio.sleep(0.6)  # the last flush of the buffer belongs to these reports
    result = PathResult(
        system=system,
        path=path,
        round=rnd,
        reports=counts.reports,
        requests=counts.requests,
        window_s=window,
        server_cpu_s=server.cpu_seconds() - cpu_before,
        client_cpu_s=cpu_seconds() - client_before,
    )
    print(
        f"  {system:5} {path:8} round {rnd}: {result.reports:,} reports, "
        f"{result.requests:,} requests, {result.us_per_report:.2f} µs/report "
        f"(client CPU {result.client_cpu_s / window:.0%})",
        flush=True,
    )
    return result


async def _register(url: str, job_ids: list[str]) -> None:
    async with httpx.AsyncClient(base_url=url) as client:
        for job_id in job_ids:
            response = await client.post("/api/jobs", json={"jobId": job_id, "stage": "bench"})
            response.raise_for_status()


async def run(args: argparse.Namespace, report: IngestReport) -> None:
    """Every round: both systems (alternating order), every path on each."""
    paths = args.paths or list(PATHS)
    for rnd in range(args.rounds):
        systems = ["ours", "floor"] if rnd % 2 == 0 else ["floor", "ours"]
        for system in systems:
            if system == "ours":
                argv = progress_sync_argv(System.BATCHED, flush_interval=0.5)
            else:
                argv = module_argv("progress_sync.bench._raw_asgi")
            async with open_server_process(argv) as server:
                job_ids = [f"ingest-{rnd}-{j}" for j in range(args.jobs)]
                if system == "ours":
                    await _register(server.url, job_ids)
                await trio.sleep(0.5)
                for path in paths:
                    report.runs.append(await _measure(server, system, path, rnd, job_ids, args))


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run, print and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--tick", type=float, default=0.05)
    parser.add_argument("--per-job-interval", type=float, default=0.2)
    parser.add_argument("--path", dest="paths", action="append", choices=PATHS)
    parser.add_argument("--output-dir", type=Path, default=Path("bench/results"))
    parser.add_argument("--tag", default="ingest")
    args = parser.parse_args(argv)
    report = IngestReport(
        command="python -m progress_sync.bench._ingest_level "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        started_utc=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        load_average=tuple(round(x, 2) for x in os.getloadavg()),  # type: ignore[arg-type]
        duration_s=args.duration,
        jobs=args.jobs,
        rate=args.rate,
        tick_s=args.tick,
        per_job_interval_s=args.per_job_interval,
    )
    trio.run(run, args, report)
    text = report.markdown()
    print(text)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / f"{args.tag}.md").write_text(text)
    data = asdict(report)
    data["ratios"] = {p: report.ratio(p) for p in PATHS if any(r.path == p for r in report.runs)}
    (args.output_dir / f"{args.tag}.json").write_text(json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    main()
