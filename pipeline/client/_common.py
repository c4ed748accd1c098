"""What both progress clients share: the coalescing batch, requests and answers."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any, NoReturn

import httpx

from .._checks import check_seconds
from .._contract import error_for_answer
from .._errors import InvalidUpdateError, ServerUnavailableError
from .._snapshot import check_eta_seconds, check_job_id, check_progress, wall_clock

logger = logging.getLogger("progress_sync.client")

DEFAULT_CLIENT_FLUSH_INTERVAL = 0.5
"""Seconds between two batches a client sends (the server's default flush interval)."""

DEFAULT_TIMEOUT = 10.0
"""Seconds a client waits for the server to answer one request."""

DEFAULT_HEARTBEAT_TIMEOUT = 60.0
"""The lease, in seconds, the clients give the jobs they register (``heartbeatTimeoutS``): if
the producer process dies, the server ends its jobs ``failed`` this long after it last heard
of them. The client's background sender heartbeats every job it registered that has had no
report for a third of that, so a live producer never loses its lease however busy it is."""

DEFAULT_MAX_BATCH = 1000
"""Updates a client puts in one ``POST /api/progress`` (the server takes up to 10,000)."""


@dataclass(frozen=True)
class RegisteredJob:
    """The server's answer to registering an external job.

    Attributes:
        job_id: the job's id.
        status: its status now (``queued`` or ``running``).
        status_url: the path of its snapshot (``/api/jobs/{jobId}``).
        stream_url: the path of its SSE stream.
        subscribe_token: the token readers pass as ``?token=``, when the server signs them.
    """

    job_id: str
    status: str
    status_url: str
    stream_url: str
    subscribe_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_answer(cls, body: dict[str, Any]) -> RegisteredJob:
        """Build it from the 201 body of ``POST /api/jobs``."""
        return cls(
            job_id=body["jobId"],
            status=body["status"],
            status_url=body["statusUrl"],
            stream_url=body["streamUrl"],
            subscribe_token=body.get("subscribeToken"),
        )


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """Counters of a progress client since it was opened.

    Attributes:
        reports: reports accepted by ``report``.
        coalesced: reports replaced by a later one for the same job before being sent.
        batches_sent: batches the server answered (requests or WebSocket frames).
        updates_accepted: updates the server accepted.
        failed_batches: batches that could not be delivered (server unreachable); their
            latest state per job was kept and sent again.
        unknown_jobs: ids the server reported as not registered (their updates were lost).
        pending: jobs with a report waiting to be sent now.
        path: how batches are sent now: ``websocket`` (the persistent connection,
            ``GET /api/progress/ws``) or ``http`` (``POST /api/progress``).
        reconnects: persistent connections opened after the first (server restarts, network
            drops).
    """

    reports: int = 0
    coalesced: int = 0
    batches_sent: int = 0
    updates_accepted: int = 0
    failed_batches: int = 0
    unknown_jobs: tuple[str, ...] = ()
    pending: int = 0
    path: str = "http"
    reconnects: int = 0


class PendingReports:
    """The latest report per job, waiting for the next batch. Thread-safe."""

    def __init__(self, *, send_reported_at: bool) -> None:
        self._lock = threading.Lock()
        self._lines: dict[str, dict[str, Any]] = {}
        self._send_reported_at = send_reported_at
        self.reports = 0
        self.coalesced = 0

    def put(
        self,
        job_id: str,
        percent: float,
        stage: str,
        message: str | None,
        eta_seconds: float | None = None,
        reset: bool = False,
    ) -> None:
        """Check a report and keep it as its job's latest (a ``reset`` it replaces is kept).

        Raises:
            InvalidUpdateError: a field is malformed (the message names it).
        """
        percent = check_progress(percent, stage, message)
        check_job_id(job_id)
        eta_seconds = check_eta_seconds(eta_seconds)
        if type(reset) is not bool:
            raise InvalidUpdateError("reset", f"must be true or false, not {reset!r}")
        line: dict[str, Any] = {"jobId": job_id, "percent": percent, "stage": stage}
        if message is not None:
            line["message"] = message
        if eta_seconds is not None:
            line["etaSeconds"] = eta_seconds
        if self._send_reported_at:
            line["reportedAt"] = wall_clock()
        with self._lock:
            self.reports += 1
            replaced = self._lines.get(job_id)
            if replaced is not None:
                self.coalesced += 1
                reset = reset or replaced.get("reset", False)
            if reset:
                line["reset"] = True
            self._lines[job_id] = line

    def take_all(self) -> list[dict[str, Any]]:
        """Remove and return every pending line."""
        with self._lock:
            lines, self._lines = self._lines, {}
        return list(lines.values())

    def take(self, job_id: str) -> dict[str, Any] | None:
        """Remove and return ``job_id``'s pending line, if any."""
        with self._lock:
            return self._lines.pop(job_id, None)

    def put_back(self, lines: list[dict[str, Any]]) -> None:
        """Keep undelivered lines for the next batch, unless a newer report replaced them."""
        with self._lock:
            for line in lines:
                self._lines.setdefault(line["jobId"], line)

    def __len__(self) -> int:
        with self._lock:
            return len(self._lines)


def check_flush_interval(flush_interval: float) -> float:
    """Return ``flush_interval`` as a float.

    Raises:
        ValueError: it is not a positive, finite number of seconds.
    """
    return check_seconds("flush_interval", flush_interval)


def auth_headers(token: str | None) -> dict[str, str]:
    """``Authorization: Bearer <token>`` when a producer token is given."""
    return {} if token is None else {"Authorization": f"Bearer {token}"}


class LeaseKeeper:
    """The jobs a client registered with a lease, and when the server last heard of each.

    Thread-safe. ``now`` is any monotonic clock in seconds (``time.monotonic`` in threads,
    ``trio.current_time`` in trio code).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, tuple[float, float]] = {}

    def add(self, job_id: str, timeout: float, now: float) -> None:
        """Follow ``job_id``'s lease of ``timeout`` seconds, just renewed."""
        with self._lock:
            self._jobs[job_id] = (timeout, now)

    def renewed(self, job_ids: list[str], now: float) -> None:
        """The server took a report of each of ``job_ids`` (a report renews a lease)."""
        with self._lock:
            for job_id in job_ids:
                lease = self._jobs.get(job_id)
                if lease is not None:
                    self._jobs[job_id] = (lease[0], now)

    def drop(self, job_id: str) -> None:
        """Stop following ``job_id`` (it ended, or the server no longer knows it)."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def due(self, now: float) -> list[str]:
        """The jobs last renewed a third of their lease ago or more: heartbeat them now."""
        with self._lock:
            return [
                job_id
                for job_id, (timeout, renewed) in self._jobs.items()
                if now - renewed >= timeout / 3
            ]


def register_body(
    job_id: str | None,
    status: str,
    stage: str,
    message: str | None,
    heartbeat_timeout: float | None = None,
) -> dict[str, Any]:
    """The JSON body of ``POST /api/jobs`` for an external job."""
    body: dict[str, Any] = {"status": status, "stage": stage}
    if heartbeat_timeout is not None:
        body["heartbeatTimeoutS"] = heartbeat_timeout
    if job_id is not None:
        body["jobId"] = check_job_id(job_id)
    if message is not None:
        body["message"] = message
    return body


def unavailable(exc: httpx.TransportError, base_url: str) -> ServerUnavailableError:
    """Translate an httpx transport error (never holding headers, so no token)."""
    return ServerUnavailableError(
        f"the progress-sync server at {base_url} could not be reached: {type(exc).__name__}: {exc}"
    )


def raise_for_answer(response: httpx.Response, job_id: str | None = None) -> None:
    """Raise the pipeline error that matches an error answer; return on 2xx.

    The answer's machine-readable ``code`` decides (``progress_sync._contract``,
    ``error_for_answer``), never its wording.

    Raises:
        AuthenticationError: 401 or 403.
        InvalidUpdateError: ``invalid_request`` naming a field.
        JobNotFoundError: ``job_not_found`` for the job.
        JobExistsError: ``job_exists``: the job id is taken.
        JobFinishedError: ``job_finished``: the job has ended already.
        ServerUnavailableError: the server or its store is away for now (a code that says
            to retry, or 429, 502, 503 or 504 from a proxy): try again later.
        ServerRejectedError: any other error answer.
    """
    if response.is_success:
        return
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise error_for_answer(
        response.status_code,
        body,
        reason=response.reason_phrase,
        text=response.text[:500],
        job_id=job_id,
    )


def raise_for_error(
    code: int, body: dict[str, Any], reason: str, text: str, job_id: str | None = None
) -> NoReturn:
    """Raise the pipeline error that matches an error answer: an HTTP status and its JSON body,
    or a WebSocket frame's error body with its ``status`` (``error_for_answer``).

    Raises: as ``raise_for_answer``.
    """
    raise error_for_answer(code, body, reason=reason, text=text[:500], job_id=job_id)


class BatchAccounting:
    """Counts what the server said about the batches; logs each unknown job once."""

    def __init__(self) -> None:
        self.batches_sent = 0
        self.updates_accepted = 0
        self.failed_batches = 0
        self.unknown_jobs: dict[str, None] = {}

    def record(self, answer: dict[str, Any]) -> None:
        """Account for one ``POST /api/progress`` answer."""
        self.batches_sent += 1
        self.updates_accepted += int(answer.get("accepted", 0))
        for job_id in answer.get("unknownJobs", ()):
            if job_id not in self.unknown_jobs:
                self.unknown_jobs[job_id] = None
                logger.warning(
                    "the server does not know job %r; register it first (its reports are lost)",
                    job_id,
                )
        for error in answer.get("errors", ()):
            logger.warning("the server refused an update: %s", error)

    def statistics(
        self, pending: PendingReports, path: str = "http", reconnects: int = 0
    ) -> ClientStatistics:
        """The client's counters now."""
        return ClientStatistics(
            path=path,
            reconnects=reconnects,
            reports=pending.reports,
            coalesced=pending.coalesced,
            batches_sent=self.batches_sent,
            updates_accepted=self.updates_accepted,
            failed_batches=self.failed_batches,
            unknown_jobs=tuple(self.unknown_jobs),
            pending=len(pending),
        )
