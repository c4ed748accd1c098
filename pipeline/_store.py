"""The export store interface: job snapshots with subscriptions, and the rules every store keeps."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidUpdateError, JobNotFoundError
from ._snapshot import (
    JobSnapshot,
    ProgressUpdate,
    check_eta_seconds,
    check_job_id,
    check_json,
    check_kind,
    check_progress,
    check_text,
)
from ._status import JobStatus, parse_status
from ._subscription import Subscription


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one ``ExportStore.apply_progress`` call did.

    Attributes:
        applied: updates that changed a job (one new snapshot and one notification each).
        ignored_terminal: updates for jobs in a terminal state, ignored.
        ignored_stale: updates older (by ``reported_at``) than the job's stored state, ignored.
        unknown_jobs: ids of jobs not registered in the store; their updates were dropped.
    """

    applied: int = 0
    ignored_terminal: int = 0
    ignored_stale: int = 0
    unknown_jobs: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """Counters of an export store since it was opened.

    Attributes:
        jobs: jobs held now (terminal ones are dropped after the retention time).
        subscribers: subscriptions open now.
        writes: write operations (register, one batch of progress, one terminal state); a
            batch counts once however many jobs it changes.
        updates_applied: progress updates that changed a job.
        ignored_terminal: progress updates and terminal states that arrived after the job's
            terminal state, ignored (the first terminal state wins).
        ignored_stale: progress updates older than the stored state, ignored.
        unknown_job_updates: progress updates for jobs that are not registered, dropped.
        notifications: snapshots offered to subscribers.
        available: False while the store cannot be reached (a Redis store whose connection was
            lost); its operations raise ``StoreUnavailableError`` meanwhile. Always True for
            the in-memory store.
        unavailable_errors: operations that failed with ``StoreUnavailableError``.
        resyncs: times the store re-read the jobs it has subscribers for after (re)connecting
            to its change feed (a Redis store; 0 for the in-memory store).
        lower_percent_kept: progress updates with a lower percent than the job's and no
            ``reset``: applied with the job's higher percent kept (the monotonic policy).
        leases_expired: jobs this store object ended ``failed`` because their lease expired
            (``expire_leases``); on Redis each expiry is counted by the one process that won it.
    """

    jobs: int
    subscribers: int
    writes: int
    updates_applied: int
    ignored_terminal: int
    ignored_stale: int
    unknown_job_updates: int
    notifications: int
    available: bool = True
    unavailable_errors: int = 0
    resyncs: int = 0
    leases_expired: int = 0
    lower_percent_kept: int = 0


def check_registration(
    job_id: object, status: JobStatus | str, stage: object, message: object, kind: object
) -> JobStatus:
    """The checks of ``ExportStore.register``, shared by every store.

    Returns:
        ``status`` as a ``JobStatus``.

    Raises:
        InvalidUpdateError: a malformed id, stage, message or kind, or a terminal status.
        UnknownStatusError: ``status`` is no known state.
    """
    check_job_id(job_id)
    status = parse_status(status)
    check_kind(kind)
    if status.is_terminal:
        raise InvalidUpdateError(
            "status", f"a job is registered as queued or running, not {status.value}"
        )
    check_progress(0.0, stage, message)
    return status


def check_update(update: ProgressUpdate) -> None:
    """The checks every store makes on each progress update before writing anything.

    Raises:
        InvalidUpdateError: a field is malformed (percent, stage, message, etaSeconds, reset).
    """
    check_progress(update.percent, update.stage, update.message)
    if update.eta_seconds is not None:
        check_eta_seconds(update.eta_seconds)
    if type(update.reset) is not bool:
        raise InvalidUpdateError("reset", f"must be true or false, not {update.reset!r}")


def check_terminal_state(
    status: JobStatus | str,
    error: object,
    result: object,
    last_progress: ProgressUpdate | None,
) -> JobStatus:
    """The checks of ``ExportStore.finish``, shared by every store.

    Returns:
        ``status`` as a ``JobStatus``.

    Raises:
        InvalidUpdateError: ``status`` is not terminal, ``error`` is malformed, ``result`` is
            not JSON-able, or ``last_progress`` is malformed.
        UnknownStatusError: ``status`` is no known state.
    """
    status = parse_status(status)
    if not status.is_terminal:
        raise InvalidUpdateError(
            "status", f"must be completed, failed or cancelled, not {status.value}"
        )
    if error is not None:
        check_text("error", error)
    if result is not None:
        check_json("result", result)
    if last_progress is not None:
        check_update(last_progress)
    return status


class ExportStore(abc.ABC):
    """Job snapshots with subscriptions: where progress is written and where streams read it.

    Every store enforces these rules, whatever the caller does:

    - ``seq`` starts at 1 when a job is registered and grows by one with every change.
    - After a terminal state nothing changes the job: the first terminal state wins, and later
      progress or terminal states are ignored and counted (``ignored_terminal``).
    - A progress update older (by ``reported_at``) than the stored state is ignored and counted.
    - A progress update on a ``queued`` job moves it to ``running``.
    - Percent never goes down within an attempt: an update with a lower percent is applied
      (stage, message, time) but keeps the job's higher percent, and is counted
      (``lower_percent_kept``). An update with ``reset`` starts a new attempt: its percent is
      published even if lower, ``attempt`` grows by one and the rate is rebuilt.
    - Percent is kept to ``PERCENT_DECIMALS`` decimals; running snapshots carry ``rate`` and
      ``eta_seconds`` computed as ``_rate`` describes (a producer's ``eta_seconds`` wins);
      terminal ones carry None for both.
    - Malformed values (percent outside 0-100, NaN or infinite, over-long text) are rejected with
      ``InvalidUpdateError`` before anything is written, so a bad update never half-applies.
    - A subscriber first gets the snapshot current when it subscribed, then every later change,
      conflated to the latest; no change can fall between the two.
    - A job registered with a lease (``heartbeat_timeout``) that gets no applied progress and
      no ``heartbeat`` for that many seconds is ended ``failed`` by ``expire_leases``, once,
      with ``LEASE_EXPIRED_ERROR`` as its error; its subscribers get that terminal state.

    A store that can be out of reach (``RedisStore``) raises ``StoreUnavailableError`` from any
    operation while it is, and reports it in ``statistics().available``; writers retry.
    """

    @abc.abstractmethod
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
        """Register a new job with its real initial status.

        Args:
            job_id: the job's id.
            status: ``queued`` (default) or ``running``; use ``parse_status`` to map an
                external name.
            stage: the initial stage text.
            message: optional initial message.
            kind: the job kind the runner runs, or None for an external job.
            heartbeat_timeout: the job's lease in seconds (more than 0, at most one day), or
                None for no lease. Every applied progress update and every ``heartbeat``
                renews it; once it runs out, ``expire_leases`` ends the job ``failed``.

        Returns:
            The job's first snapshot (``seq`` 1, ``percent`` 0).

        Raises:
            JobExistsError: a job with that id is registered already.
            InvalidUpdateError: ``status`` is terminal, or a field is malformed (the error
                names ``heartbeatTimeoutS`` for a bad lease).
        """

    @abc.abstractmethod
    async def apply_progress(self, updates: Sequence[ProgressUpdate]) -> BatchResult:
        """Apply a batch of progress updates in one write, one notification per changed job.

        The batch should hold at most one update per job (the buffer coalesces); if a job
        appears twice, the later one wins as if applied in order.

        Raises:
            InvalidUpdateError: an update is malformed; nothing in the batch was applied.
        """

    @abc.abstractmethod
    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        result: Any = None,
        last_progress: ProgressUpdate | None = None,
    ) -> JobSnapshot:
        """Write a terminal state and tell the job's subscribers before returning.

        Args:
            job_id: the job's id.
            status: ``completed``, ``failed`` or ``cancelled``.
            error: why a failed job failed, or why a cancelled job was cancelled (at most
                ``MAX_MESSAGE_LENGTH`` characters); ignored for a completed job.
            result: the JSON-able result of a completed job.
            last_progress: the job's latest progress not yet written (the buffer passes it),
                applied in the same write so a failed job shows where it stopped.

        Returns:
            The job's terminal snapshot: this one, or the earlier one if the job had ended
            already (the first terminal state wins).

        Raises:
            JobNotFoundError: the job is not registered.
            InvalidUpdateError: ``status`` is not terminal, ``result`` is not JSON-able, or
                ``error`` is malformed.
        """

    @abc.abstractmethod
    async def heartbeat(self, job_id: str) -> JobSnapshot:
        """Say the job's producer is alive: renew its lease without changing the job.

        Renews the lease to ``heartbeat_timeout`` seconds from now (and, on Redis, the idle
        expiry). No new ``seq``, no notification. A job without a lease is left as it is.
        Producers that write straight to the store (Celery/RQ workers) call this while they
        have nothing new to report; applied progress renews the lease too.

        Returns:
            The job's current snapshot.

        Raises:
            JobNotFoundError: the job is not registered (or has expired).
            JobFinishedError: the job has ended (its lease may have expired already).
        """

    @abc.abstractmethod
    async def expire_leases(self) -> list[JobSnapshot]:
        """End ``failed`` every queued or running job whose lease has run out.

        The check and the terminal write are one atomic step per job (a Lua script on
        Redis), so when several processes call this at once each expired job is ended once,
        by one of them. The error is ``LEASE_EXPIRED_ERROR`` with the lease's length; percent
        and stage stay as last reported. The lease reaper (``open_lease_reaper``) calls this
        periodically.

        Returns:
            The terminal snapshots this call wrote (empty when none expired).
        """

    @abc.abstractmethod
    async def delete(self, job_id: str) -> None:
        """Remove a job from the store, whatever its state.

        Its subscribers (in every process, on Redis) get ``JobGoneError`` in place of a next
        snapshot, so its streams end with ``job-error``; the same happens when a job expires
        (retention, or Redis's idle expiry) while it is followed.

        Raises:
            JobNotFoundError: the job is not registered.
        """

    @abc.abstractmethod
    async def get(self, job_id: str) -> JobSnapshot:
        """Return the job's current snapshot.

        Raises:
            JobNotFoundError: the job is not registered.
        """

    async def get_many(self, job_ids: Iterable[str]) -> dict[str, JobSnapshot]:
        """Return the current snapshots of several jobs in one call (one round trip on Redis).

        Args:
            job_ids: the jobs' ids (repeats are fine).

        Returns:
            ``{job_id: snapshot}`` for the registered ones; an id that is not registered is
            left out (no error).
        """
        found: dict[str, JobSnapshot] = {}
        for job_id in job_ids:
            if job_id not in found:
                with contextlib.suppress(JobNotFoundError):
                    found[job_id] = await self.get(job_id)
        return found

    @abc.abstractmethod
    async def list_jobs(
        self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[JobSnapshot], int]:
        """List jobs, newest first.

        Args:
            status: only jobs in this state, or all.
            offset: how many matching jobs to skip.
            limit: at most this many jobs.

        Returns:
            ``(page, total)``: the snapshots of the page and how many jobs match in all.
        """

    @abc.abstractmethod
    def subscribe(self, job_id: str) -> AbstractAsyncContextManager[Subscription]:
        """Open a subscription to one job: ``async with store.subscribe(job_id) as sub:``.

        The subscription first holds the current snapshot, then every later change (conflated);
        it is closed, and leaves the store, when the block exits.

        Raises:
            JobNotFoundError: on entering, when the job is not registered (see
                ``wait_registered``).
        """

    @abc.abstractmethod
    async def wait_registered(self, job_id: str, timeout: float) -> JobSnapshot:  # noqa: ASYNC109
        """Wait until the job is registered and return its current snapshot.

        Args:
            job_id: the job's id.
            timeout: how long to wait, in seconds (trio's clock, so virtual time in tests).

        Raises:
            RegistrationTimeoutError: the job was not registered within ``timeout`` seconds.
        """

    @abc.abstractmethod
    def statistics(self) -> StoreStatistics:
        """Return the store's counters now."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release the store's resources. The in-memory store holds none."""
