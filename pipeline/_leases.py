"""Leases of external jobs: the reaper that ends jobs whose producer stopped talking.

A job registered with ``heartbeat_timeout`` (``heartbeatTimeoutS`` over HTTP) holds a lease:
every applied progress update and every ``ExportStore.heartbeat`` renews it. A producer that
dies (SIGKILL, OOM, a lost machine) renews nothing, and once the lease has run out the reaper
ends the job ``failed`` with ``LEASE_EXPIRED_ERROR``, so viewers stop watching a frozen bar.

Every server process runs one reaper over its store; on Redis the expiry of each job is one
Lua script step (check and terminal write together), so however many processes reap, each
expired job is ended exactly once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from ._checks import check_seconds
from ._errors import StoreUnavailableError
from ._store import ExportStore

logger = logging.getLogger(__name__)

DEFAULT_REAP_INTERVAL = 1.0
"""Seconds between two lease checks of the reaper: a job whose lease ran out is ended within
this long after it did."""


async def run_lease_reaper(
    store: ExportStore,
    *,
    interval: float = DEFAULT_REAP_INTERVAL,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Call ``store.expire_leases()`` every ``interval`` seconds, for ever.

    A store that cannot be reached is logged and tried again at the next interval; every job
    ended is logged at WARNING with its id and error.

    Args:
        store: the export store whose leases to enforce.
        interval: seconds between two checks (trio's clock, so virtual time in tests).

    Raises:
        ValueError: ``interval`` is not a positive, finite number.
    """
    check_seconds("interval", interval)
    task_status.started()
    while True:
        await trio.sleep(interval)
        try:
            ended = await store.expire_leases()
        except StoreUnavailableError as exc:
            logger.warning("lease check skipped, the store is unavailable: %s", exc)
            continue
        for snapshot in ended:
            logger.warning("job %s ended failed: %s", snapshot.job_id, snapshot.error)


@asynccontextmanager
async def open_lease_reaper(
    store: ExportStore, *, interval: float = DEFAULT_REAP_INTERVAL
) -> AsyncIterator[None]:
    """Run ``run_lease_reaper`` in a nursery owned by this block; it stops when the block ends.

    ``async with open_lease_reaper(store):``. The server opens one per process.

    Raises:
        ValueError: ``interval`` is not a positive, finite number.
    """
    check_seconds("interval", interval)
    async with trio.open_nursery() as nursery:
        await nursery.start(functools.partial(run_lease_reaper, store, interval=interval))
        try:
            yield
        finally:
            nursery.cancel_scope.cancel()
