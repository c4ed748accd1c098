"""The progress client for producers in other processes, for trio code."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import trio

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
from ._socket import ProducerPath, TrioSocket, check_path

DEFAULT_CLOSE_TIMEOUT = 10.0
"""Seconds the last batch may take when the client closes, even if it is being cancelled."""


class AsyncProgressClient:
    """Report progress of external jobs to a progress-sync server over HTTP (httpx, trio).

    Made by ``open_progress_client``, which owns the task that sends what is pending as one
    ``POST /api/progress`` every ``flush_interval`` seconds. ``report_nowait`` never waits
    (it is also safe to call from worker threads); ``register``, ``complete``, ``fail`` and
    ``cancel`` return once the server has stored the state.
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        socket: TrioSocket,
        *,
        flush_interval: float,
        send_reported_at: bool,
        max_batch: int,
    ) -> None:
        self.flush_interval = flush_interval
        self._http = http
        self._socket = socket
        self._max_batch = max_batch
        self._pending = PendingReports(send_reported_at=send_reported_at)
        self._accounting = BatchAccounting()
        self._leases = LeaseKeeper()
        # One batch or terminal state in flight at a time: nothing sent before a terminal
        # state can arrive after it.
        self._send_lock = trio.Lock()
        self._closed = False
        self._broken = False

    async def register(
        self,
        job_id: str | None = None,
        *,
        status: str = "running",
        stage: str = "",
        message: str | None = None,
        heartbeat_timeout: float | None = DEFAULT_HEARTBEAT_TIMEOUT,
    ) -> RegisteredJob:
        """Register an external job (see ``ProgressClient.register``).

        While the client is open its flush task heartbeats the job when it has sent nothing
        of it for a third of ``heartbeat_timeout``, until the job ends.
        """
        heartbeat_timeout = check_heartbeat_timeout(heartbeat_timeout)
        body = register_body(job_id, status, stage, message, heartbeat_timeout)
        job = RegisteredJob.from_answer(await self._request(JOBS_PATH, body, job_id))
        if heartbeat_timeout is not None:
            self._leases.add(job.job_id, heartbeat_timeout, trio.current_time())
        return job

    async def heartbeat(
        self, job_id: str, heartbeat_timeout: float | None = None
    ) -> dict[str, Any]:
        """Renew the job's lease now (``POST /api/jobs/{jobId}/heartbeat``).

        The flush task does this by itself for the jobs this client registered; see
        ``ProgressClient.heartbeat`` for ``heartbeat_timeout``.

        Returns:
            The job's snapshot.

        Raises:
            JobNotFoundError: the job is not registered.
            JobFinishedError: the job has ended (its lease may have expired).
            ServerUnavailableError: the server could not be reached.
        """
        heartbeat_timeout = check_heartbeat_timeout(heartbeat_timeout)
        body = None if heartbeat_timeout is None else {"heartbeatTimeoutS": heartbeat_timeout}
        answer = await self._request(path(JOB_HEARTBEAT_PATH, jobId=job_id), body, job_id)
        if heartbeat_timeout is not None:
            self._leases.add(job_id, heartbeat_timeout, trio.current_time())
        self._leases.renewed([job_id], trio.current_time())
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

        ``eta_seconds`` is the producer's own estimate of the seconds left (it wins over the
        server's); ``reset=True`` says the job starts over, so a lower percent is published
        with a new ``attempt`` (without it the server keeps the higher percent).

        Raises:
            InvalidUpdateError: a field is malformed (the message names it).
            SinkClosedError: the client is closed.
        """
        if self._closed:
            raise SinkClosedError(
                "the progress client is closed; report inside its async with block"
            )
        self._pending.put(job_id, percent, stage, message, eta_seconds, reset)

    def for_job(self, job_id: str) -> AsyncClientJob:
        """The client bound to one job: ``report(percent, stage, message)`` for ReportingTqdm."""
        return AsyncClientJob(self, job_id)

    async def flush(self) -> None:
        """Send every pending report now.

        Raises:
            ServerUnavailableError: the server could not be reached (the reports are kept).
            ServerRejectedError: the server refused the batch as a whole.
        """
        async with self._send_lock:
            lines = self._pending.take_all()
            for start in range(0, len(lines), self._max_batch):
                try:
                    await self._post_batch(lines[start : start + self._max_batch])
                except ServerUnavailableError:
                    self._accounting.failed_batches += 1
                    self._pending.put_back(lines[start:])
                    raise
                except BaseException:
                    # Cancelled mid-send, or refused: keep them for the final flush.
                    self._pending.put_back(lines[start:])
                    raise

    async def complete(self, job_id: str, result: Any = None) -> dict[str, Any]:
        """End a job ``completed`` (see ``ProgressClient.complete``)."""
        return await self._finish(
            job_id, JOB_COMPLETE_PATH, {} if result is None else {"result": result}
        )

    async def fail(self, job_id: str, error: str) -> dict[str, Any]:
        """End a job ``failed`` (see ``ProgressClient.fail``)."""
        return await self._finish(job_id, JOB_FAIL_PATH, {"error": error})

    async def cancel(self, job_id: str) -> dict[str, Any]:
        """End a job ``cancelled`` (see ``ProgressClient.cancel``)."""
        return await self._finish(job_id, JOB_CANCEL_PATH, {})

    def statistics(self) -> ClientStatistics:
        """The client's counters now (see ``ClientStatistics``)."""
        return self._accounting.statistics(
            self._pending, self._socket.path, self._socket.reconnects
        )

    async def _finish(self, job_id: str, template: str, body: dict[str, Any]) -> dict[str, Any]:
        async with self._send_lock:
            # As the sync client: the last report goes with the terminal write over plain
            # HTTP, and is kept (lease still heartbeated) when the server cannot be reached.
            line = self._pending.take(job_id)
            try:
                if line is not None:
                    self._accounting.record(await self._request(PROGRESS_PATH, [line]))
                answer = await self._request(path(template, jobId=job_id), body, job_id)
            except ServerUnavailableError:
                if line is not None:
                    self._pending.put_back([line])
                raise
            self._leases.drop(job_id)
            return answer

    async def _post_batch(self, batch: list[dict[str, Any]]) -> None:
        answer = await self._socket.send_batch(batch)
        if answer is None:
            answer = await self._request(PROGRESS_PATH, batch)
        self._accounting.record(answer)
        self._leases.renewed([line["jobId"] for line in batch], trio.current_time())

    async def _send_heartbeats(self) -> None:
        """Heartbeat the jobs this client registered that it has not reported for a while."""
        for job_id in self._leases.due(trio.current_time()):
            try:
                await self.heartbeat(job_id)
            except (JobFinishedError, JobNotFoundError):
                self._leases.drop(job_id)

    async def _request(self, url: str, body: Any, job_id: str | None = None) -> dict[str, Any]:
        try:
            if body is None:
                response = await self._http.post(url)
            else:
                response = await self._http.post(url, json=body)
        except httpx.TransportError as exc:
            raise unavailable(exc, str(self._http.base_url)) from None
        raise_for_answer(response, job_id)
        answer: dict[str, Any] = response.json()
        return answer

    async def _flush_loop(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        while True:
            await trio.sleep(self.flush_interval)
            try:
                await self.flush()
                await self._send_heartbeats()
            except ServerUnavailableError as exc:
                logger.warning("progress not delivered, retrying at the next flush: %s", exc)
            except BaseException:
                # Not something a retry fixes (a wrong token): raise it out of the block.
                self._broken = True
                raise


class AsyncClientJob:
    """An ``AsyncProgressClient`` bound to one job.

    Attributes:
        job_id: the job this reports for.
    """

    def __init__(self, client: AsyncProgressClient, job_id: str) -> None:
        self.job_id = job_id
        self._client = client

    def report(self, percent: float, stage: str = "", message: str | None = None) -> None:
        """Report progress without waiting (see ``AsyncProgressClient.report_nowait``)."""
        self._client.report_nowait(self.job_id, percent, stage, message)

    async def complete(self, result: Any = None) -> dict[str, Any]:
        """End the job ``completed``."""
        return await self._client.complete(self.job_id, result)

    async def fail(self, error: str) -> dict[str, Any]:
        """End the job ``failed``."""
        return await self._client.fail(self.job_id, error)

    async def cancel(self) -> dict[str, Any]:
        """End the job ``cancelled``."""
        return await self._client.cancel(self.job_id)


@asynccontextmanager
async def open_progress_client(
    base_url: str,
    *,
    token: str | None = None,
    flush_interval: float = DEFAULT_CLIENT_FLUSH_INTERVAL,
    request_timeout: float = DEFAULT_TIMEOUT,
    send_reported_at: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    transport: httpx.AsyncBaseTransport | None = None,
    path: ProducerPath = "auto",
) -> AsyncIterator[AsyncProgressClient]:
    """Open an ``AsyncProgressClient`` whose flush task lives in a nursery owned by this block.

    Leaving the block sends what is pending (within ``DEFAULT_CLOSE_TIMEOUT`` seconds, even
    when cancelled). A batch the server refuses as a whole (a wrong token, say) raises out of
    the block; an unreachable server is logged and retried at the next flush. A single error
    leaves the block as itself, not wrapped in an exception group.

    Args:
        base_url: the server's URL (``http://127.0.0.1:8000``).
        token: the producer token (``Authorization: Bearer``), or None.
        flush_interval: seconds between batches (default 0.5).
        request_timeout: seconds to wait for each answer (default 10).
        send_reported_at: send each report's ``reportedAt`` (see ``ProgressClient``).
        max_batch: updates per request (default 1000).
        transport: an httpx transport (tests); with one, ``path="auto"`` means ``http``.
        path: ``auto`` (default), ``websocket`` or ``http``: see ``ProgressClient``.

    Raises:
        ValueError: ``flush_interval``, ``max_batch`` or ``path`` is out of range.
    """
    flush_interval = check_flush_interval(flush_interval)
    check_path(path)
    if transport is not None and path == "auto":
        path = "http"
    if not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be a whole number >= 1, not {max_batch!r}")
    try:
        async with (
            httpx.AsyncClient(
                base_url=base_url,
                headers=auth_headers(token),
                timeout=request_timeout,
                transport=transport,
            ) as http,
            trio.open_nursery() as socket_nursery,
        ):
            # The WebSocket's task lives in its own nursery, which outlives the flush task's:
            # the final flush still has its connection.
            socket = TrioSocket(base_url, token, path, request_timeout, socket_nursery)
            try:
                async with trio.open_nursery() as nursery:
                    client = AsyncProgressClient(
                        http,
                        socket,
                        flush_interval=flush_interval,
                        send_reported_at=send_reported_at,
                        max_batch=max_batch,
                    )
                    await nursery.start(client._flush_loop)
                    try:
                        yield client
                    finally:
                        client._closed = True
                        nursery.cancel_scope.cancel()
                        with trio.CancelScope(shield=True) as scope:
                            scope.deadline = trio.current_time() + DEFAULT_CLOSE_TIMEOUT
                            try:
                                if not client._broken:
                                    await client.flush()
                            except ServerUnavailableError as exc:
                                logger.error(
                                    "%d job states were not delivered: %s",
                                    len(client._pending),
                                    exc,
                                )
            finally:
                await socket.aclose()
    except BaseExceptionGroup as group:
        # The nursery wraps whatever ends the block; a lone error (the caller's JobExistsError,
        # the flush task's AuthenticationError) comes out as itself, as from a plain call.
        single = _only_exception(group)
        if single is None:
            raise
        raise single from None


def _only_exception(group: BaseExceptionGroup) -> BaseException | None:
    exceptions = group.exceptions
    while len(exceptions) == 1 and isinstance(exceptions[0], BaseExceptionGroup):
        exceptions = exceptions[0].exceptions
    return exceptions[0] if len(exceptions) == 1 else None
