"""What producers report to: the interface shared by the update buffer and direct sync."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Protocol

from ._snapshot import JobSnapshot
from ._status import JobStatus


class SyncMode(enum.StrEnum):
    """How reports reach the store.

    ``batched``: through the update buffer, coalesced per job, one store write per flush
    interval. ``direct``: every report written to the store on its own, as it comes (the
    baseline the benchmarks compare against).
    """

    BATCHED = "batched"
    DIRECT = "direct"


@dataclass(frozen=True, slots=True)
class SinkStatistics:
    """Counters of an update buffer (or of direct sync) since it was opened.

    Attributes:
        reports_received: progress reports accepted by ``report_nowait``.
        coalesced: reports replaced by a later report for the same job before being written.
        overflowed: reports that found the channel full and went to the overflow map (their
            latest state per job is still written at the next flush).
        flushes: flushes that wrote a batch to the store.
        store_writes: store write calls made for progress (one per batch, or one per report in
            direct mode).
        terminal_writes: terminal states written with ``finish``.
        failed_writes: flushes that failed, because the store was unavailable or by an
            unexpected error (logged with its traceback); their updates are kept and retried
            at the next flush.
        pending: reports waiting in the channel and overflow map now (the buffer depth).
        last_flush_duration: how long the latest flush's store write took, in seconds.
        last_error: why a flush failed by an unexpected error (``"ExceptionName: message"``),
            until a flush succeeds again, else None. An unavailable store is not counted here
            (the store's statistics say so). A server reports itself unhealthy while it is set.
        draining: True while the drain task runs (False before it starts, after the buffer
            closed, or if it died); direct sync has no drain task and always reports True.
    """

    reports_received: int = 0
    coalesced: int = 0
    overflowed: int = 0
    flushes: int = 0
    store_writes: int = 0
    terminal_writes: int = 0
    failed_writes: int = 0
    pending: int = 0
    last_flush_duration: float = 0.0
    last_error: str | None = None
    draining: bool = True


class UpdateSink(Protocol):
    """Where producers send progress: ``UpdateBuffer`` (batched) or ``DirectSync`` (direct)."""

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
        """Report progress without blocking; see ``UpdateBuffer.report_nowait``."""
        ...

    async def finish(
        self,
        job_id: str,
        status: JobStatus | str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobSnapshot:
        """Write a terminal state synchronously; see ``UpdateBuffer.finish``."""
        ...

    async def flush(self) -> None:
        """Write everything reported so far to the store before returning."""
        ...

    def statistics(self) -> SinkStatistics:
        """Return the counters now."""
        ...
