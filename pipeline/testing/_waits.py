"""Waits on a job's snapshots, bounded by a timeout of trio's clock (so they fail at once in
virtual time).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import trio

from .._errors import RegistrationTimeoutError, WaitTimeoutError
from .._snapshot import JobSnapshot
from .._store import ExportStore

if TYPE_CHECKING:
    from ..server.testing import STREAM_PATH as STREAM_PATH
    from ..server.testing import TERMINAL_EVENTS as TERMINAL_EVENTS
    from ..server.testing import EventStream as EventStream
    from ..server.testing import ProgressServer as ProgressServer
    from ..server.testing import SlowSSEClient as SlowSSEClient
    from ..server.testing import StreamEvent as StreamEvent
    from ..server.testing import collect_events as collect_events
    from ..server.testing import open_event_stream as open_event_stream
    from ..server.testing import open_slow_sse_client as open_slow_sse_client
    from ..server.testing import require_real_clock as require_real_clock
    from ..server.testing import start_progress_server as start_progress_server


DEFAULT_WAIT_TIMEOUT = 10.0
"""How long the kit's waits wait by default, in seconds of trio's clock."""


def check_timeout(timeout: float) -> float:
    """Check a wait's timeout: a positive, finite number of seconds.

    Returns:
        ``timeout`` as a float.

    Raises:
        ValueError: it is not a positive, finite number (a bool is refused).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if math.isinf(timeout):
        raise ValueError("timeout must be finite: a wait without a bound can hang the test run")
    return float(timeout)


async def collect_snapshots(
    store: ExportStore,
    job_id: str,
    *,
    # A bound of its own (not the caller's fail_after) so the error can show what arrived.
    timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
) -> list[JobSnapshot]:
    """Subscribe to a job and collect its snapshots until its terminal state.

    Waits for the job to be registered first, so it may be called before the job exists.
    What it collects is what a subscriber sees: the snapshot current when it subscribed,
    then each change, *conflated* (a snapshot replaced before this task took it is skipped;
    see ``Subscription``). The terminal snapshot is always the last one.

    Args:
        store: the export store (``progress_store``).
        job_id: the job's id.
        timeout: how long to wait for the terminal state, in seconds of trio's clock
            (virtual under ``autojump_clock``, so a stuck job fails the test at once).

    Returns:
        The snapshots received, oldest first, ending with the terminal one.

    Raises:
        ValueError: ``timeout`` is not a positive, finite number.
        WaitTimeoutError: the job was not registered, or did not reach a terminal state,
            within ``timeout``; its ``received`` holds the snapshots seen until then.
    """
    timeout = check_timeout(timeout)
    received: list[JobSnapshot] = []
    with trio.move_on_after(timeout):
        if await _wait_registered(store, job_id, timeout):
            async with store.subscribe(job_id) as subscription:
                async for snapshot in subscription:
                    received.append(snapshot)
                return received
    raise WaitTimeoutError(
        f"job {job_id!r} did not reach a terminal state within {timeout:g} s; "
        f"{_last_seen(received)}",
        timeout=timeout,
        received=tuple(received),
    )


async def wait_for_snapshot(
    store: ExportStore,
    job_id: str,
    condition: Callable[[JobSnapshot], bool],
    *,
    timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
) -> JobSnapshot:
    """Wait until a job's snapshot satisfies ``condition`` and return that snapshot.

    Use it to wait for an observable state instead of sleeping, and before a test returns
    (pytest-trio cancels the tasks in its ``nursery`` fixture when the test function ends).
    Snapshots are conflated for a slow waiter, so test a condition that stays true once
    reached (``lambda s: s.percent >= 50``), not an exact intermediate value.

    Args:
        store: the export store.
        job_id: the job's id (it may be registered later).
        condition: called with each snapshot the subscription receives.
        timeout: how long to wait, in seconds of trio's clock.

    Returns:
        The first snapshot received for which ``condition`` returned true.

    Raises:
        ValueError: ``timeout`` is not a positive, finite number.
        WaitTimeoutError: no snapshot satisfied ``condition`` within ``timeout``.
        AssertionError: the job reached its terminal state, which does not satisfy
            ``condition``, so the condition can never hold.
    """
    timeout = check_timeout(timeout)
    received: list[JobSnapshot] = []
    with trio.move_on_after(timeout):
        if await _wait_registered(store, job_id, timeout):
            async with store.subscribe(job_id) as subscription:
                async for snapshot in subscription:
                    received.append(snapshot)
                    if condition(snapshot):
                        return snapshot
                raise AssertionError(
                    f"job {job_id!r} ended {received[-1].status.value} at "
                    f"{received[-1].percent:g}% without satisfying the condition"
                )
    raise WaitTimeoutError(
        f"no snapshot of job {job_id!r} satisfied the condition within {timeout:g} s; "
        f"{_last_seen(received)}",
        timeout=timeout,
        received=tuple(received),
    )


async def _wait_registered(store: ExportStore, job_id: str, timeout: float) -> bool:  # noqa: ASYNC109
    # The caller's cancel scope and the store's own timeout expire together (at once, in
    # virtual time); either way the caller reports the timeout.
    try:
        await store.wait_registered(job_id, timeout)
    except RegistrationTimeoutError:
        return False
    return True


def _last_seen(received: Sequence[JobSnapshot]) -> str:
    if not received:
        return "no snapshot arrived (is the job registered, and is its producer running?)"
    last = received[-1]
    return f"last snapshot: {last.status.value} {last.percent:g}% stage {last.stage!r}"
