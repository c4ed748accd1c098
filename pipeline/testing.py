"""Test kit, pipeline half: store and buffer fixtures, waits and checks, in virtual time.

A pytest plugin. Installing progress-sync registers ``server.testing`` through the
``pytest11`` entry point of the same name, and that plugin re-exports the fixtures below, so
they are there in every test of a project that has progress-sync installed. To use this half
alone, name it instead: ``-p pipeline.testing`` or ``pytest_plugins = ["pipeline.testing"]``.
The helpers are plain functions: import them from here (or from ``server.testing``).

This module never imports ``server``: code that only uses the pipeline can be tested without
the HTTP stack. The fixtures are async and need pytest-trio (``trio_mode = true``, or tests
marked ``@pytest.mark.trio``).

Fixtures (prefixed ``progress_`` so they do not clash with your own):
    progress_flush_interval: the buffer's flush interval in seconds (0.05); override it.
    progress_store: a fresh ``MemoryStore``.
    progress_buffer: an ``UpdateBuffer`` over ``progress_store``, its drain task running; it
        flushes every ``progress_flush_interval`` seconds of trio's clock, so with
        ``autojump_clock`` a flush costs no real time.

Waits (bounded by a timeout of trio's clock, so they fail at once in virtual time):
    collect_snapshots: a job's snapshots until its terminal state.
    wait_for_snapshot: the first snapshot of a job that satisfies a condition.

Checks (raise ``AssertionError`` saying which record broke which rule), for snapshots and
for the stream events of ``server.testing`` alike:
    assert_percent_never_decreases, assert_exactly_one_terminal, assert_terminal_last,
    assert_seq_increasing, and assert_stream_well_formed (all four).

Two traps this kit is built around, described in the README ("Testing your own code"):
pytest-trio's ``nursery`` fixture cancels what the test started when the test function
returns, so a test must wait for an observable condition (``collect_snapshots``,
``wait_for_snapshot``) rather than return; and the autojump clock jumps whenever every task
is blocked, including on real sockets and threads, so only in-process tests use it.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Protocol, TypeVar

import pytest
import trio

from ._buffer import UpdateBuffer, open_update_buffer
from ._errors import RegistrationTimeoutError, WaitTimeoutError
from ._memory_store import MemoryStore
from ._snapshot import JobSnapshot
from ._store import ExportStore

DEFAULT_TEST_FLUSH_INTERVAL = 0.05
"""The flush interval of the kit's buffer and server, in seconds: short, so tests on the real
clock stay fast; in virtual time any value costs nothing."""

DEFAULT_WAIT_TIMEOUT = 10.0
"""How long the kit's waits wait by default, in seconds of trio's clock."""


class ProgressRecord(Protocol):
    """What the checks read: a ``JobSnapshot`` or a ``server.testing.StreamEvent``.

    Attributes:
        percent: progress in percent (0-100), or None when the record carries none (a
            ``job-error`` event); such records are skipped by the percent check.
        seq: the job's version (the SSE ``id``), or None when the record has none.
        is_terminal: True for a terminal state (``completed``, ``failed``, ``cancelled``).
    """

    @property
    def percent(self) -> float | None: ...

    @property
    def seq(self) -> int | None: ...

    @property
    def is_terminal(self) -> bool: ...


R = TypeVar("R", bound=ProgressRecord)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def progress_flush_interval() -> float:
    """Seconds between flushes of ``progress_buffer`` and of ``progress_server``'s buffer.

    0.05 by default. Override it in your conftest or test module to test your own interval.
    """
    return DEFAULT_TEST_FLUSH_INTERVAL


@pytest.fixture
def progress_store() -> MemoryStore:
    """A fresh in-memory export store, shared by the kit's buffer, server and client."""
    return MemoryStore()


@pytest.fixture
async def progress_buffer(
    progress_store: MemoryStore, progress_flush_interval: float
) -> AsyncIterator[UpdateBuffer]:
    """An ``UpdateBuffer`` over ``progress_store`` with its drain task running.

    Reports reach the store at the next flush, ``progress_flush_interval`` seconds of trio's
    clock later (no real time under ``autojump_clock``); ``await progress_buffer.flush()``
    writes them at once. The buffer is closed, and flushed, after the test.
    """
    async with open_update_buffer(progress_store, flush_interval=progress_flush_interval) as buffer:
        yield buffer


# --- waits ----------------------------------------------------------------------------------


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


# --- checks ---------------------------------------------------------------------------------


def _describe(index: int, record: ProgressRecord) -> str:
    terminal = ", terminal" if record.is_terminal else ""
    return f"record {index} (seq {record.seq}, percent {record.percent}{terminal})"


def assert_percent_never_decreases(records: Iterable[ProgressRecord]) -> None:
    """Check that percent never goes down from one record to the next.

    Records without a percent (``None``) are skipped.

    Raises:
        AssertionError: naming the two records where percent went down.
    """
    previous: tuple[int, ProgressRecord] | None = None
    for index, record in enumerate(records):
        if record.percent is None:
            continue
        if previous is not None and record.percent < previous[1].percent:  # type: ignore[operator]
            raise AssertionError(
                f"percent decreased: {_describe(*previous)} then {_describe(index, record)}"
            )
        previous = (index, record)


def assert_exactly_one_terminal(records: Iterable[ProgressRecord]) -> None:
    """Check that exactly one record is a terminal state.

    Raises:
        AssertionError: there is none, or more than one (the message lists them).
    """
    terminal = [(i, r) for i, r in enumerate(records) if r.is_terminal]
    if len(terminal) != 1:
        listed = "; ".join(_describe(i, r) for i, r in terminal)
        raise AssertionError(
            f"expected exactly one terminal record, got {len(terminal)}"
            + (f": {listed}" if listed else "")
        )


def assert_terminal_last(records: Iterable[ProgressRecord]) -> None:
    """Check that the last record is a terminal state (nothing comes after the end).

    Raises:
        AssertionError: there are no records, or the last one is not terminal.
    """
    records = list(records)
    if not records:
        raise AssertionError("no records: the stream ended before anything arrived")
    if not records[-1].is_terminal:
        raise AssertionError(f"the last record is not terminal: {_describe(-1, records[-1])}")


def assert_seq_increasing(records: Iterable[ProgressRecord]) -> None:
    """Check that ``seq`` (the SSE ``id``) strictly increases; records without one are skipped.

    Raises:
        AssertionError: naming the two records where ``seq`` did not increase.
    """
    previous: tuple[int, ProgressRecord] | None = None
    for index, record in enumerate(records):
        if record.seq is None:
            continue
        if previous is not None and record.seq <= previous[1].seq:  # type: ignore[operator]
            raise AssertionError(
                f"seq did not increase: {_describe(*previous)} then {_describe(index, record)}"
            )
        previous = (index, record)


def assert_stream_well_formed(records: Iterable[R]) -> R:
    """Run every check: percent never decreases, seq increases, one terminal record, last.

    Returns:
        The terminal record, for further assertions on the outcome.

    Raises:
        AssertionError: from the first check that fails.
    """
    records = list(records)
    assert_percent_never_decreases(records)
    assert_seq_increasing(records)
    assert_exactly_one_terminal(records)
    assert_terminal_last(records)
    return records[-1]
