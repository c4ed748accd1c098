"""The in-memory export store: the embedded default, for one server process."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import trio

from ._errors import JobExistsError, JobFinishedError, JobNotFoundError, RegistrationTimeoutError
from ._rate import RateState
from ._snapshot import (
    LEASE_EXPIRED_ERROR,
    JobSnapshot,
    ProgressUpdate,
    check_heartbeat_timeout,
    format_seconds,
    round_percent,
)
from ._status import JobStatus
from ._store import (
    BatchResult,
    ExportStore,
    StoreStatistics,
    check_registration,
    check_terminal_state,
    check_update,
)
from ._subscription import Subscription

DEFAULT_RETENTION = 3600.0
"""How long a terminal job stays in the store, in seconds (one hour)."""


@dataclass(eq=False, slots=True)
class _Job:
    snapshot: JobSnapshot
    subscribers: set[Subscription] = field(default_factory=set)
    rate: RateState = field(default_factory=RateState)


class MemoryStore(ExportStore):
    """An ``ExportStore`` in this process's memory (see ``ExportStore`` for the rules).

    Every operation completes without a checkpoint between reading and writing, so each one
    is atomic with respect to other trio tasks, and subscribing reads the current snapshot and
    starts listening in one step. Not thread-safe: call it from the trio thread (threads
    report through ``trio.from_thread``).

    Args:
        retention: how long a job stays after its terminal state, in seconds (default one
            hour); older terminal jobs are dropped when new jobs are registered.
        clock: the wall clock used for ``createdAt`` / ``updatedAt``, seconds since the Unix
            epoch (``time.time`` by default; tests may pass a fake).

    Raises:
        ValueError: ``retention`` is negative or not finite.
    """

    def __init__(self, *, retention: float = DEFAULT_RETENTION, clock: Any = time.time) -> None:
        if not (isinstance(retention, int | float) and 0 <= retention < float("inf")):
            raise ValueError(
                f"retention must be a finite number of seconds >= 0, not {retention!r}"
            )
        self._retention = retention
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._finished: deque[tuple[float, str]] = deque()
        self._registration_waiters: dict[str, trio.Event] = {}
        # Lease deadlines (store clock) of the queued and running jobs that have a lease.
        self._leases: dict[str, float] = {}
        self._leases_expired = 0
        self._lower_percent_kept = 0
        self._subscribers = 0
        self._writes = 0
        self._updates_applied = 0
        self._ignored_terminal = 0
        self._ignored_stale = 0
        self._unknown_job_updates = 0
        self._notifications = 0

    async def register(
        self,
        job_id: str,
        *,
        status: JobStatus = JobStatus.QUEUED,
        stage: str = "",
        message: str | None = None,
        kind: str | None = None,
        heartbeat_timeout: float | None = None,
    ) -> JobSnapshot:
        await trio.lowlevel.checkpoint()
        status = check_registration(job_id, status, stage, message, kind)
        heartbeat_timeout = check_heartbeat_timeout(heartbeat_timeout)
        if job_id in self._jobs:
            raise JobExistsError(job_id)
        self._expire_finished()
        now = self._clock()
        snapshot = JobSnapshot(
            job_id=job_id,
            status=status,
            percent=0.0,
            stage=stage,
            message=message,
            seq=1,
            created_at=now,
            updated_at=now,
            reported_at=now,
            kind=kind,
            heartbeat_timeout=heartbeat_timeout,
        )
        self._jobs[job_id] = _Job(snapshot)
        if heartbeat_timeout is not None:
            self._leases[job_id] = now + heartbeat_timeout
        self._writes += 1
        waiter = self._registration_waiters.pop(job_id, None)
        if waiter is not None:
            waiter.set()
        return snapshot

    async def apply_progress(self, updates: Sequence[ProgressUpdate]) -> BatchResult:
        await trio.lowlevel.checkpoint()
        for update in updates:
            check_update(update)
        applied = ignored_terminal = ignored_stale = lower_kept = 0
        unknown: list[str] = []
        changed: dict[str, _Job] = {}
        now = self._clock()
        for update in updates:
            job = self._jobs.get(update.job_id)
            if job is None:
                unknown.append(update.job_id)
                continue
            current = job.snapshot
            if current.status.is_terminal:
                ignored_terminal += 1
                continue
            # Registration is not an update: the first update is never stale, whatever the
            # producer's clock says.
            if current.seq > 1 and update.reported_at < current.reported_at:
                ignored_stale += 1
                continue
            percent, attempt = round_percent(update.percent), current.attempt
            if update.reset:
                attempt += 1
                job.rate = RateState().advance(percent, update.reported_at, reset=True)
            else:
                if percent < current.percent:
                    lower_kept += 1
                    percent = current.percent
                job.rate = job.rate.advance(percent, update.reported_at)
            rate, eta = job.rate.published(percent)
            job.snapshot = replace(
                current,
                status=JobStatus.RUNNING,
                percent=percent,
                stage=update.stage,
                message=update.message,
                seq=current.seq + 1,
                updated_at=now,
                reported_at=update.reported_at,
                rate=rate,
                eta_seconds=eta if update.eta_seconds is None else round(update.eta_seconds, 1),
                attempt=attempt,
            )
            applied += 1
            changed[update.job_id] = job
            if current.heartbeat_timeout is not None:
                self._leases[update.job_id] = now + current.heartbeat_timeout
        for job in changed.values():
            self._notify(job)
        self._writes += 1
        self._updates_applied += applied
        self._ignored_terminal += ignored_terminal
        self._ignored_stale += ignored_stale
        self._lower_percent_kept += lower_kept
        self._unknown_job_updates += len(unknown)
        return BatchResult(applied, ignored_terminal, ignored_stale, tuple(unknown))

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        result: Any = None,
        last_progress: ProgressUpdate | None = None,
    ) -> JobSnapshot:
        await trio.lowlevel.checkpoint()
        status = check_terminal_state(status, error, result, last_progress)
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        current = job.snapshot
        if current.status.is_terminal:
            self._ignored_terminal += 1
            return current
        now = self._clock()
        percent, stage, message = current.percent, current.stage, current.message
        attempt = current.attempt
        if last_progress is not None and (
            current.seq == 1 or last_progress.reported_at >= current.reported_at
        ):
            stage, message = last_progress.stage, last_progress.message
            if last_progress.reset:
                percent, attempt = round_percent(last_progress.percent), attempt + 1
            else:
                percent = max(percent, round_percent(last_progress.percent))
        if status is JobStatus.COMPLETED:
            percent = 100.0
        job.snapshot = replace(
            current,
            status=status,
            percent=percent,
            attempt=attempt,
            rate=None,
            eta_seconds=None,
            stage=stage,
            message=message,
            seq=current.seq + 1,
            updated_at=now,
            reported_at=max(now, current.reported_at),
            error=None if status is JobStatus.COMPLETED else error,
            result=result if status is JobStatus.COMPLETED else None,
        )
        self._writes += 1
        self._finished.append((now, job_id))
        self._leases.pop(job_id, None)
        self._notify(job)
        return job.snapshot

    async def heartbeat(self, job_id: str) -> JobSnapshot:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        snapshot = job.snapshot
        if snapshot.is_terminal:
            raise JobFinishedError(job_id, snapshot.status.value)
        if snapshot.heartbeat_timeout is not None:
            self._leases[job_id] = self._clock() + snapshot.heartbeat_timeout
        return snapshot

    async def expire_leases(self) -> list[JobSnapshot]:
        await trio.lowlevel.checkpoint()
        now = self._clock()
        expired = [job_id for job_id, deadline in self._leases.items() if deadline <= now]
        ended: list[JobSnapshot] = []
        for job_id in expired:
            del self._leases[job_id]
            job = self._jobs.get(job_id)
            if job is None or job.snapshot.is_terminal:
                continue
            current = job.snapshot
            timeout = format_seconds(current.heartbeat_timeout or 0.0)
            job.snapshot = replace(
                current,
                status=JobStatus.FAILED,
                seq=current.seq + 1,
                updated_at=now,
                reported_at=max(now, current.reported_at),
                error=LEASE_EXPIRED_ERROR.format(timeout=timeout),
                result=None,
                rate=None,
                eta_seconds=None,
            )
            self._writes += 1
            self._leases_expired += 1
            self._finished.append((now, job_id))
            self._notify(job)
            ended.append(job.snapshot)
        return ended

    async def delete(self, job_id: str) -> None:
        await trio.lowlevel.checkpoint()
        job = self._jobs.pop(job_id, None)
        if job is None:
            raise JobNotFoundError(job_id)
        self._leases.pop(job_id, None)
        self._writes += 1
        for subscriber in job.subscribers:
            subscriber.gone("deleted")

    async def get(self, job_id: str) -> JobSnapshot:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)
        return job.snapshot

    async def get_many(self, job_ids: Iterable[str]) -> dict[str, JobSnapshot]:
        await trio.lowlevel.checkpoint()
        jobs = self._jobs
        found: dict[str, JobSnapshot] = {}
        for job_id in job_ids:
            job = jobs.get(job_id)
            if job is not None:
                found[job_id] = job.snapshot
        return found

    async def list_jobs(
        self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[JobSnapshot], int]:
        await trio.lowlevel.checkpoint()
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        matching = [
            job.snapshot
            for job in reversed(self._jobs.values())
            if status is None or job.snapshot.status is status
        ]
        return matching[offset : offset + limit], len(matching)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(job_id)

        def leave() -> None:
            job.subscribers.discard(subscription)
            self._subscribers -= 1

        # Reading the snapshot and joining the subscriber set happen with no checkpoint in
        # between, so no change can slip between them.
        subscription = Subscription(job_id, job.snapshot, leave)
        job.subscribers.add(subscription)
        self._subscribers += 1
        try:
            yield subscription
        finally:
            subscription.close()

    async def wait_registered(self, job_id: str, timeout: float) -> JobSnapshot:  # noqa: ASYNC109
        job = self._jobs.get(job_id)
        if job is not None:
            await trio.lowlevel.checkpoint()
            return job.snapshot
        waiter = self._registration_waiters.setdefault(job_id, trio.Event())
        try:
            with trio.move_on_after(timeout):
                await waiter.wait()
        finally:
            # Drop the waiter if nobody else shares it, so unknown ids leave nothing behind.
            if not waiter.is_set() and waiter.statistics().tasks_waiting == 0:
                self._registration_waiters.pop(job_id, None)
        job = self._jobs.get(job_id)
        if job is None:
            raise RegistrationTimeoutError(job_id, timeout)
        return job.snapshot

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            jobs=len(self._jobs),
            subscribers=self._subscribers,
            writes=self._writes,
            updates_applied=self._updates_applied,
            ignored_terminal=self._ignored_terminal,
            ignored_stale=self._ignored_stale,
            unknown_job_updates=self._unknown_job_updates,
            notifications=self._notifications,
            leases_expired=self._leases_expired,
            lower_percent_kept=self._lower_percent_kept,
        )

    def _notify(self, job: _Job) -> None:
        snapshot = job.snapshot
        for subscriber in job.subscribers:
            subscriber.offer(snapshot)
        self._notifications += len(job.subscribers)

    def _expire_finished(self) -> None:
        cutoff = self._clock() - self._retention
        while self._finished and self._finished[0][0] <= cutoff:
            _, job_id = self._finished.popleft()
            job = self._jobs.get(job_id)
            if job is not None and job.snapshot.is_terminal:
                del self._jobs[job_id]
                self._leases.pop(job_id, None)
                for subscriber in job.subscribers:
                    subscriber.gone(f"expired from the store {self._retention:g} s after it ended")
