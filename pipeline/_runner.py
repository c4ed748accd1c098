"""The job runner: runs jobs in a nursery it owns, at most N at once, and records how they end."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from ._checks import check_whole
from ._errors import (
    InvalidUpdateError,
    JobExistsError,
    JobFinishedError,
    JobQueueFullError,
    StoreUnavailableError,
)
from ._nursery import open_owned_nursery
from ._retry import retry_while_unavailable
from ._sink import UpdateSink
from ._snapshot import MAX_MESSAGE_LENGTH, JobSnapshot, ProgressUpdate, wall_clock
from ._status import JobStatus
from ._store import ExportStore

logger = logging.getLogger(__name__)

DEFAULT_MAX_CONCURRENT_JOBS = 4
"""Jobs the runner runs at once; the others wait as ``queued``."""

DEFAULT_MAX_QUEUED_JOBS = 1000
"""Jobs that may wait ``queued`` for a slot; ``submit`` refuses more (``JobQueueFullError``)."""

SHUTDOWN_REASON = "the server shut down before the job ended"
"""The ``error`` of a job cancelled because the runner (the server) shut down."""

TERMINAL_RETRY_TIMEOUT = 30.0
"""Seconds the runner keeps retrying a terminal state while the store is unavailable."""


class JobReporter:
    """What a running job reports its progress through; bound to one job.

    Attributes:
        job_id: the job this reporter reports for.
    """

    def __init__(self, sink: UpdateSink, job_id: str) -> None:
        self.job_id = job_id
        self._report_nowait = sink.report_nowait

    def report(
        self,
        percent: float,
        stage: str,
        message: str | None = None,
        *,
        eta_seconds: float | None = None,
        reset: bool = False,
    ) -> None:
        """Report progress without blocking (see ``UpdateBuffer.report_nowait``).

        Args:
            percent: progress in percent, a finite number from 0 to 100.
            stage: what the job is doing now.
            message: optional free text.
            eta_seconds: the job's own estimate of the seconds left (wins over the store's).
            reset: the job starts over: a lower percent is published with a new ``attempt``.

        Raises:
            InvalidUpdateError: a field is malformed.
        """
        if eta_seconds is None and not reset:
            self._report_nowait(self.job_id, percent, stage, message)
        else:
            self._report_nowait(
                self.job_id, percent, stage, message, eta_seconds=eta_seconds, reset=reset
            )


JobFunction = Callable[[JobReporter, Any], Awaitable[Any]]
"""``async def job(reporter, params) -> result``: the result must be JSON-able."""


@dataclass(frozen=True)
class JobKind:
    """A kind of job the runner can run.

    Attributes:
        name: the kind's name, as clients send it (``"demo"``).
        run: the job function.
        parse_params: turns the client's ``params`` object into what ``run`` takes.
            Raises ``InvalidUpdateError`` naming the field when they are bad.
    """

    name: str
    run: JobFunction
    parse_params: Callable[[Mapping[str, Any]], Any]


@dataclass(eq=False)
class _Job:
    job_id: str
    kind: JobKind
    params: Any
    holds_slot: bool
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: trio.Event = field(default_factory=trio.Event)
    final: JobSnapshot | None = None
    cancel_reason: str | None = None


class JobRunner:
    """Runs jobs of known kinds, at most ``max_concurrent`` at once (see ``open_job_runner``).

    For each job it registers ``queued`` (or ``running`` when a slot is free at once), marks it
    ``running`` when it starts, hands it a ``JobReporter``, and writes ``completed`` with its
    result when it returns, ``failed`` with the error message when it raises, ``cancelled``
    when it is cancelled. A job that raises never takes down the runner or other jobs.
    """

    def __init__(
        self,
        store: ExportStore,
        sink: UpdateSink,
        nursery: trio.Nursery,
        *,
        kinds: Mapping[str, JobKind],
        max_concurrent: int,
        max_queued: int = DEFAULT_MAX_QUEUED_JOBS,
    ) -> None:
        self.store = store
        self.sink = sink
        self.kinds = dict(kinds)
        self._nursery = nursery
        self._limiter = trio.CapacityLimiter(max_concurrent)
        self._max_queued = max_queued
        self._jobs: dict[str, _Job] = {}

    @property
    def active_jobs(self) -> int:
        """Jobs queued or running in this runner now."""
        return len(self._jobs)

    async def submit(
        self, kind: str, params: Mapping[str, Any] | None = None, *, job_id: str | None = None
    ) -> JobSnapshot:
        """Register a job in the store and start it (or queue it).

        Args:
            kind: the job kind's name (see ``kinds``).
            params: the kind's parameters (a JSON object), checked by the kind.
            job_id: the id to use; a random one (32 hex digits) by default.

        Returns:
            The job's first snapshot, ``running`` if it started at once, else ``queued``.

        Raises:
            InvalidUpdateError: ``kind`` is unknown or ``params`` are bad (field named).
            JobExistsError: ``job_id`` is taken.
            JobQueueFullError: no slot is free and ``max_queued`` jobs are waiting already.
        """
        job_kind = self.kinds.get(kind) if isinstance(kind, str) else None
        if job_kind is None:
            known = ", ".join(sorted(self.kinds)) or "none"
            raise InvalidUpdateError("kind", f"unknown job kind {kind!r}; known kinds: {known}")
        parsed = job_kind.parse_params(params or {})
        job = _Job(job_id or uuid.uuid4().hex, job_kind, parsed, holds_slot=False)
        try:
            # The job object, not its id, is the borrower: ids are the client's to choose.
            self._limiter.acquire_on_behalf_of_nowait(job)
            job.holds_slot = True
        except trio.WouldBlock:
            waiting = sum(not other.holds_slot for other in self._jobs.values())
            if waiting >= self._max_queued:
                raise JobQueueFullError(self._max_queued) from None
        status = JobStatus.RUNNING if job.holds_slot else JobStatus.QUEUED
        try:
            snapshot = await self.store.register(job.job_id, status=status, kind=kind)
        except BaseException as exc:
            if job.holds_slot:
                self._limiter.release_on_behalf_of(job)
            if isinstance(exc, JobExistsError):
                # The client's mistake, answered with a 409; the existing job is unharmed.
                logger.info("job %s not registered: the id is taken", job.job_id)
            else:
                logger.error(
                    "FAILED to register job %s in the store, so streams for it will not work: %s",
                    job.job_id,
                    exc,
                )
            raise
        logger.info(
            "job %s (%s) registered in the store with status %s", job.job_id, kind, status.value
        )
        self._jobs[job.job_id] = job
        self._nursery.start_soon(self._run_job, job, name=f"job {job.job_id}")
        return snapshot

    async def cancel(self, job_id: str, reason: str | None = None) -> JobSnapshot:
        """Cancel a job and return its terminal snapshot once ``cancelled`` is stored.

        A job this runner does not run (an external job) is written ``cancelled`` directly.

        Raises:
            JobNotFoundError: the job is not registered.
            JobFinishedError: the job has ended already.
        """
        job = self._jobs.get(job_id)
        if job is None:
            current = await self.store.get(job_id)
            if current.is_terminal:
                raise JobFinishedError(job_id, current.status.value)
            return await self.sink.finish(job_id, JobStatus.CANCELLED, error=reason)
        job.cancel_reason = reason
        job.scope.cancel()
        await job.done.wait()
        final = job.final if job.final is not None else await self.store.get(job_id)
        if final.status is not JobStatus.CANCELLED:
            # It ended on its own before the cancellation reached it.
            raise JobFinishedError(job_id, final.status.value)
        return final

    async def cancel_all(self) -> None:
        """Cancel every queued and running job; return once each one is stored ``cancelled``.

        The server calls this when it shuts down, so that streams following these jobs get
        their terminal event before they end. Jobs submitted meanwhile are cancelled too.
        """
        await trio.lowlevel.checkpoint()
        while self._jobs:
            jobs = list(self._jobs.values())
            for job in jobs:
                job.cancel_reason = SHUTDOWN_REASON
                job.scope.cancel()
            for job in jobs:
                await job.done.wait()

    async def _run_job(self, job: _Job) -> None:
        reporter = JobReporter(self.sink, job.job_id)
        outcome: tuple[JobStatus, str | None, Any] = (JobStatus.CANCELLED, SHUTDOWN_REASON, None)
        try:
            with job.scope:
                if not job.holds_slot:
                    await self._limiter.acquire_on_behalf_of(job)
                    job.holds_slot = True
                    try:
                        await self.store.apply_progress(
                            [ProgressUpdate(job.job_id, 0.0, "starting", None, wall_clock())]
                        )
                    except StoreUnavailableError:
                        # The sink keeps it and writes it when the store is back.
                        reporter.report(0.0, "starting")
                try:
                    result = await job.kind.run(reporter, job.params)
                except Exception as exc:
                    logger.warning("job %s failed: %r", job.job_id, exc)
                    logger.debug("traceback of job %s", job.job_id, exc_info=exc)
                    error = (str(exc) or type(exc).__name__)[:MAX_MESSAGE_LENGTH]
                    outcome = (JobStatus.FAILED, error, None)
                else:
                    outcome = (JobStatus.COMPLETED, None, result)
            if job.scope.cancelled_caught:
                outcome = (JobStatus.CANCELLED, job.cancel_reason, None)
        finally:
            if job.holds_slot:
                self._limiter.release_on_behalf_of(job)
            with trio.CancelScope(shield=True):
                job.final = await self._write_outcome(job.job_id, *outcome)
            del self._jobs[job.job_id]
            job.done.set()

    async def _write_outcome(
        self, job_id: str, status: JobStatus, error: str | None, result: Any
    ) -> JobSnapshot | None:

        async def write() -> JobSnapshot:
            nonlocal status, error
            if status is JobStatus.COMPLETED:
                try:
                    return await self.sink.finish(job_id, status, result=result)
                except InvalidUpdateError as exc:
                    status, error = JobStatus.FAILED, f"the job's result was refused: {exc}"
            return await self.sink.finish(job_id, status, error=error)

        def unavailable(exc: StoreUnavailableError) -> None:
            logger.warning("store unavailable, retrying terminal state of job %s", job_id)

        try:
            return await retry_while_unavailable(
                write, retry_for=TERMINAL_RETRY_TIMEOUT, on_unavailable=unavailable
            )
        except StoreUnavailableError as exc:
            logger.error("terminal state %s of job %s NOT written: %s", status, job_id, exc)
            return None


MIN_QUEUED_JOBS = 0
"""The smallest ``max_queued``: 0 means a job starts only when a slot is free."""


@asynccontextmanager
async def open_job_runner(
    store: ExportStore,
    sink: UpdateSink,
    *,
    kinds: Mapping[str, JobKind],
    max_concurrent: int = DEFAULT_MAX_CONCURRENT_JOBS,
    max_queued: int = DEFAULT_MAX_QUEUED_JOBS,
) -> AsyncIterator[JobRunner]:
    """Open a ``JobRunner`` whose jobs run in a nursery owned by this block.

    Leaving the block cancels the jobs still running or queued; each is written ``cancelled``
    (through ``sink``, which must stay open until this block has exited).

    Args:
        store: where jobs are registered.
        sink: where progress and terminal states are written (buffer or direct sync).
        kinds: the job kinds by name (``{"demo": DEMO_KIND}``).
        max_concurrent: jobs run at once (default 4); must be >= 1.
        max_queued: jobs that may wait for a slot (default 1000); must be >= 0.

    Raises:
        ValueError: ``max_concurrent`` is below 1 or ``max_queued`` below 0.
    """
    max_concurrent = check_whole("max_concurrent", max_concurrent, minimum=1)
    max_queued = check_whole("max_queued", max_queued, minimum=MIN_QUEUED_JOBS)
    async with open_owned_nursery() as nursery:
        yield JobRunner(
            store, sink, nursery, kinds=kinds, max_concurrent=max_concurrent, max_queued=max_queued
        )
