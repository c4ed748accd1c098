"""RQ jobs with live progress, with no glue code (the ``rq`` extra).

Enqueue on a ``ProgressQueue`` and run ``rq worker -w progress_sync.rq.ProgressWorker`` (the
worker's environment holds ``PROGRESS_SYNC_STORE``, or ``PROGRESS_SYNC_SERVER``); inside a
job function::

    from progress_sync.rq import report, tqdm

    def render(frames):
        for frame in tqdm(range(frames), desc="render"):
            draw(frame)
        return {"file": "out.mp4"}

    job = ProgressQueue("default", connection=Redis()).enqueue(render, 500)
    # a browser follows /api/jobs/<job.id>/progress/stream

The contract is Celery's (``progress_sync.celery``):

- The RQ job's id is the progress-sync job's id.
- ``queued`` when enqueued (``ProgressQueue.enqueue_job``), ``running`` when a worker starts
  it (``ProgressWorker.perform_job``), with a lease renewed while it runs, so a worker killed
  with SIGKILL (with its work horse) leaves the job ``failed`` once the lease runs out.
- It ends from RQ's own status, whether or not the function reported: finished →
  ``completed`` with a JSON-safe summary of the return value; failed → ``failed`` with the
  exception's last line; stopped (``send_stop_job_command``) or cancelled (``job.cancel()``
  on a ``ProgressJob``) → ``cancelled``. A job RQ retries stays ``running``.
- A cancel through the API (``POST /api/jobs/{id}/cancel``) is seen by the worker on the
  store's channel: it sends RQ's ``send_stop_job_command``, so the work horse is killed (and
  the job's next ``report`` raises ``JobFinishedError``, which stops a ``SimpleWorker``'s job).
  A job cancelled while queued is cancelled in RQ (``job.cancel()``) when a worker dequeues
  it, and does not run.

Settings come from the environment (``progress_sync.worker.open_task_producer``) or from
``configure(...)``, called in the module that defines the job functions (the worker imports
it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from ._extras import needs_extra

with needs_extra("rq", "progress_sync.rq"):
    from rq import Queue, Worker, get_current_job
    from rq.command import send_stop_job_command
    from rq.exceptions import InvalidJobOperation
    from rq.job import Job
    from rq.job import JobStatus as RqStatus

from ._status import JobStatus
from ._task_queue import ProcessProducer, TaskProgress, json_safe_result
from ._tqdm import ReportingTqdm
from .worker import DEFAULT_WORKER_HEARTBEAT_TIMEOUT, TaskProducer

logger = logging.getLogger(__name__)

__all__ = [
    "ProgressJob",
    "ProgressQueue",
    "ProgressWorker",
    "configure",
    "current_progress",
    "report",
    "tqdm",
]

_settings: dict[str, Any] = {"heartbeat_timeout": DEFAULT_WORKER_HEARTBEAT_TIMEOUT}
_producers = ProcessProducer({})
_running: dict[str, TaskProgress] = {}
_running_lock = threading.Lock()


def configure(
    *,
    store_url: str | None = None,
    prefix: str | None = None,
    server_url: str | None = None,
    token: str | None = None,
    flush_interval: float | None = None,
    heartbeat_timeout: float = DEFAULT_WORKER_HEARTBEAT_TIMEOUT,
) -> None:
    """Set where progress goes, for this process (settings not given come from the
    environment, see ``open_task_producer``). Call it before the first job is enqueued or
    run; a producer already open in this process is closed.

    Args:
        store_url: the server's Redis store URL (``PROGRESS_SYNC_STORE``).
        prefix: its key prefix (``PROGRESS_SYNC_STORE_PREFIX``).
        server_url: the server's URL, when there is no store URL (``PROGRESS_SYNC_SERVER``).
        token: the producer token for HTTP (``PROGRESS_SYNC_PRODUCER_TOKEN``).
        flush_interval: seconds between two writes of the reports (default 0.5).
        heartbeat_timeout: the lease of a running job, in seconds (default 30).
    """
    global _producers
    _producers.close()
    options: dict[str, Any] = {
        "store_url": store_url,
        "prefix": prefix,
        "server_url": server_url,
        "token": token,
    }
    if flush_interval is not None:
        options["flush_interval"] = flush_interval
    _producers = ProcessProducer(options)
    _settings["heartbeat_timeout"] = heartbeat_timeout


def _producer() -> TaskProducer:
    return _producers.get()


def _finish(job_id: str, status: JobStatus, **fields: Any) -> None:
    try:
        _producer().finish(job_id, status, **fields)
    except Exception:
        logger.exception("writing the %s state of job %s failed", status.value, job_id)


class ProgressJob(Job):
    """An RQ ``Job`` whose ``cancel()`` also ends its progress-sync job ``cancelled``."""

    def cancel(self, *args: Any, **kwargs: Any) -> Any:
        """RQ's ``Job.cancel``, then the job's progress ends ``cancelled``."""
        answer = super().cancel(*args, **kwargs)
        _finish(self.id, JobStatus.CANCELLED, error="cancelled in RQ")
        return answer


class ProgressQueue(Queue):
    """An RQ ``Queue`` that registers each job ``queued`` as it is enqueued."""

    job_class = ProgressJob

    def enqueue_job(self, job: Job, *args: Any, **kwargs: Any) -> Job:
        """Register the job ``queued`` (no lease while it waits), then RQ's ``enqueue_job``."""
        try:
            _producer().register(job.id, status=JobStatus.QUEUED, stage=job.func_name or "")
        except Exception:
            logger.exception("registering job %s with progress-sync failed", job.id)
        return super().enqueue_job(job, *args, **kwargs)


class ProgressWorker(Worker):
    """An RQ ``Worker`` (forking a work horse per job) that keeps each job's progress.

    ``rq worker -w progress_sync.rq.ProgressWorker``.
    """

    def perform_job(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> bool:
        """Mark the job ``running`` (with its lease) and watch it, then RQ's ``perform_job``.

        A job cancelled while queued is cancelled in RQ instead, and does not run.
        """
        producer = _producer()
        progress = TaskProgress(job.id, producer)
        status = producer.start(
            job.id, stage=job.func_name or "", heartbeat_timeout=_settings["heartbeat_timeout"]
        )
        if status.is_terminal:
            logger.info("job %s ended (%s) before it ran; cancelling it in RQ", job.id, status)
            Job.cancel(job)
            return False
        with _running_lock:
            _running[job.id] = progress
        connection = self.connection
        producer.watch(job.id, lambda status: _stop(connection, progress, status))
        try:
            performed: bool = super().perform_job(job, queue, *args, **kwargs)
            return performed
        finally:
            producer.unwatch(job.id)
            with _running_lock:
                _running.pop(job.id, None)

    def handle_job_success(self, job: Job, *args: Any, **kwargs: Any) -> Any:
        """RQ's ``handle_job_success``, then the job ends ``completed`` with its result."""
        answer = super().handle_job_success(job, *args, **kwargs)
        _finish(job.id, JobStatus.COMPLETED, result=json_safe_result(job._result))
        return answer

    def handle_job_failure(self, job: Job, *args: Any, **kwargs: Any) -> Any:
        """RQ's ``handle_job_failure``, then the job ends as RQ's status says."""
        answer = super().handle_job_failure(job, *args, **kwargs)
        status = job.get_status(refresh=True)
        if status == RqStatus.STOPPED:
            _finish(job.id, JobStatus.CANCELLED, error="stopped in RQ")
        elif status == RqStatus.FAILED:
            exc_string = kwargs.get("exc_string") or ""
            lines = [line for line in exc_string.strip().splitlines() if line.strip()]
            _finish(job.id, JobStatus.FAILED, error=(lines[-1] if lines else "failed")[:2000])
        return answer


def _stop(connection: Any, progress: TaskProgress, status: JobStatus) -> None:
    """The job ended outside the worker (a cancel through the API): stop it. Runs in the
    producer's thread, so the blocking call goes to a thread of its own."""
    progress.mark_cancelled()
    if status is not JobStatus.CANCELLED:
        return

    def send() -> None:
        try:
            send_stop_job_command(connection, progress.job_id)
        except InvalidJobOperation:
            pass  # it ended meanwhile
        except Exception:
            logger.exception("stopping RQ job %s failed", progress.job_id)

    threading.Thread(target=send, name=f"progress-sync stop {progress.job_id}").start()


def current_progress() -> TaskProgress:
    """The progress handle of the RQ job running in this process.

    Raises:
        RuntimeError: not inside a job run by a ``ProgressWorker``.
    """
    job = get_current_job()
    with _running_lock:
        progress = None if job is None else _running.get(job.id)
    if progress is None:
        raise RuntimeError(
            "progress_sync.rq.report is called inside an RQ job run by "
            "progress_sync.rq.ProgressWorker (rq worker -w progress_sync.rq.ProgressWorker)"
        )
    return progress


def report(percent: float, stage: str = "", message: str | None = None) -> None:
    """Report the current job's progress (see ``TaskProgress.report``); returns at once.

    Raises:
        RuntimeError: not inside a job run by a ``ProgressWorker``.
        InvalidUpdateError: a field is malformed.
        JobFinishedError: the job was cancelled (the first call after the cancel).
    """
    current_progress().report(percent, stage, message)


def tqdm(iterable: Iterable[Any] | None = None, **kwargs: Any) -> ReportingTqdm:
    """A ``ReportingTqdm`` reporting the current job's progress (``desc`` is the stage)."""
    return current_progress().tqdm(iterable, **kwargs)
