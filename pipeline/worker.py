"""Producers for task-queue workers (Celery, RQ): sync, thread-safe, one per process.

Two transports behind one interface, ``TaskProducer``:

- ``RedisProducer`` (``open_redis_producer``): for a worker that shares the server's Redis
  store. It writes straight to Redis, with no HTTP hop and no server CPU per report: the
  latest report per job is kept, and each flush is ONE call of the Redis store's own
  ``APPLY_PROGRESS`` script (the same rules as every other writer: stale reports dropped,
  nothing lands after a terminal state, every server process told over the store's pub/sub
  channel). Terminal states are written synchronously.
- ``HttpProducer`` (``open_http_producer``): for a worker that only reaches the server over
  HTTP (``progress_sync.client.ProgressClient``).

Why the Redis producer drives coredis from a background thread with a trio loop, rather than
running the scripts' text through a sync client (redis-py): the thread runs the very
``RedisStore``, ``UpdateBuffer`` and ``ThreadReporter`` the server runs. The scripts' argument
layouts, the reply decoding, the retries while Redis is away and the fold of a job's pending
report into its terminal write exist once; a redis-py copy would be a second home for each of
those facts, and would drift. The cost is one thread per process, and one crossing into
trio per flush interval (``ThreadReporter``), not per report.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from ._buffer import DEFAULT_FLUSH_INTERVAL, open_update_buffer
from ._errors import JobExistsError, JobFinishedError, JobNotFoundError
from ._extras import needs_extra
from ._redis_scripts import DEFAULT_REDIS_PREFIX
from ._snapshot import JobSnapshot, ProgressUpdate, wall_clock
from ._status import JobStatus
from ._threads import ThreadReporter, open_thread_reporter

logger = logging.getLogger(__name__)

STORE_URL_ENV = "PROGRESS_SYNC_STORE"
"""The environment variable holding the Redis store URL, as for ``progress-sync serve``."""
STORE_PREFIX_ENV = "PROGRESS_SYNC_STORE_PREFIX"
"""The environment variable holding the store's key prefix, as for ``progress-sync serve``."""
SERVER_URL_ENV = "PROGRESS_SYNC_SERVER"
"""The environment variable holding the server's URL, as for ``progress-sync run``."""
PRODUCER_TOKEN_ENV = "PROGRESS_SYNC_PRODUCER_TOKEN"
"""The environment variable holding the producer token (HTTP transport)."""

DEFAULT_WORKER_HEARTBEAT_TIMEOUT = 30.0
"""Seconds a task's job may go without progress or heartbeat before the server's lease reaper
ends it ``failed`` (the worker was killed). The producer heartbeats every third of it."""

OnEnd = Callable[[JobStatus], None]
"""Called with a watched job's terminal status when something else ended it (a cancel
through the API, a lease that ran out). Runs in the producer's thread: it must not block."""

DEFAULT_HTTP_WATCH_INTERVAL = 1.0
"""Seconds between two checks of a watched job over HTTP (one heartbeat request each)."""


class TaskProducer(Protocol):
    """What the Celery and RQ integrations need from a transport; every method is thread-safe.

    ``register``, ``start`` and ``finish`` return once the store holds the state; ``report``
    never waits for I/O.
    """

    def register(
        self,
        job_id: str,
        *,
        status: JobStatus | str = JobStatus.QUEUED,
        stage: str = "",
        heartbeat_timeout: float | None = None,
    ) -> bool:
        """Register a job; False (nothing written) when the id is registered already."""
        ...

    def start(
        self, job_id: str, *, stage: str = "", heartbeat_timeout: float | None = None
    ) -> JobStatus:
        """Mark the job ``running`` with the lease ``heartbeat_timeout`` (registering it when
        it is not); return its status, which is terminal when it ended before it started
        (cancelled while queued)."""
        ...

    def report(
        self, job_id: str, percent: float, stage: str = "", message: str | None = None
    ) -> None:
        """Report progress; coalesced, written at the next flush."""
        ...

    def finish(
        self,
        job_id: str,
        status: JobStatus | str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobStatus:
        """Write a terminal state; return the job's terminal status (the earlier one when
        the job had ended already: the first terminal state wins)."""
        ...

    def watch(self, job_id: str, on_end: OnEnd) -> None:
        """Call ``on_end`` when something other than this producer ends the job."""
        ...

    def unwatch(self, job_id: str) -> None:
        """Stop watching the job (before this producer ends it)."""
        ...


@dataclass(frozen=True, slots=True)
class RedisProducerStatistics:
    """Counters of a ``RedisProducer``.

    Attributes:
        reports: reports accepted by ``report``.
        coalesced: reports replaced in the calling thread by a later one of the same job.
        batches: batches written to Redis (one ``APPLY_PROGRESS`` script call each).
        heartbeats: lease renewals written for watched jobs.
        watched: jobs watched now.
    """

    reports: int
    coalesced: int
    batches: int
    heartbeats: int
    watched: int


class RedisProducer:
    """Write progress straight to the server's Redis store from sync code (any thread).

    Make one with ``open_redis_producer``; its background thread owns a trio run holding a
    ``RedisStore``, an ``UpdateBuffer`` over it and a ``ThreadReporter``.
    """

    def __init__(self, *, heartbeat_interval: float) -> None:
        self.heartbeat_interval = heartbeat_interval
        self._token: trio.lowlevel.TrioToken | None = None
        self._reporter: ThreadReporter | None = None
        self._store: Any = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._watched: dict[str, trio.CancelScope] = {}
        self._heartbeats = 0
        self._pid = os.getpid()

    # -- the TaskProducer interface ------------------------------------------------------

    def register(
        self,
        job_id: str,
        *,
        status: JobStatus | str = JobStatus.QUEUED,
        stage: str = "",
        heartbeat_timeout: float | None = None,
    ) -> bool:
        """Register an external job (``queued`` by default); blocks until it is stored.

        Args:
            job_id: the job's id (the task id).
            status: ``queued`` or ``running``.
            stage: the initial stage.
            heartbeat_timeout: the job's lease in seconds, or None for none.

        Returns:
            True when registered, False when the id was registered already (nothing written).

        Raises:
            InvalidUpdateError: a field is malformed.
            StoreUnavailableError: Redis could not be reached.
        """
        try:
            self._run(self._register, job_id, JobStatus(status), stage, heartbeat_timeout)
        except JobExistsError:
            return False
        return True

    def start(
        self, job_id: str, *, stage: str = "", heartbeat_timeout: float | None = None
    ) -> JobStatus:
        """Mark the job ``running`` now (synchronous writes), registering it if needed.

        Args:
            job_id: the job's id.
            stage: the stage to show.
            heartbeat_timeout: the job's lease from now on, in seconds; None for none. Keep it
                alive with ``watch`` (which heartbeats) or by reporting.

        Returns:
            ``running``, or the job's terminal status when it had ended already.

        Raises:
            StoreUnavailableError: Redis could not be reached.
        """
        status: JobStatus = self._run(self._start, job_id, stage, heartbeat_timeout)
        return status

    def report(
        self, job_id: str, percent: float, stage: str = "", message: str | None = None
    ) -> None:
        """Report progress from any thread; returns at once (about a microsecond).

        The latest report per job is written with the next flush, at most two flush
        intervals later (the thread's hand-over, then the buffer's write).

        Raises:
            InvalidUpdateError: a field is malformed (the message names it).
            BufferClosedError: the producer is closed.
        """
        self._require_reporter().report(job_id, percent, stage, message)

    def finish(
        self,
        job_id: str,
        status: JobStatus | str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobStatus:
        """Write the job's terminal state; blocks until it is stored and published.

        The job's pending report goes into the same write, so a failed job shows where it
        stopped. A job that had ended already keeps its state.

        Returns:
            The job's terminal status as stored.

        Raises:
            JobNotFoundError: the job is not registered.
            InvalidUpdateError: ``error`` or ``result`` is malformed.
            StoreUnavailableError: Redis could not be reached for 30 s.
        """
        self.unwatch(job_id)
        reporter = self._require_reporter()
        snapshot = reporter.finish(job_id, status, error=error, result=result)
        return snapshot.status

    def watch(self, job_id: str, on_end: OnEnd) -> None:
        """Follow the job on the store's pub/sub channel; ``on_end`` gets its terminal status.

        The job also gets a heartbeat every ``heartbeat_interval`` seconds while watched.
        """
        self._run_sync(self._start_watch, job_id, on_end)

    def unwatch(self, job_id: str) -> None:
        """Stop following the job (idempotent)."""
        self._run_sync(self._stop_watch, job_id)

    # -- more ----------------------------------------------------------------------------

    def get(self, job_id: str) -> JobSnapshot:
        """The job's current snapshot.

        Raises:
            JobNotFoundError: the job is not registered.
        """
        snapshot: JobSnapshot = self._run(self._store.get, job_id)
        return snapshot

    def for_job(self, job_id: str) -> Callable[[float, str, str | None], None]:
        """``report(percent, stage, message)`` bound to one job, for ``ReportingTqdm``."""

        def report(percent: float, stage: str = "", message: str | None = None) -> None:
            self.report(job_id, percent, stage, message)

        return report

    def flush(self) -> None:
        """Write every pending report now; blocks until written."""
        self._run(self._flush)

    def statistics(self) -> RedisProducerStatistics:
        """The producer's counters now."""
        reporter = self._require_reporter().statistics()
        return RedisProducerStatistics(
            reports=reporter.reports,
            coalesced=reporter.coalesced,
            batches=self._store.statistics().writes if self._store is not None else 0,
            heartbeats=self._heartbeats,
            watched=len(self._watched),
        )

    # -- the trio side ---------------------------------------------------------------------

    async def _register(
        self,
        job_id: str,
        status: JobStatus,
        stage: str,
        heartbeat_timeout: float | None,
    ) -> JobSnapshot:
        snapshot: JobSnapshot = await self._store.register(
            job_id, status=status, stage=stage, heartbeat_timeout=heartbeat_timeout
        )
        return snapshot

    async def _start(self, job_id: str, stage: str, heartbeat_timeout: float | None) -> JobStatus:
        store = self._store
        update = ProgressUpdate(job_id, 0.0, stage, None, wall_clock())
        for _ in range(3):
            result = await store.apply_progress([update])
            if result.applied:
                try:
                    await store.heartbeat(job_id, heartbeat_timeout=heartbeat_timeout)
                except JobFinishedError as exc:
                    return JobStatus(exc.status)
                return JobStatus.RUNNING
            if not result.unknown_jobs:
                # Ended before it started (ignored: terminal), or an older report (stale).
                snapshot: JobSnapshot = await store.get(job_id)
                return snapshot.status
            try:
                await self._register(job_id, JobStatus.RUNNING, stage, heartbeat_timeout)
                return JobStatus.RUNNING
            except JobExistsError:
                continue  # registered meanwhile (the publisher was late): apply again
        snapshot = await store.get(job_id)
        return snapshot.status

    async def _flush(self) -> None:
        reporter = self._require_reporter()
        await reporter.flush()
        await reporter.sink.flush()

    def _start_watch(self, job_id: str, on_end: OnEnd) -> None:
        if job_id in self._watched or self._nursery is None:
            return
        scope = trio.CancelScope()
        self._watched[job_id] = scope
        self._nursery.start_soon(self._watch, job_id, on_end, scope)

    def _stop_watch(self, job_id: str) -> None:
        scope = self._watched.pop(job_id, None)
        if scope is not None:
            scope.cancel()

    async def _watch(self, job_id: str, on_end: OnEnd, scope: trio.CancelScope) -> None:
        with scope:
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._keep_alive, job_id)
                    async with self._store.subscribe(job_id) as subscription:
                        async for snapshot in subscription:
                            if snapshot.is_terminal:
                                nursery.cancel_scope.cancel()
                                if self._watched.get(job_id) is scope:
                                    del self._watched[job_id]
                                    on_end(snapshot.status)
                                return
            except JobNotFoundError:
                logger.warning("job %s is not in the store; not watching it", job_id)
            except Exception:
                logger.exception("watching job %s failed", job_id)
        if self._watched.get(job_id) is scope:
            del self._watched[job_id]

    async def _keep_alive(self, job_id: str) -> None:
        """Renew the job's lease while it is watched."""
        while True:
            await trio.sleep(self.heartbeat_interval)
            try:
                await self._store.heartbeat(job_id)
                self._heartbeats += 1
            except (JobFinishedError, JobNotFoundError):
                return
            except Exception as exc:
                logger.warning("heartbeat of job %s not written, retrying: %s", job_id, exc)

    async def _main(
        self,
        url: str,
        prefix: str,
        flush_interval: float,
        ready: Callable[[], None],
        store_options: dict[str, Any],
    ) -> None:
        with needs_extra("redis", "the Redis producer"):
            from ._redis_store import open_redis_store

        self._stop = trio.Event()
        async with (
            open_redis_store(url, prefix=prefix, **store_options) as store,
            open_update_buffer(store, flush_interval=flush_interval) as buffer,
            open_thread_reporter(buffer, flush_interval=flush_interval) as reporter,
            trio.open_nursery() as nursery,
        ):
            self._store = store
            self._reporter = reporter
            self._nursery = nursery
            self._token = trio.lowlevel.current_trio_token()
            ready()
            await self._stop.wait()
            nursery.cancel_scope.cancel()
        self._watched.clear()

    # -- crossing from threads -------------------------------------------------------------

    def _require_reporter(self) -> ThreadReporter:
        if self._reporter is None:
            raise RuntimeError("the Redis producer is not open; use it inside its with block")
        return self._reporter

    def _run(self, afn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        self._check_process()
        return trio.from_thread.run(afn, *args, trio_token=self._token)

    def _run_sync(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._check_process()
        return trio.from_thread.run_sync(fn, *args, trio_token=self._token)

    def _check_process(self) -> None:
        if self._token is None:
            raise RuntimeError("the Redis producer is not open; use it inside its with block")
        if os.getpid() != self._pid:
            raise RuntimeError(
                "this Redis producer was opened in another process (before a fork); open one "
                "in each process (Celery: worker_process_init)"
            )


@contextmanager
def open_redis_producer(
    url: str,
    *,
    prefix: str = DEFAULT_REDIS_PREFIX,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    heartbeat_interval: float = DEFAULT_WORKER_HEARTBEAT_TIMEOUT / 3,
    connect_timeout: float = 2.0,
    **store_options: Any,
) -> Iterator[RedisProducer]:
    """Open a ``RedisProducer`` whose flush thread this ``with`` block owns.

    ``with open_redis_producer("redis://127.0.0.1:6379/0") as producer:``. Entering starts
    the thread and checks that Redis answers; leaving writes what is pending (the buffer's
    final flush) and stops the thread.

    Args:
        url: the Redis URL of the server's store (``--store``).
        prefix: the server's key prefix (``--store-prefix``).
        flush_interval: seconds between two batch writes (default 0.5).
        heartbeat_interval: seconds between two lease renewals of a watched job.
        connect_timeout: seconds to wait for Redis.
        **store_options: more keyword arguments of ``open_redis_store`` (``retention``...).

    Raises:
        ValueError: the URL is not a Redis URL, or a setting is out of range.
        StoreUnavailableError: Redis could not be reached at ``url``.
    """
    if not (0 < flush_interval < math.inf and 0 < heartbeat_interval < math.inf):
        raise ValueError("flush_interval and heartbeat_interval must be positive seconds")
    producer = RedisProducer(heartbeat_interval=heartbeat_interval)
    started = threading.Event()
    failure: list[BaseException] = []
    store_options["connect_timeout"] = connect_timeout

    def run() -> None:
        try:
            trio.run(producer._main, url, prefix, flush_interval, started.set, store_options)
        except BaseException as exc:
            failure.append(exc)
            if not started.is_set():
                started.set()
            else:
                logger.exception("the Redis producer's thread failed")

    thread = threading.Thread(target=run, name="progress-sync redis producer", daemon=True)
    thread.start()
    started.wait()
    if failure:
        thread.join()
        raise failure[0]
    try:
        yield producer
    finally:
        stop = producer._stop
        if stop is not None and thread.is_alive() and producer._token is not None:
            # Not trio.from_thread: this may be another trio run's thread.
            producer._token.run_sync_soon(stop.set)
        thread.join()
        producer._token = None
        producer._reporter = None
        if failure:
            raise failure[0]


class HttpProducer:
    """The ``TaskProducer`` over the server's HTTP API (``progress_sync.client``).

    A watched job is checked every ``watch_interval`` seconds by a heartbeat request (which
    also renews its lease); the answer 409 says it has ended (a cancel through the API), and
    ``on_end`` is called. The checks run in a thread the producer owns (``close`` stops it).
    """

    def __init__(self, client: Any, *, watch_interval: float = DEFAULT_HTTP_WATCH_INTERVAL) -> None:
        self.client = client
        self.watch_interval = watch_interval
        self._watched: dict[str, OnEnd] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def close(self) -> None:
        """Stop watching (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _watch_loop(self) -> None:
        while not self._stop.wait(self.watch_interval):
            with self._lock:
                watched = list(self._watched.items())
            for job_id, on_end in watched:
                try:
                    self.client.heartbeat(job_id)
                except JobFinishedError as exc:
                    with self._lock:
                        still = self._watched.pop(job_id, None)
                    if still is not None:
                        on_end(JobStatus(exc.status))
                except JobNotFoundError:
                    with self._lock:
                        self._watched.pop(job_id, None)
                except Exception as exc:
                    logger.warning("checking job %s over HTTP failed, retrying: %s", job_id, exc)

    def register(
        self,
        job_id: str,
        *,
        status: JobStatus | str = JobStatus.QUEUED,
        stage: str = "",
        heartbeat_timeout: float | None = None,
    ) -> bool:
        """See ``TaskProducer.register``."""
        try:
            self.client.register(
                job_id,
                status=JobStatus(status).value,
                stage=stage,
                heartbeat_timeout=heartbeat_timeout,
            )
        except JobExistsError:
            return False
        return True

    def start(
        self, job_id: str, *, stage: str = "", heartbeat_timeout: float | None = None
    ) -> JobStatus:
        """See ``TaskProducer.start``; the client heartbeats the job while it is open."""
        if self.register(
            job_id, status=JobStatus.RUNNING, stage=stage, heartbeat_timeout=heartbeat_timeout
        ):
            return JobStatus.RUNNING
        self.client.report(job_id, 0.0, stage)
        self.client.flush()
        try:
            self.client.heartbeat(job_id, heartbeat_timeout=heartbeat_timeout)
        except JobFinishedError as exc:
            return JobStatus(exc.status)
        return JobStatus.RUNNING

    def report(
        self, job_id: str, percent: float, stage: str = "", message: str | None = None
    ) -> None:
        """See ``TaskProducer.report``."""
        self.client.report(job_id, percent, stage, message)

    def finish(
        self,
        job_id: str,
        status: JobStatus | str,
        *,
        error: str | None = None,
        result: Any = None,
    ) -> JobStatus:
        """See ``TaskProducer.finish``."""
        status = JobStatus(status)
        self.unwatch(job_id)
        try:
            if status is JobStatus.COMPLETED:
                answer = self.client.complete(job_id, result)
            elif status is JobStatus.FAILED:
                answer = self.client.fail(job_id, error or "failed")
            else:
                answer = self.client.cancel(job_id)
        except JobFinishedError as exc:
            return JobStatus(exc.status)
        return JobStatus(answer["status"])

    def watch(self, job_id: str, on_end: OnEnd) -> None:
        """Check the job every ``watch_interval`` seconds; ``on_end`` gets its terminal status."""
        with self._lock:
            self._watched[job_id] = on_end
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch_loop, name="progress-sync http watch", daemon=True
                )
                self._thread.start()

    def unwatch(self, job_id: str) -> None:
        """Stop checking the job (idempotent)."""
        with self._lock:
            self._watched.pop(job_id, None)


@contextmanager
def open_http_producer(
    server_url: str, *, token: str | None = None, flush_interval: float = DEFAULT_FLUSH_INTERVAL
) -> Iterator[HttpProducer]:
    """Open an ``HttpProducer`` (a ``ProgressClient`` and its flush thread) for the block.

    Raises:
        ValueError: ``flush_interval`` is out of range.
    """
    with needs_extra("client", "the HTTP producer"):
        from .client import ProgressClient

    with ProgressClient(server_url, token=token, flush_interval=flush_interval) as client:
        producer = HttpProducer(client)
        try:
            yield producer
        finally:
            producer.close()


@contextmanager
def open_task_producer(
    *,
    store_url: str | None = None,
    prefix: str | None = None,
    server_url: str | None = None,
    token: str | None = None,
    flush_interval: float = DEFAULT_FLUSH_INTERVAL,
) -> Iterator[TaskProducer]:
    """Open the transport a worker can use: the Redis store when it has its URL, else HTTP.

    Settings not given come from the environment: ``PROGRESS_SYNC_STORE`` (a ``redis://``
    URL), ``PROGRESS_SYNC_STORE_PREFIX``, ``PROGRESS_SYNC_SERVER``,
    ``PROGRESS_SYNC_PRODUCER_TOKEN``, the variables the server's and ``progress-sync run``'s
    options read.

    Raises:
        ValueError: neither a Redis store URL nor a server URL is known.
        StoreUnavailableError: Redis could not be reached.
    """
    store_url = store_url or os.environ.get(STORE_URL_ENV) or None
    if store_url is not None and store_url != "memory":
        prefix = prefix or os.environ.get(STORE_PREFIX_ENV) or DEFAULT_REDIS_PREFIX
        with open_redis_producer(store_url, prefix=prefix, flush_interval=flush_interval) as redis:
            yield redis
        return
    server_url = server_url or os.environ.get(SERVER_URL_ENV) or None
    if server_url is None:
        raise ValueError(
            "progress-sync needs the server's Redis store URL (store_url=, or "
            f"{STORE_URL_ENV}=redis://...) or its HTTP address (server_url=, or "
            f"{SERVER_URL_ENV}=http://...)"
        )
    token = token or os.environ.get(PRODUCER_TOKEN_ENV) or None
    with open_http_producer(server_url, token=token, flush_interval=flush_interval) as http:
        yield http
