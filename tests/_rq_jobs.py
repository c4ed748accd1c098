"""The RQ job functions the RQ tests run in a real ``rq worker`` process, and the worker class
it runs (``-w _rq_jobs.TestWorker``): importing this module configures the integration.

``PS_TEST_LEASE`` is the jobs' lease in seconds; the store comes from ``PROGRESS_SYNC_STORE``
and ``PROGRESS_SYNC_STORE_PREFIX``.
"""

from __future__ import annotations

import os
import time

from progress_sync.rq import ProgressWorker, configure, report, tqdm

configure(flush_interval=0.05, heartbeat_timeout=float(os.environ.get("PS_TEST_LEASE", "30")))


class TestWorker(ProgressWorker):
    """The integration's worker, with this module (and so its settings) imported first."""


def count(steps: int, hz: float) -> dict[str, int]:
    """Report ``steps`` times at ``hz`` reports per second, then return."""
    for step in range(1, steps + 1):
        report(100.0 * step / steps, "count", f"step {step} of {steps}")
        time.sleep(1.0 / hz)
    return {"steps": steps}


def bar(steps: int, hz: float) -> int:
    """The same through the tqdm wrapper."""
    for _ in tqdm(range(steps), desc="bar", mininterval=0.01):
        time.sleep(1.0 / hz)
    return steps


def boom(percent: float) -> None:
    """Report ``percent``, then fail."""
    report(percent, "boom")
    time.sleep(0.2)
    raise ValueError(f"boom at {percent:g}%")


def silent(seconds: float) -> set[int]:
    """Report nothing; return a value that is not JSON."""
    time.sleep(seconds)
    return {1, 2, 3}
