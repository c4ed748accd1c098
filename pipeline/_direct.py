"""Direct sync: every report written to the store on its own, the baseline for benchmarks."""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._errors import InvalidUpdateError, SinkClosedError, StoreUnavailableError
from ._nursery import open_owned_nursery
from ._retry import retry_while_unavailable
from ._sink import SinkStatistics
from ._snapshot import (
    JobSnapshot,
    ProgressUpdate,
    check_eta_seconds,
    check_job_id,
    check_progress,
    check_reported_at,
    wall_clock,
)
from ._status import JobStatus, parse_status
from ._store import ExportStore

logger = logging.getLogger(__name__)

WRITE_RETRY_TIMEOUT = 30.0
"""Seconds a direct write is retried, with backoff, while the store is unavailable."""


class DirectSync:
    """The same interface as ``UpdateBuffer``, with no buffer: one store write per report.

    ``report_nowait`` starts a task in the owning nursery that writes the one update (what the
    design note's fire-and-forget ``UpdateJobProgressAsync`` did, but owned, so a failed write
    is raised, not lost). Nothing is coalesced, so the store does one write and one
    notification per report; the number of write tasks in flight is not bounded. A write that
    finds the store unavailable is retried with backoff for ``WRITE_RETRY_TIMEOUT`` seconds
    (the store's staleness rule keeps a late retry from overwriting newer progress), then
    logged and counted in ``failed_writes``. Make one with ``open_direct_sync``.
    """

    def __init__(self, store: ExportStore, nursery: trio.Nursery) -> None:
        self.store = store
        self._nursery = nursery
        self._closed = False
        self._reports_received = 0
        self._store_writes = 0
        self._terminal_writes = 0
        self._in_flight = 0
        self._idle = trio.lowlevel.ParkingLot()
        self._failed_writes = 0
        # Each job's latest report whose write has not finished: ``finish`` folds it into the
        # terminal write, so the terminal state shows it even if its own write lands later
        # (and is then ignored: the terminal state wins).
        self._unwritten: dict[str, ProgressUpdate] = {}

    def report_nowait(
        self,
        job_id: str,
        percent: float,
        stage: str,
        message: str | None = None,
        *,
        reported_at: float | None = None,
        eta_seconds: float | None = None,
        reset: bool = False,
    ) -> None:
        """Start writing this report to the store; returns before the write is done.

        Args:
            job_id: the job's id.
            percent: progress in percent, a finite number from 0 to 100.
            stage: what the job is doing.
            message: optional free text.
            reported_at: when the producer made the report, seconds since the Unix epoch
                (``wall_clock()`` by default).
            eta_seconds: the producer's own estimate of the seconds left, or None.
            reset: the job starts over (see ``UpdateBuffer.report_nowait``).

        Raises:
            InvalidUpdateError: a field is malformed (the message names it).
            SinkClosedError: the direct sync has been closed.
        """
        if self._closed:
            raise SinkClosedError("direct sync is closed; report inside its async with block")
        percent = check_progress(percent, stage, message)
        eta_seconds = check_eta_seconds(eta_seconds)
        if type(reset) is not bool:
            raise InvalidUpdateError("reset", f"must be true or false, not {reset!r}")
        check_job_id(job_id)
        self._reports_received += 1
        self._in_flight += 1
        reported_at = wall_clock() if reported_at is None else check_reported_at(reported_at)
        update = ProgressUpdate(job_id, percent, stage, message, reported_at, eta_seconds, reset)
        latest = self._unwritten.get(job_id)
        if latest is None or latest.reported_at <= reported_at:
            self._unwritten[job_id] = update
        self._nursery.start_soon(self._write, update)

    async def finish(
        self,
        job_id: str,
        status: JobStatus | str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobSnapshot:
        """Write a terminal state now; returns once it is stored and subscribers are told.

        The job's latest report whose write is still in flight goes into the same write (as
        ``UpdateBuffer.finish`` does with its buffered report), so the terminal state shows
        the latest progress; writes that land after it are ignored by the store.

        Raises:
            UnknownStatusError: ``status`` is no known state.
            InvalidUpdateError: ``status`` is not terminal, or ``error``/``result`` is malformed.
            JobNotFoundError: the job is not registered.
            SinkClosedError: the direct sync has been closed.
        """
        if self._closed:
            raise SinkClosedError("direct sync is closed; finish jobs inside its async with block")
        status = parse_status(status)
        if not status.is_terminal:
            raise InvalidUpdateError(
                "status", f"finish takes completed, failed or cancelled, not {status.value}"
            )
        last_progress = self._unwritten.pop(job_id, None)
        try:
            snapshot = await self.store.finish(
                job_id, status, error=error, result=result, last_progress=last_progress
            )
        except BaseException:
            if last_progress is not None and job_id not in self._unwritten:
                self._unwritten[job_id] = last_progress
            raise
        self._terminal_writes += 1
        return snapshot

    async def flush(self) -> None:
        """Return once every write started so far has finished (nothing is buffered here)."""
        await trio.lowlevel.checkpoint()
        while self._in_flight:
            await self._idle.park()

    def statistics(self) -> SinkStatistics:
        """Return the counters now; ``pending`` is the number of writes in flight."""
        return SinkStatistics(
            reports_received=self._reports_received,
            store_writes=self._store_writes,
            terminal_writes=self._terminal_writes,
            failed_writes=self._failed_writes,
            pending=self._in_flight,
        )

    async def _write(self, update: ProgressUpdate) -> None:
        def failed(exc: StoreUnavailableError) -> None:
            self._failed_writes += 1

        try:
            await retry_while_unavailable(
                functools.partial(self.store.apply_progress, [update]),
                retry_for=WRITE_RETRY_TIMEOUT,
                on_unavailable=failed,
            )
        except StoreUnavailableError as exc:
            logger.error("progress of job %s NOT written: %s", update.job_id, exc)
        else:
            self._store_writes += 1
        finally:
            if self._unwritten.get(update.job_id) is update:
                del self._unwritten[update.job_id]
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.unpark_all()


@asynccontextmanager
async def open_direct_sync(store: ExportStore) -> AsyncIterator[DirectSync]:
    """Open a ``DirectSync`` whose write tasks live in a nursery owned by this block.

    Leaving the block waits for the writes in flight, so nothing reported is lost.
    """
    sync: DirectSync | None = None

    async def close(nursery: trio.Nursery) -> None:
        # The writes in flight finish: the nursery waits for them.
        if sync is not None:
            sync._closed = True

    async with open_owned_nursery(close) as nursery:
        sync = DirectSync(store, nursery)
        yield sync
