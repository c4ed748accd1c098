"""One task-queue worker process of the ``--task-workers`` scenario (``_task_workers``).

``python -m progress_sync.bench._task_worker_producer --transport redis|http --url URL
[--prefix P] --jobs J --rate R --duration D --flush-interval F --name W``: registers J jobs,
reports each at R Hz for D seconds through the worker producer (``progress_sync.worker``:
straight to the Redis store, or through the HTTP client), ends them ``completed``, and prints
one JSON line ``{"reports": N, "seconds": S}``.
"""

from __future__ import annotations

import argparse
import json
import time
from contextlib import AbstractContextManager

from progress_sync.worker import TaskProducer, open_http_producer, open_redis_producer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("redis", "http"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", default="progress-sync:")
    parser.add_argument("--jobs", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--flush-interval", type=float, required=True)
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    opened: AbstractContextManager[TaskProducer]
    if args.transport == "redis":
        opened = open_redis_producer(
            args.url, prefix=args.prefix, flush_interval=args.flush_interval
        )
    else:
        opened = open_http_producer(args.url, flush_interval=args.flush_interval)
    reports = 0
    with opened as producer:
        job_ids = [f"{args.name}-{n}" for n in range(args.jobs)]
        for job_id in job_ids:
            producer.register(job_id, status="running", stage="work")
        started = time.monotonic()
        tick = 1.0 / args.rate
        next_tick = started
        while (now := time.monotonic()) - started < args.duration:
            percent = min(100.0, 100.0 * (now - started) / args.duration)
            for job_id in job_ids:
                producer.report(job_id, percent, "work")
            reports += len(job_ids)
            next_tick += tick
            time.sleep(max(0.0, next_tick - time.monotonic()))
        for job_id in job_ids:
            producer.finish(job_id, "completed")
        seconds = time.monotonic() - started
    print(json.dumps({"reports": reports, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
