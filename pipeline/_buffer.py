"""The buffered update queue: report without blocking, coalesce per job, write once per interval."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._checks import check_seconds
from ._errors import InvalidUpdateError, SinkClosedError, StoreUnavailableError
from ._nursery import open_owned_nursery
from ._sink import SinkStatistics
from ._snapshot import (
    _WALL_CLOCK_OFFSET,
    MAX_STAGE_LENGTH,
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

DEFAULT_FLUSH_INTERVAL = 0.5
"""Seconds between two flushes of the update buffer."""

MIN_FLUSH_INTERVAL = 0.001
"""The shortest flush interval accepted, in seconds: shorter would only burn CPU."""

DEFAULT_CAPACITY = 8192
"""Reports the buffer's memory channel holds before reports go to the overflow map.

8192 reports are about 1 MiB: room for 100 jobs at 100 reports/s for most of a 0.5 s
interval. A full channel costs nothing but a dict write per report, never a lost state.
"""

DEFAULT_SHUTDOWN_TIMEOUT = 10.0
"""Seconds the final flush may take when the buffer closes, even if it is being cancelled."""

MAX_RETRY_DELAY = 5.0
"""Longest wait, in seconds, between two flushes while the store is unavailable: after a failed
flush the drain task waits twice as long as before (from ``flush_interval``) up to this."""

# The fast path of report_nowait takes a float percent and no message; anything else goes
# through the full check.
_Report = tuple[str, float, str, str | None, float, float | None, bool]
"""A report as it waits in the buffer: ``ProgressUpdate``'s fields as a plain tuple."""

_checked_ids: set[str] = set()
"""Job ids that passed ``check_job_id`` (the one job-id rule), so the fast path of
``report_nowait`` applies it at the cost of a set lookup rather than a regex match."""
_MAX_CHECKED_IDS = 65536
"""Past this many, new ids take the full check each time (still correct, a little slower)."""

_make_update = ProgressUpdate._make
_monotonic = time.monotonic
_INF = math.inf


def _checked_report(
    job_id: object,
    percent: object,
    stage: object,
    message: object,
    reported_at: object,
    eta_seconds: object = None,
    reset: object = False,
) -> _Report:
    """The full check of a report (see ``UpdateBuffer.report_nowait``), as a ``_Report``."""
    percent = check_progress(percent, stage, message)
    eta_seconds = check_eta_seconds(eta_seconds)
    if type(reset) is not bool:
        raise InvalidUpdateError("reset", f"must be true or false, not {reset!r}")
    job_id = check_job_id(job_id)
    if len(_checked_ids) < _MAX_CHECKED_IDS:
        _checked_ids.add(job_id)
    if reported_at is None:
        reported_at = wall_clock()
    elif type(reported_at) is not float or not 0.0 <= reported_at < math.inf:
        reported_at = check_reported_at(reported_at)
    # check_progress has checked stage and message; mypy cannot narrow through `type(x) is`
    return (job_id, percent, stage, message, reported_at, eta_seconds, reset)  # type: ignore[return-value]


class UpdateBuffer:
    """Producers report into a bounded trio memory channel; a background task writes it out.

    Every ``flush_interval`` seconds the drain task takes everything in the channel (and the
    overflow map), keeps the latest report per job (*coalescing*) and applies the batch to the
    store in one ``ExportStore.apply_progress`` call. Make one with ``open_update_buffer``,
    which owns that task.

    A flush that fails never stops the drain task: the batch is kept (latest per job) for the
    next flush, the error is logged with its traceback, and ``statistics().last_error`` says
    why until a flush succeeds again.

    Not thread-safe: call it from trio tasks of the run that opened it.
    """

    def __init__(
        self,
        store: ExportStore,
        *,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        capacity: int = DEFAULT_CAPACITY,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        on_flush: Callable[[float], None] | None = None,
    ) -> None:
        flush_interval = check_seconds(
            "flush_interval", flush_interval, minimum=MIN_FLUSH_INTERVAL, include_minimum=True
        )
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"capacity must be a whole number of reports >= 1, not {capacity!r}")
        shutdown_timeout = check_seconds("shutdown_timeout", shutdown_timeout)
        self.store = store
        self.flush_interval = float(flush_interval)
        self.capacity = capacity
        self.shutdown_timeout = float(shutdown_timeout)
        self._on_flush = on_flush
        # Reports travel as plain tuples laid out as ProgressUpdate (job_id, percent, stage,
        # message, reported_at): building a NamedTuple per report would cost more than the
        # channel's own send_nowait. The flush turns the batch into ProgressUpdates.
        self._send, self._receive = trio.open_memory_channel[_Report](capacity)
        self._send_nowait = self._send.send_nowait
        self._overflow: dict[str, _Report] = {}
        self._pending: dict[str, _Report] = {}
        self._flush_lock = trio.Lock()
        self._closed = False
        self._drained = 0
        self._coalesced = 0
        self._overflowed = 0
        self._flushes = 0
        self._store_writes = 0
        self._terminal_writes = 0
        self._failed_writes = 0
        self._consecutive_failures = 0
        self._last_flush_duration = 0.0
        self._last_error: str | None = None
        self._draining = False

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
        """Report a job's progress. Never blocks and never fails because the buffer is full.

        The report reaches the store at the next flush, at most ``flush_interval`` seconds
        later; a later report for the same job before then replaces it. When the channel is
        full the report goes to an overflow map that keeps the latest report per job, so the
        latest progress of every job always reaches the store.

        Args:
            job_id: the job's id (a job registered in the store; updates for unknown jobs are
                dropped at the flush and counted by the store).
            percent: progress in percent, a finite number from 0 to 100.
            stage: what the job is doing (at most ``MAX_STAGE_LENGTH`` characters).
            message: optional free text (at most ``MAX_MESSAGE_LENGTH`` characters).
            reported_at: when the producer made the report, in seconds since the Unix epoch
                (``wall_clock()`` now by default). A thread or another process passes its own
                time so that the store's staleness rule and latency use it.
            eta_seconds: the producer's own estimate of the seconds left (wins over the
                store's), or None.
            reset: the job starts over (a new attempt): a lower percent is published. A
                reset report coalesced with a later one passes its reset on to it.

        Raises:
            InvalidUpdateError: a field is malformed (the message names it).
            SinkClosedError: the buffer has been closed.
        """
        # The common case (a float percent, a short stage, no message, stamped now or by the
        # producer, as HTTP ingest does) is checked inline: this is the producers' hot path.
        # Anything else takes the full check.
        if (
            type(percent) is float
            and 0.0 <= percent <= 100.0
            and type(stage) is str
            and len(stage) <= MAX_STAGE_LENGTH
            and stage.isascii()
            and message is None
            and (reported_at is None or (type(reported_at) is float and 0.0 <= reported_at < _INF))
            and eta_seconds is None
            and reset is False
            and type(job_id) is str
            and job_id in _checked_ids
        ):
            report: _Report = (
                job_id,
                percent,
                stage,
                None,
                _WALL_CLOCK_OFFSET + _monotonic() if reported_at is None else reported_at,
                None,
                False,
            )
        else:
            report = _checked_report(
                job_id, percent, stage, message, reported_at, eta_seconds, reset
            )
        try:
            self._send_nowait(report)
        except trio.WouldBlock:
            self._overflowed += 1
            current = self._overflow.get(job_id)
            if current is not None:
                self._coalesced += 1
                if current[4] > report[4]:
                    return
                if current[6] and not report[6]:
                    report = (*report[:6], True)
            self._overflow[job_id] = report
        except trio.ClosedResourceError:
            # The channel is closed when the buffer closes: no flag to test per report.
            raise SinkClosedError(
                "the update buffer is closed; report inside its async with block"
            ) from None

    async def finish(
        self,
        job_id: str,
        status: JobStatus | str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobSnapshot:
        """Write a terminal state now, bypassing the buffer.

        Returns once the terminal state is in the store and the job's subscribers are told.
        The job's latest buffered progress goes into the same write (so a failed job shows
        where it stopped), and no progress reported before this call can land after it.

        Args:
            job_id: the job's id.
            status: ``completed``, ``failed`` or ``cancelled`` (or an alias, see
                ``parse_status``).
            error: why a failed job failed.
            result: the JSON-able result of a completed job.

        Returns:
            The job's terminal snapshot (an earlier one if the job had ended already).

        Raises:
            UnknownStatusError: ``status`` is no known state.
            InvalidUpdateError: ``status`` is not terminal, or ``error``/``result`` is malformed.
            JobNotFoundError: the job is not registered.
            StoreUnavailableError: the store could not be reached; nothing was written.
            SinkClosedError: the buffer has been closed.
        """
        if self._closed:
            raise SinkClosedError(
                "the update buffer is closed; finish jobs inside its async with block"
            )
        status = parse_status(status)
        if not status.is_terminal:
            raise InvalidUpdateError(
                "status", f"finish takes completed, failed or cancelled, not {status.value}"
            )
        # Holding the flush lock lets a batch already on its way land first, so the terminal
        # snapshot carries the job's latest progress and nothing lands after it.
        async with self._flush_lock:
            self._collect()
            last_report = self._pending.pop(job_id, None)
            last_progress = None if last_report is None else ProgressUpdate._make(last_report)
            try:
                snapshot = await self.store.finish(
                    job_id, status, error=error, result=result, last_progress=last_progress
                )
            except BaseException:
                if last_progress is not None:
                    self._keep_latest(last_progress)
                raise
        self._terminal_writes += 1
        return snapshot

    async def flush(self) -> None:
        """Write everything buffered to the store now, in one write.

        The drain task calls this every ``flush_interval`` seconds; call it yourself to make
        reports visible sooner. When the store is unavailable the batch is kept (latest per
        job) for the next flush and the error is logged and counted, not raised; the drain
        task then retries with backoff (see ``MAX_RETRY_DELAY``).

        Raises:
            Exception: whatever the store raised other than ``StoreUnavailableError`` (a bug);
                the batch is kept for the next flush and the failure counted first.
        """
        async with self._flush_lock:
            self._collect()
            if not self._pending:
                return
            batch, self._pending = self._pending, {}
            started = time.perf_counter()
            try:
                await self.store.apply_progress([_make_update(r) for r in batch.values()])
            except StoreUnavailableError as exc:
                self._failed_writes += 1
                self._consecutive_failures += 1
                for update in batch.values():
                    self._keep_latest(update)
                logger.warning(
                    "store unavailable, %d job states kept for retry: %s", len(batch), exc
                )
                return
            except InvalidUpdateError:
                # Reports are checked on entry, so only a store with stricter rules gets here.
                # Write them one by one and drop those it refuses: one bad report must never
                # stall every other job's progress.
                await self._write_one_by_one(batch)
                return
            except BaseException as exc:
                # Cancelled mid-write, or a bug: keep the batch so a later flush can write it.
                for update in batch.values():
                    self._keep_latest(update)
                if isinstance(exc, Exception):
                    self._failed_writes += 1
                    self._last_error = f"{type(exc).__name__}: {exc}"
                raise
            duration = time.perf_counter() - started
            self._last_flush_duration = duration
            self._last_error = None
            self._consecutive_failures = 0
            self._flushes += 1
            self._store_writes += 1
            if self._on_flush is not None:
                self._on_flush(duration)

    async def _write_one_by_one(self, batch: dict[str, _Report]) -> None:
        for report in batch.values():
            try:
                await self.store.apply_progress([_make_update(report)])
            except InvalidUpdateError as exc:
                self._failed_writes += 1
                self._last_error = f"{type(exc).__name__}: {exc}"
                logger.error("the store refused the report for job %s, dropped: %s", report[0], exc)
            except BaseException:
                self._keep_latest(report)
                raise
            else:
                self._store_writes += 1

    def statistics(self) -> SinkStatistics:
        """Return the buffer's counters now (see ``SinkStatistics``)."""
        return SinkStatistics(
            reports_received=(
                self._drained + self._overflowed + self._send.statistics().current_buffer_used
            ),
            coalesced=self._coalesced,
            overflowed=self._overflowed,
            flushes=self._flushes,
            store_writes=self._store_writes,
            terminal_writes=self._terminal_writes,
            failed_writes=self._failed_writes,
            pending=(
                self._send.statistics().current_buffer_used
                + len(self._overflow)
                + len(self._pending)
            ),
            last_flush_duration=self._last_flush_duration,
            last_error=self._last_error,
            draining=self._draining,
        )

    def _collect(self) -> None:
        """Move the channel, then the overflow map, into ``_pending``, latest per job.

        "Latest" is by ``reported_at``, as the store orders updates: a report that arrives
        after a newer one for its job (from another producer's request, say) is dropped here.
        Runs with no checkpoint, so nothing is reported in between.
        """
        pending = self._pending
        receive_nowait = self._receive.receive_nowait
        drained = coalesced = 0
        while True:
            try:
                report = receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            drained += 1
            current = pending.get(report[0])
            if current is not None:
                coalesced += 1
                if current[4] > report[4]:
                    continue
                if current[6] and not report[6]:
                    report = (*report[:6], True)  # the new attempt is not lost
            pending[report[0]] = report
        if self._overflow:
            for report in self._overflow.values():
                current = pending.get(report[0])
                if current is not None:
                    coalesced += 1
                    if current[4] > report[4]:
                        continue
                    if current[6] and not report[6]:
                        report = (*report[:6], True)
                pending[report[0]] = report
            self._overflow.clear()
        self._drained += drained
        self._coalesced += coalesced

    def _keep_latest(self, report: _Report) -> None:
        """Put ``report`` back in ``_pending`` unless a newer one for its job is there."""
        current = self._pending.get(report[0])
        if current is None:
            self._pending[report[0]] = report
        elif current[4] < report[4]:
            self._pending[report[0]] = (*report[:6], True) if current[6] else report
        elif report[6] and not current[6]:
            self._pending[report[0]] = (*current[:6], True)

    async def _drain(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._draining = True
        task_status.started()
        try:
            next_flush = trio.current_time() + self.flush_interval
            while True:
                await trio.sleep_until(next_flush)
                try:
                    await self.flush()
                except Exception:
                    # Never stop delivering because of one bad flush: the batch is kept, the
                    # failure is logged and shown by statistics() (and the server's health),
                    # and the flush is retried with the same backoff as an unavailable store.
                    self._consecutive_failures += 1
                    logger.exception(
                        "flush of the update buffer failed; its updates are kept and retried"
                    )
                now = trio.current_time()
                if self._consecutive_failures:
                    # The store is unavailable (or failing): retry with exponential backoff.
                    delay = self.flush_interval * 2.0 ** min(self._consecutive_failures, 30)
                    next_flush = now + min(delay, max(MAX_RETRY_DELAY, self.flush_interval))
                    continue
                # Keep a fixed schedule; after an overrun, start again one interval from now.
                next_flush += self.flush_interval
                if next_flush <= now:
                    next_flush = now + self.flush_interval
        finally:
            self._draining = False

    async def _final_flush(self) -> None:
        # Nothing buffered is lost on shutdown, even when we are being cancelled.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + self.shutdown_timeout
            await self.flush()
        if scope.cancelled_caught:
            logger.error(
                "final flush did not finish within %g s; %d job states were not written",
                self.shutdown_timeout,
                len(self._pending),
            )


@asynccontextmanager
async def open_update_buffer(
    store: ExportStore,
    *,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    capacity: int = DEFAULT_CAPACITY,
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
    on_flush: Callable[[float], None] | None = None,
) -> AsyncIterator[UpdateBuffer]:
    """Open an ``UpdateBuffer`` whose drain task lives in a nursery owned by this block.

    ``async with open_update_buffer(store) as buffer:`` starts the drain task; leaving the
    block (normally, by an error or by cancellation) flushes everything buffered before it
    returns, so nothing reported inside the block is lost.

    Args:
        store: the export store to write to.
        flush_interval: seconds between flushes (default 0.5). An update reaches the store at
            most this long after it was reported.
        capacity: reports the memory channel holds (default ``DEFAULT_CAPACITY``); beyond it
            the latest report per job is kept in an overflow map, never dropped.
        shutdown_timeout: seconds the final flush may take (default 10).
        on_flush: called after each flush that wrote a batch, with the duration of its store
            write in seconds (for a histogram); it must not block or raise.

    Raises:
        ValueError: a setting is out of range (the message names it).
    """
    buffer = UpdateBuffer(
        store,
        flush_interval=flush_interval,
        capacity=capacity,
        shutdown_timeout=shutdown_timeout,
        on_flush=on_flush,
    )

    async def close(nursery: trio.Nursery) -> None:
        # Everything inside the block (a job runner, say) has finished by now, so nothing
        # can be reported after this flush.
        buffer._closed = True
        buffer._send.close()
        nursery.cancel_scope.cancel()
        await buffer._final_flush()

    async with open_owned_nursery(close) as nursery:
        await nursery.start(buffer._drain)
        yield buffer
