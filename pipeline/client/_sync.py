"""The progress client for producers in other processes, for plain (threaded) Python code."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import httpx

from .._contract import (
    JOB_CANCEL_PATH,
    JOB_COMPLETE_PATH,
    JOB_FAIL_PATH,
    JOB_HEARTBEAT_PATH,
    JOBS_PATH,
    PROGRESS_PATH,
    path,
)
from .._errors import (
    JobFinishedError,
    JobNotFoundError,
    ServerUnavailableError,
    SinkClosedError,
)
from .._snapshot import check_heartbeat_timeout
from ._common import (
    DEFAULT_CLIENT_FLUSH_INTERVAL,
    DEFAULT_HEARTBEAT_TIMEOUT,
    DEFAULT_MAX_BATCH,
    DEFAULT_TIMEOUT,
    BatchAccounting,
    ClientStatistics,
    LeaseKeeper,
    PendingReports,
    RegisteredJob,
    auth_headers,
    check_flush_interval,
    logger,
    raise_for_answer,
    register_body,
    unavailable,
)
from ._socket import ProducerPath, SyncSocket, check_path


class ProgressClient:
    """Report progress of external jobs to a progress-sync server over HTTP (httpx, sync).

    ``report`` never waits for the network: it keeps the latest report per job, and a
    background thread owned by the client sends what is pending as one ``POST /api/progress``
    every ``flush_interval`` seconds. ``register``, ``complete``, ``fail`` and ``cancel``
    are synchronous requests: they return once the server has stored the state. Use it as a
    context manager, so ``close`` sends what is pending and stops the thread::

        with ProgressClient("http://127.0.0.1:8000", token=token) as client:
            job = client.register(stage="resize")
            for i, item in enumerate(items):
                resize(item)
                client.report_nowait(job.job_id, 100 * (i + 1) / len(items), "resize")
            client.complete(job.job_id, result={"count": len(items)})

    Args:
        base_url: the server's URL (``http://127.0.0.1:8000``).
        token: the producer token, sent as ``Authorization: Bearer``; None when the server
            needs none.
        flush_interval: seconds between batches (default 0.5).
        request_timeout: seconds to wait for each answer (default 10).
        send_reported_at: send each report's ``reportedAt`` (this machine's ``time.time()``),
            so the server orders and times updates by when they were made. Turn it off for a
            machine whose clock is not synchronised with the server's.
        max_batch: updates per request (default 1000).
        transport: an httpx transport (tests); with one, ``path="auto"`` means ``http``.
        path: how batches travel: ``auto`` (default) a persistent WebSocket
            (``GET /api/progress/ws``), falling back to ``POST /api/progress`` for good when
            the WebSocket cannot be opened (a proxy without upgrade support); ``websocket``
            without the fallback; ``http`` always ``POST``. ``statistics().path`` says which
            is in use (and the log, when it changes). A broken connection is reopened at a
            later flush, after a backoff (``_socket``); its batch is kept, as after a failed
            ``POST``.

    Raises:
        ValueError: ``flush_interval``, ``max_batch`` or ``path`` is out of range.
    """

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        flush_interval: float = DEFAULT_CLIENT_FLUSH_INTERVAL,
        request_timeout: float = DEFAULT_TIMEOUT,
        send_reported_at: bool = True,
        max_batch: int = DEFAULT_MAX_BATCH,
        transport: httpx.BaseTransport | None = None,
        path: ProducerPath = "auto",
    ) -> None:
        self.flush_interval = check_flush_interval(flush_interval)
        check_path(path)
        if transport is not None and path == "auto":
            path = "http"
        if not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a whole number >= 1, not {max_batch!r}")
        self.base_url = base_url
        self._max_batch = max_batch
        self._http = httpx.Client(
            base_url=base_url,
            headers=auth_headers(token),
            timeout=request_timeout,
            transport=transport,
        )
        self._pending = PendingReports(send_reported_at=send_reported_at)
        self._accounting = BatchAccounting()
        self._socket = SyncSocket(base_url, token, path, request_timeout)
        self._leases = LeaseKeeper()
        # Sends one batch or one terminal state at a time, so nothing sent before a terminal
        # state can arrive after it.
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._flush_loop, name="progress-sync client flush", daemon=True
        )
        self._thread.start()

    def __enter__(self) -> ProgressClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def register(
        self,
        job_id: str | None = None,
        *,
        status: str = "running",
        stage: str = "",
        message: str | None = None,
        heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT,
    ) -> RegisteredJob:
        """Register an external job (the server runs nothing; this process reports it).

        Args:
            job_id: the id to use; the server picks one by default.
            status: ``running`` (default) or ``queued``, or an alias (``pending``, ...).
            stage: the initial stage.
            message: an initial message.
            heartbeat_timeout: the job's lease in seconds (``heartbeatTimeoutS``, default
                ``DEFAULT_HEARTBEAT_TIMEOUT``), or None for none. While the client is open its
                flush thread heartbeats the job (``POST /api/jobs/{jobId}/heartbeat``) when it
                has sent nothing of it for a third of that, until the job ends; if this
                process dies, the server ends the job ``failed`` once the lease runs out.

        Returns:
            The job's id, URLs and (when the server signs them) subscribe token.

        Raises:
            JobExistsError: the id is taken.
            InvalidUpdateError: a field was refused.
            AuthenticationError: the producer token is missing or wrong.
            ServerUnavailableError: the server could not be reached.
        """
        heartbeat_timeout = check_heartbeat_timeout(heartbeat_timeout)
        body = register_body(job_id, status, stage, message, heartbeat_timeout)
        job = RegisteredJob.from_answer(self._request("POST", JOBS_PATH, body, job_id))
        if heartbeat_timeout is not None:
            self._leases.add(job.job_id, heartbeat_timeout, time.monotonic())
        return job

    def heartbeat(self, job_id: str, heartbeat_timeout: float | None = None) -> dict[str, Any]:
        """Renew the job's lease now (``POST /api/jobs/{jobId}/heartbeat``).

        The flush thread does this by itself for the jobs this client registered.

        Args:
            job_id: the job's id.
            heartbeat_timeout: when given, the job's lease from now on, in seconds (a job
                registered ``queued`` without one takes it when its work starts); this client
                then heartbeats it by itself.

        Returns:
            The job's snapshot.

        Raises:
            JobNotFoundError: the job is not registered.
            JobFinishedError: the job has ended (its lease may have expired).
            ServerUnavailableError: the server could not be reached.
        """
        heartbeat_timeout = check_heartbeat_timeout(heartbeat_timeout)
        body = None if heartbeat_timeout is None else {"heartbeatTimeoutS": heartbeat_timeout}
        answer = self._request("POST", path(JOB_HEARTBEAT_PATH, jobId=job_id), body, job_id)
        if heartbeat_timeout is not None:
            self._leases.add(job_id, heartbeat_timeout, time.monotonic())
        self._leases.renewed([job_id], time.monotonic())
        return answer

    def report_nowait(
        self,
        job_id: str,
        percent: float,
        stage: str = "",
        message: str | None = None,
        *,
        eta_seconds: float | None = None,
        reset: bool = False,
    ) -> None:
        """Report a job's progress; returns at once (sent with the next batch).

        The same call as ``AsyncProgressClient.report_nowait`` and
        ``UpdateBuffer.report_nowait``: it never waits. Thread-safe. A later report for the
        same job before the next batch replaces it. ``eta_seconds`` is the producer's own
        estimate of the seconds left (it wins over the server's); ``reset=True`` says the job
        starts over, so a lower percent is published with a new ``attempt`` (without it the
        server keeps the higher percent).

        Raises:
            InvalidUpdateError: a field is malformed (the message names it).
            SinkClosedError: the client is closed (a ``RuntimeError``, as before).
            RuntimeError: its flush thread failed (the cause is
                attached, an ``AuthenticationError`` for a wrong token, say).
        """
        self._check_usable()
        self._pending.put(job_id, percent, stage, message, eta_seconds, reset)

    report = report_nowait
    """Deprecated: the old name of ``report_nowait`` (kept for one release, CHANGELOG.md)."""

    def for_job(self, job_id: str) -> ClientJob:
        """The client bound to one job: ``report(percent, stage, message)`` for ReportingTqdm."""
        return ClientJob(self, job_id)

    def flush(self) -> None:
        """Send every pending report now, in batches of at most ``max_batch``.

        Raises:
            ServerUnavailableError: the server could not be reached (the reports are kept).
            ServerRejectedError: the server refused the batch as a whole.
        """
        with self._send_lock:
            self._send_pending(self._pending.take_all())

    def complete(self, job_id: str, result: Any = None) -> dict[str, Any]:
        """End a job ``completed`` with its JSON result; returns the terminal snapshot.

        Raises:
            JobFinishedError: the job had ended already.
            JobNotFoundError: the job is not registered.
            InvalidUpdateError: ``result`` was refused.
            ServerUnavailableError: the server could not be reached.
        """
        return self._finish(job_id, JOB_COMPLETE_PATH, {} if result is None else {"result": result})

    def fail(self, job_id: str, error: str) -> dict[str, Any]:
        """End a job ``failed`` with its error message; returns the terminal snapshot.

        The job's pending report is sent first, so the job shows where it stopped.

        Raises: as ``complete``.
        """
        return self._finish(job_id, JOB_FAIL_PATH, {"error": error})

    def cancel(self, job_id: str) -> dict[str, Any]:
        """End a job ``cancelled``; returns the terminal snapshot.

        Raises: as ``complete``.
        """
        return self._finish(job_id, JOB_CANCEL_PATH, {})

    def statistics(self) -> ClientStatistics:
        """The client's counters now (see ``ClientStatistics``)."""
        return self._accounting.statistics(
            self._pending, self._socket.path, self._socket.reconnects
        )

    def close(self) -> None:
        """Send what is pending, stop the flush thread and close the connections.

        Idempotent.

        Raises:
            ServerUnavailableError: the last batch could not be delivered.
            RuntimeError: the flush thread had failed (the cause is attached).
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        try:
            if self._failure is None:
                self.flush()
        finally:
            self._socket.close()
            self._http.close()
        self._raise_failure()

    def _finish(self, job_id: str, template: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check_usable()
        with self._send_lock:
            # The job's last report goes with its terminal write over plain HTTP (not the
            # WebSocket, which may be waiting out a reconnect backoff); if the server cannot
            # be reached, the report is kept and the lease still heartbeated, so a retry of
            # the terminal call carries it.
            line = self._pending.take(job_id)
            try:
                if line is not None:
                    self._accounting.record(self._request("POST", PROGRESS_PATH, [line]))
                answer = self._request("POST", path(template, jobId=job_id), body, job_id)
            except ServerUnavailableError:
                if line is not None:
                    self._pending.put_back([line])
                raise
            self._leases.drop(job_id)
            return answer

    def _send_pending(self, lines: list[dict[str, Any]]) -> None:
        for start in range(0, len(lines), self._max_batch):
            try:
                self._post_batch(lines[start : start + self._max_batch])
            except ServerUnavailableError:
                self._accounting.failed_batches += 1
                self._pending.put_back(lines[start:])
                raise

    def _post_batch(self, batch: list[dict[str, Any]]) -> None:
        answer = self._socket.send_batch(batch)
        if answer is None:
            answer = self._request("POST", PROGRESS_PATH, batch)
        self._accounting.record(answer)
        self._leases.renewed([line["jobId"] for line in batch], time.monotonic())

    def _send_heartbeats(self) -> None:
        """Heartbeat the jobs this client registered that it has not reported for a while."""
        for job_id in self._leases.due(time.monotonic()):
            try:
                self.heartbeat(job_id)
            except (JobFinishedError, JobNotFoundError):
                self._leases.drop(job_id)

    def _request(
        self, method: str, url: str, body: Any, job_id: str | None = None
    ) -> dict[str, Any]:
        try:
            if body is None:
                response = self._http.request(method, url)
            else:
                response = self._http.request(method, url, json=body)
        except httpx.TransportError as exc:
            raise unavailable(exc, self.base_url) from None
        raise_for_answer(response, job_id)
        answer: dict[str, Any] = response.json()
        return answer

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
                self._send_heartbeats()
            except ServerUnavailableError as exc:
                logger.warning("progress not delivered, retrying at the next flush: %s", exc)
            except BaseException as exc:
                # Not something a retry fixes (a wrong token, a bug): stop, and raise it
                # from the next call of report or close rather than lose it.
                self._failure = exc
                return

    def _check_usable(self) -> None:
        if self._closed:
            raise SinkClosedError("the progress client is closed; use it inside its with block")
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise RuntimeError(
                f"the progress client stopped sending: {self._failure!r}"
            ) from self._failure


class ClientJob:
    """A ``ProgressClient`` bound to one job.

    Attributes:
        job_id: the job this reports for.
    """

    def __init__(self, client: ProgressClient, job_id: str) -> None:
        self.job_id = job_id
        self._client = client

    def report(self, percent: float, stage: str = "", message: str | None = None) -> None:
        """Report progress (see ``ProgressClient.report``)."""
        self._client.report_nowait(self.job_id, percent, stage, message)

    def complete(self, result: Any = None) -> dict[str, Any]:
        """End the job ``completed`` (see ``ProgressClient.complete``)."""
        return self._client.complete(self.job_id, result)

    def fail(self, error: str) -> dict[str, Any]:
        """End the job ``failed`` (see ``ProgressClient.fail``)."""
        return self._client.fail(self.job_id, error)

    def cancel(self) -> dict[str, Any]:
        """End the job ``cancelled`` (see ``ProgressClient.cancel``)."""
        return self._client.cancel(self.job_id)
