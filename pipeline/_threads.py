"""Reporting from worker threads: coalesce in the thread, cross into trio at most once per flush.

``trio.from_thread.run_sync`` for every report would wake the trio loop thousands of times a
second from a tqdm loop. Instead the thread writes into a lock-protected dict (latest report
per job wins) and only the first report after a hand-over asks trio (one
``TrioToken.run_sync_soon`` call) to collect the dict; a task owned by ``open_thread_reporter``
then hands the reports to the update sink, at most once per ``flush_interval``.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import trio

from ._buffer import DEFAULT_FLUSH_INTERVAL
from ._checks import check_seconds
from ._errors import SinkClosedError
from ._sink import UpdateSink
from ._snapshot import JobSnapshot, check_job_id, check_progress, wall_clock
from ._status import JobStatus

_Pending = tuple[float, str, str | None, float]
"""``(percent, stage, message, reported_at)`` of a job's latest report in the thread."""


@dataclass(frozen=True, slots=True)
class ThreadReporterStatistics:
    """Counters of a ``ThreadReporter`` since it was opened.

    Attributes:
        reports: reports accepted by ``report`` (from any thread).
        coalesced: reports replaced in the thread by a later one for the same job before
            they were handed to the sink.
        crossings: times a reporting thread woke the trio side (one ``run_sync_soon`` call
            each); at most one per hand-over.
        handoffs: times the pending reports were handed to the sink (at most one per
            ``flush_interval``, plus one per ``finish`` and ``flush``).
        pending: jobs with a report waiting in the thread-side dict now.
    """

    reports: int = 0
    coalesced: int = 0
    crossings: int = 0
    handoffs: int = 0
    pending: int = 0


class ThreadReporter:
    """Thread-safe progress reporting into an update sink (make one with ``open_thread_reporter``).

    ``report`` may be called from any thread, including threads started with
    ``trio.to_thread.run_sync``; it takes a lock, writes one dict entry and returns (about a
    microsecond). ``finish`` blocks the calling worker thread until the terminal state is
    stored, as ``UpdateSink.finish`` does in trio.
    """

    def __init__(
        self, sink: UpdateSink, token: trio.lowlevel.TrioToken, flush_interval: float
    ) -> None:
        self.sink = sink
        self.flush_interval = flush_interval
        self._token = token
        self._lock = threading.Lock()
        self._pending: dict[str, _Pending] = {}
        self._armed = False
        self._closed = False
        self._wake = trio.Event()
        self._reports = 0
        self._coalesced = 0
        self._crossings = 0
        self._handoffs = 0

    def report_nowait(
        self, job_id: str, percent: float, stage: str, message: str | None = None
    ) -> None:
        """Report a job's progress from any thread. Never blocks on trio, never waits for I/O.

        The same call as ``UpdateBuffer.report_nowait`` and the clients' ``report_nowait``.

        The report reaches the sink at most ``flush_interval`` seconds later (then the sink's
        own flush interval applies); a later report for the same job before then replaces it.
        Its ``reported_at`` is the time of this call.

        Args:
            job_id: the job's id.
            percent: progress in percent, a finite number from 0 to 100.
            stage: what the job is doing (at most ``MAX_STAGE_LENGTH`` characters).
            message: optional free text (at most ``MAX_MESSAGE_LENGTH`` characters).

        Raises:
            InvalidUpdateError: a field is malformed (the message names it), raised in the
                calling thread.
            SinkClosedError: the reporter has been closed.
        """
        percent = check_progress(percent, stage, message)
        check_job_id(job_id)
        entry = (percent, stage, message, wall_clock())
        with self._lock:
            if self._closed:
                raise SinkClosedError(
                    "the thread reporter is closed; report inside its async with block"
                )
            self._reports += 1
            if job_id in self._pending:
                self._coalesced += 1
            self._pending[job_id] = entry
            if self._armed:
                return
            self._armed = True
            self._crossings += 1
        # The one crossing into trio until the next hand-over; thread-safe, never blocks.
        self._token.run_sync_soon(self._wake_up)

    report = report_nowait
    """Deprecated: the old name of ``report_nowait`` (kept for one release, CHANGELOG.md)."""

    def for_job(self, job_id: str) -> ThreadJobReporter:
        """A reporter bound to one job (what ``ReportingTqdm`` and worker functions take)."""
        return ThreadJobReporter(self, job_id)

    def finish(
        self,
        job_id: str,
        status: JobStatus | str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobSnapshot:
        """Write a terminal state from a worker thread; blocks until it is stored.

        The job's pending report goes to the sink first, so a failed job shows where it
        stopped (see ``UpdateBuffer.finish``).

        Returns:
            The job's terminal snapshot.

        Raises:
            RuntimeError: called from the trio thread (await ``sink.finish`` there instead).
            The errors of ``UpdateSink.finish``: ``UnknownStatusError``,
            ``InvalidUpdateError``, ``JobNotFoundError``, ``SinkClosedError``.
        """
        if trio.lowlevel.in_trio_run():
            raise RuntimeError(
                "ThreadReporter.finish blocks the calling thread; call it from a worker thread, "
                "or await sink.finish(...) in trio"
            )
        return trio.from_thread.run(
            self._finish, job_id, status, error, result, trio_token=self._token
        )

    async def flush(self) -> None:
        """Hand everything reported so far to the sink now (from the trio thread)."""
        await trio.lowlevel.checkpoint()
        self._hand_over()

    def statistics(self) -> ThreadReporterStatistics:
        """Return the reporter's counters now (see ``ThreadReporterStatistics``)."""
        with self._lock:
            return ThreadReporterStatistics(
                reports=self._reports,
                coalesced=self._coalesced,
                crossings=self._crossings,
                handoffs=self._handoffs,
                pending=len(self._pending),
            )

    def _wake_up(self) -> None:
        self._wake.set()

    def _hand_over(self, only: str | None = None) -> None:
        """Move the thread-side reports (or only job ``only``'s) into the sink."""
        with self._lock:
            if only is None:
                batch, self._pending = self._pending, {}
                self._armed = False
            else:
                entry = self._pending.pop(only, None)
                batch = {} if entry is None else {only: entry}
            self._handoffs += 1
        report_nowait = self.sink.report_nowait
        for job_id, (percent, stage, message, reported_at) in batch.items():
            report_nowait(job_id, percent, stage, message, reported_at=reported_at)

    async def _finish(
        self, job_id: str, status: JobStatus | str, error: str | None, result: Any
    ) -> JobSnapshot:
        self._hand_over(only=job_id)
        return await self.sink.finish(job_id, status, error=error, result=result)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await self._wake.wait()
            # A fresh event before the hand-over: a thread that arms after it wakes this one.
            self._wake = trio.Event()
            self._hand_over()
            # At most one hand-over (and so one crossing) per interval.
            await trio.sleep(self.flush_interval)


class ThreadJobReporter:
    """A ``ThreadReporter`` bound to one job; thread-safe like it.

    Attributes:
        job_id: the job this reporter reports for.
    """

    def __init__(self, reporter: ThreadReporter, job_id: str) -> None:
        self.job_id = job_id
        self._reporter = reporter

    def report(self, percent: float, stage: str, message: str | None = None) -> None:
        """Report progress from any thread (see ``ThreadReporter.report_nowait``)."""
        self._reporter.report_nowait(self.job_id, percent, stage, message)

    def finish(
        self, status: JobStatus | str, *, error: str | None = None, result: Any = None
    ) -> JobSnapshot:
        """Write the job's terminal state from a worker thread (see ``ThreadReporter.finish``)."""
        return self._reporter.finish(self.job_id, status, error=error, result=result)


@asynccontextmanager
async def open_thread_reporter(
    sink: UpdateSink, *, flush_interval: float | None = None
) -> AsyncIterator[ThreadReporter]:
    """Open a ``ThreadReporter`` whose hand-over task lives in a nursery owned by this block.

    Open it inside the sink's block (``open_update_buffer``, ``open_update_sink``) and run the
    worker threads inside this one (``await trio.to_thread.run_sync(work, reporter)``).
    Leaving the block hands what the threads reported to the sink, so nothing is lost;
    reports after that raise ``SinkClosedError``.

    Args:
        sink: where the reports go (an update buffer, or direct sync).
        flush_interval: seconds between hand-overs; by default the sink's own
            ``flush_interval`` if it has one, else ``DEFAULT_FLUSH_INTERVAL`` (0.5 s). A report
            reaches the store at most this plus the sink's interval after it was made.

    Raises:
        ValueError: ``flush_interval`` is not a positive number of seconds.
    """
    if flush_interval is None:
        flush_interval = getattr(sink, "flush_interval", DEFAULT_FLUSH_INTERVAL)
    flush_interval = check_seconds("flush_interval", flush_interval)
    reporter = ThreadReporter(sink, trio.lowlevel.current_trio_token(), flush_interval)
    async with trio.open_nursery() as nursery:
        await nursery.start(reporter._run)
        try:
            yield reporter
        finally:
            with reporter._lock:
                reporter._closed = True
            nursery.cancel_scope.cancel()
            reporter._hand_over()
