"""The Celery app the Celery tests run in a real ``celery worker`` process (and publish from).

Settings come from the environment, so the worker process and the test share them:
``PS_TEST_BROKER`` (the broker, a Redis database of these tests' own), ``PS_TEST_QUEUE`` (a
queue of this test run alone), ``PROGRESS_SYNC_STORE`` and ``PROGRESS_SYNC_STORE_PREFIX`` (the
server's store), ``PS_TEST_LEASE`` (the jobs' lease, seconds).
"""

from __future__ import annotations

import os
import time

from celery import Celery
from progress_sync.celery import install, report, tqdm

app = Celery("progress_sync_test", broker=os.environ.get("PS_TEST_BROKER", "memory://"))
app.conf.update(
    task_default_queue=os.environ.get("PS_TEST_QUEUE", "celery"),
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    worker_prefetch_multiplier=4,
)
progress = install(
    app,
    flush_interval=0.05,
    heartbeat_timeout=float(os.environ.get("PS_TEST_LEASE", "30")),
)


@app.task
def count(steps: int, hz: float) -> dict[str, int]:
    """Report ``steps`` times at ``hz`` reports per second, then return."""
    for step in range(1, steps + 1):
        report(100.0 * step / steps, "count", f"step {step} of {steps}")
        time.sleep(1.0 / hz)
    return {"steps": steps}


@app.task
def bar(steps: int, hz: float) -> int:
    """The same through the tqdm wrapper."""
    for _ in tqdm(range(steps), desc="bar", mininterval=0.01):
        time.sleep(1.0 / hz)
    return steps


@app.task
def boom(percent: float) -> None:
    """Report ``percent``, then fail."""
    report(percent, "boom")
    time.sleep(0.2)
    raise ValueError(f"boom at {percent:g}%")


@app.task
def silent(seconds: float) -> set[int]:
    """Report nothing; return a value that is not JSON."""
    time.sleep(seconds)
    return {1, 2, 3}
