"""The reference a user might pick instead: per-update fan-out with sse-starlette on uvicorn.

Every report is applied to the job at once and its snapshot put on every subscriber's
``asyncio.Queue``; each stream is an ``EventSourceResponse`` over its queue (sse-starlette's
documented pattern). It speaks the same HTTP contract as our server, so the bench runs the same
workload against it. Needs the ``bench`` extra (``pip install -e '.[bench]'``).

Run: ``python -m progress_sync.bench._starlette_ref [--host 127.0.0.1] [--port 0]``; it prints
``Running on http://HOST:PORT`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from progress_sync._contract import JOB_EXISTS, JOB_FINISHED, JOB_NOT_FOUND, error_body
from sse_starlette import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TERMINAL = {"completed": "job-completed", "failed": "job-failed", "cancelled": "job-cancelled"}


@dataclass(eq=False)
class _Job:
    snapshot: dict[str, Any]
    subscribers: set[asyncio.Queue[tuple[str, int, str]]] = field(default_factory=set)


class Reference:
    """The jobs and their subscribers, and the counters ``/healthz`` shows."""

    def __init__(self) -> None:
        self.jobs: dict[str, _Job] = {}
        self.reports = 0
        self.writes = 0

    def publish(self, job: _Job) -> None:
        """Encode the job's snapshot and put it on every subscriber's queue."""
        snapshot = job.snapshot
        event = TERMINAL.get(snapshot["status"], "job-progress")
        data = json.dumps(snapshot, separators=(",", ":"))
        for queue in job.subscribers:
            queue.put_nowait((event, snapshot["seq"], data))

    async def create_job(self, request: Request) -> JSONResponse:
        body = await request.json()
        job_id = str(body["jobId"])
        if job_id in self.jobs:
            return JSONResponse(error_body(JOB_EXISTS, job_id, "jobId"), 409)
        now = time.time()
        self.jobs[job_id] = _Job(
            {
                "jobId": job_id,
                "status": body.get("status", "queued"),
                "percent": 0.0,
                "stage": body.get("stage", ""),
                "message": body.get("message"),
                "seq": 1,
                "reportedAt": now,
                "error": None,
                "result": None,
            }
        )
        self.writes += 1
        url = f"/api/jobs/{job_id}"
        return JSONResponse(
            {
                "jobId": job_id,
                "status": body.get("status", "queued"),
                "statusUrl": url,
                "streamUrl": f"{url}/progress/stream",
            },
            201,
        )

    async def progress(self, request: Request) -> JSONResponse:
        reports = await request.json()
        accepted = 0
        unknown: list[str] = []
        for report in reports:
            job = self.jobs.get(report["jobId"])
            if job is None:
                unknown.append(report["jobId"])
                continue
            snapshot = job.snapshot
            if snapshot["status"] in TERMINAL:
                continue
            snapshot.update(
                status="running",
                percent=float(report["percent"]),
                stage=report["stage"],
                message=report.get("message"),
                seq=snapshot["seq"] + 1,
                reportedAt=float(report.get("reportedAt", time.time())),
            )
            accepted += 1
            self.writes += 1
            self.publish(job)
        self.reports += accepted
        return JSONResponse({"accepted": accepted, "errors": [], "unknownJobs": unknown})

    async def complete(self, request: Request) -> JSONResponse:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse(error_body(JOB_NOT_FOUND, "", "jobId"), 404)
        if job.snapshot["status"] in TERMINAL:
            return JSONResponse(error_body(JOB_FINISHED, "", "jobId"), 409)
        body = await request.json()
        job.snapshot.update(
            status="completed",
            percent=100.0,
            seq=job.snapshot["seq"] + 1,
            reportedAt=time.time(),
            result=body.get("result"),
        )
        self.writes += 1
        self.publish(job)
        return JSONResponse(job.snapshot)

    async def stream(self, request: Request) -> EventSourceResponse | JSONResponse:
        job = self.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse(error_body(JOB_NOT_FOUND, "", "jobId"), 404)
        queue: asyncio.Queue[tuple[str, int, str]] = asyncio.Queue()
        job.subscribers.add(queue)
        self.publish_one(job, queue)

        async def events() -> Any:
            try:
                while True:
                    event, seq, data = await queue.get()
                    yield {"event": event, "id": str(seq), "data": data}
                    if event != "job-progress":
                        return
            finally:
                job.subscribers.discard(queue)

        return EventSourceResponse(events())

    def publish_one(self, job: _Job, queue: asyncio.Queue[tuple[str, int, str]]) -> None:
        """Give a new subscriber the current snapshot first."""
        snapshot = job.snapshot
        event = TERMINAL.get(snapshot["status"], "job-progress")
        queue.put_nowait((event, snapshot["seq"], json.dumps(snapshot, separators=(",", ":"))))

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "status": "ok",
                "store": {"jobs": len(self.jobs), "writes": self.writes},
                "sink": {"reportsReceived": self.reports, "coalesced": 0},
            }
        )


def create_app() -> Starlette:
    """The reference app: the same routes as ours that the bench uses."""
    reference = Reference()
    return Starlette(
        routes=[
            Route("/api/jobs", reference.create_job, methods=["POST"]),
            Route("/api/progress", reference.progress, methods=["POST"]),
            Route("/api/jobs/{job_id}/complete", reference.complete, methods=["POST"]),
            Route("/api/jobs/{job_id}/progress/stream", reference.stream, methods=["GET"]),
            Route("/healthz", reference.healthz, methods=["GET"]),
        ]
    )


def main() -> None:
    """Serve the reference on uvicorn until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(4096)  # before saying where it listens, so no early connection is refused
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(create_app(), log_level="warning", access_log=False, lifespan="off")
    server = uvicorn.Server(config)
    print(f"Running on http://{host}:{port} (sse-starlette on uvicorn)", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
