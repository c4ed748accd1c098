"""Celery tasks with live progress, with no glue code (the ``celery`` extra).

``install(app, store_url=...)`` once where the Celery app is made (it runs in the processes
that send tasks and in the workers), then, inside any task::

    from progress_sync.celery import report, tqdm

    @app.task
    def render(frames):
        for frame in tqdm(range(frames), desc="render"):   # reports as it goes
            draw(frame)
        report(100, "mux", "writing the file")             # or report yourself
        return {"file": "out.mp4"}

The contract:

- The task's id is the job's id (``AsyncResult.id``): a browser follows
  ``/api/jobs/<task id>/progress/stream``.
- The job is registered ``queued`` when the task is sent (``before_task_publish``, in the
  sending process, before the message reaches the broker), and marked ``running`` when a
  worker starts it (``task_prerun``). A task sent by a process without the integration is
  registered ``running`` when it starts.
- It ends from Celery's own outcome, whether or not the body reported: success →
  ``completed`` with a JSON-safe summary of the return value (``json_safe_result``);
  exception → ``failed`` with ``"Type: text"``; revoked, terminated or expired →
  ``cancelled``. Terminal states are written synchronously, and the first one wins.
- A cancel through the API (``POST /api/jobs/{id}/cancel``) writes ``cancelled`` to the store,
  which publishes it on its channel (the server needs no Celery hook). The worker process
  running the task watches its job there; when it sees the cancel it revokes the task with
  ``app.control.revoke(id, terminate=True)`` (pools that can terminate a task: prefork), and
  the task's next ``report`` raises ``TaskCancelled`` (a ``celery.exceptions.Ignore``; Celery
  records the task ``REVOKED``), which stops tasks on pools that cannot terminate one (solo,
  threads). A task cancelled while queued is stopped the same way when it starts.
- While a task runs its job has a lease (``heartbeat_timeout``, 30 s by default) that the
  worker renews every third of it; a worker killed with SIGKILL stops renewing, and the
  server's lease reaper ends the job ``failed`` (its error says the producer went silent).

Transport: with a Redis store URL (``store_url=`` or ``PROGRESS_SYNC_STORE``) the worker
writes straight to the server's Redis store (``progress_sync.worker.RedisProducer``);
otherwise over HTTP to ``server_url`` (``PROGRESS_SYNC_SERVER``), where the worker learns of a
cancel by a heartbeat request per running task every second (see ``HttpProducer``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from ._extras import needs_extra

with needs_extra("celery", "progress_sync.celery"):
    from celery import Celery, current_task, signals, states
    from celery.exceptions import Ignore

from ._buffer import DEFAULT_FLUSH_INTERVAL
from ._errors import JobFinishedError
from ._status import JobStatus
from ._task_queue import ProcessProducer, TaskProgress, error_text, json_safe_result
from ._tqdm import ReportingTqdm
from .worker import DEFAULT_WORKER_HEARTBEAT_TIMEOUT, TaskProducer

logger = logging.getLogger(__name__)

__all__ = [
    "CeleryProgress",
    "TaskCancelled",
    "current_progress",
    "install",
    "report",
    "tqdm",
]


class TaskCancelled(JobFinishedError, Ignore):  # type: ignore[misc]  # Celery is untyped
    """Raised by ``report`` in a task whose job was cancelled (through the API) or otherwise
    ended while it ran. A ``celery.exceptions.Ignore``: Celery neither retries nor records a
    failure; the integration records the task ``REVOKED``."""

    def __init__(self, job_id: str, status: str = JobStatus.CANCELLED.value) -> None:
        JobFinishedError.__init__(self, job_id, status)


_running: dict[str, TaskProgress] = {}
"""The tasks running in this process, by job id."""
_running_lock = threading.Lock()


def _default_tracked(name: str) -> bool:
    return not name.startswith("celery.")


class CeleryProgress:
    """The integration installed on one Celery app (make it with ``install``).

    Args:
        app: the Celery app.
        store_url: the server's Redis store URL; else ``PROGRESS_SYNC_STORE``.
        prefix: the store's key prefix; else ``PROGRESS_SYNC_STORE_PREFIX`` or the default.
        server_url: the server's URL, used when there is no store URL; else
            ``PROGRESS_SYNC_SERVER``.
        token: the producer token (HTTP); else ``PROGRESS_SYNC_PRODUCER_TOKEN``.
        flush_interval: seconds between two writes of the reports (default 0.5).
        heartbeat_timeout: the lease of a running task's job, in seconds (default 30).
        tracked: which task names get a job (default: all but Celery's own ``celery.*``).
        revoke_on_cancel: revoke (and terminate) a task whose job was cancelled.
    """

    def __init__(
        self,
        app: Celery,
        *,
        store_url: str | None = None,
        prefix: str | None = None,
        server_url: str | None = None,
        token: str | None = None,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        heartbeat_timeout: float = DEFAULT_WORKER_HEARTBEAT_TIMEOUT,
        tracked: Callable[[str], bool] = _default_tracked,
        revoke_on_cancel: bool = True,
    ) -> None:
        self.app = app
        self.heartbeat_timeout = heartbeat_timeout
        self.tracked = tracked
        self.revoke_on_cancel = revoke_on_cancel
        self.producers = ProcessProducer(
            {
                "store_url": store_url,
                "prefix": prefix,
                "server_url": server_url,
                "token": token,
                "flush_interval": flush_interval,
            }
        )
        self._uid = f"progress-sync-{id(self)}"

    def producer(self) -> TaskProducer:
        """This process's producer (opened on first use)."""
        return self.producers.get()

    def connect(self) -> None:
        """Connect the integration's handlers to Celery's signals."""
        for signal, handler in self._handlers():
            signal.connect(handler, weak=False, dispatch_uid=self._uid)

    def disconnect(self) -> None:
        """Disconnect the handlers and close this process's producer."""
        for signal, handler in self._handlers():
            signal.disconnect(handler, dispatch_uid=self._uid)
        self.producers.close()

    def _handlers(self) -> list[tuple[Any, Callable[..., None]]]:
        return [
            (signals.before_task_publish, self._on_publish),
            (signals.task_prerun, self._on_prerun),
            (signals.task_postrun, self._on_postrun),
            (signals.task_success, self._on_success),
            (signals.task_failure, self._on_failure),
            (signals.task_revoked, self._on_revoked),
            (signals.worker_process_shutdown, self._on_shutdown),
            (signals.worker_shutdown, self._on_shutdown),
        ]

    def _mine(self, task: Any) -> bool:
        return task is not None and task.app is self.app and self.tracked(task.name)

    # -- the sending process -----------------------------------------------------------------

    def _on_publish(
        self, sender: Any = None, headers: dict[str, Any] | None = None, **_: Any
    ) -> None:
        headers = headers or {}
        job_id, name = headers.get("id"), headers.get("task") or sender
        if not job_id or not isinstance(name, str) or not self.tracked(name):
            return
        if name not in self.app.tasks and self.app.tasks:
            return  # another app's task
        # No lease while queued: the task may wait in the queue for long. It takes one
        # when a worker starts it. A retry republishes the same id: already registered.
        self.producer().register(job_id, status=JobStatus.QUEUED, stage=name)

    # -- the worker process ------------------------------------------------------------------

    def _on_prerun(self, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id is None or not self._mine(task):
            return
        producer = self.producer()
        progress = TaskProgress(task_id, producer, TaskCancelled)
        with _running_lock:
            _running[task_id] = progress
        status = producer.start(task_id, stage=task.name, heartbeat_timeout=self.heartbeat_timeout)
        if status.is_terminal:
            self._ended_elsewhere(progress, status)
            return
        producer.watch(task_id, lambda status: self._on_job_ended(progress, status))

    def _on_job_ended(self, progress: TaskProgress, status: JobStatus) -> None:
        """Runs in the producer's thread: must not block."""
        threading.Thread(
            target=self._ended_elsewhere,
            args=(progress, status),
            name=f"progress-sync cancel {progress.job_id}",
            daemon=True,
        ).start()

    def _ended_elsewhere(self, progress: TaskProgress, status: JobStatus) -> None:
        logger.info("job %s was ended %s outside the task; stopping it", progress.job_id, status)
        progress.mark_cancelled()
        if self.revoke_on_cancel and status is JobStatus.CANCELLED:
            try:
                self.app.control.revoke(progress.job_id, terminate=True, signal="SIGTERM")
            except Exception:
                logger.exception("revoking task %s failed", progress.job_id)

    def _on_postrun(
        self,
        task_id: str | None = None,
        task: Any = None,
        state: str | None = None,
        **_: Any,
    ) -> None:
        if task_id is None or not self._mine(task):
            return
        with _running_lock:
            progress = _running.pop(task_id, None)
        self.producer().unwatch(task_id)
        if progress is not None and progress.cancelled and state == states.IGNORED:
            with contextlib.suppress(NotImplementedError):  # an app without a result backend
                task.backend.mark_as_revoked(task_id, "cancelled", request=task.request)

    def _on_success(self, sender: Any = None, result: Any = None, **_: Any) -> None:
        if not self._mine(sender):
            return
        job_id = sender.request.id
        self.producer().finish(job_id, JobStatus.COMPLETED, result=json_safe_result(result))

    def _on_failure(
        self,
        sender: Any = None,
        task_id: str | None = None,
        exception: BaseException | None = None,
        **_: Any,
    ) -> None:
        if task_id is None or not self._mine(sender):
            return
        error = error_text(exception) if exception is not None else "failed"
        self.producer().finish(task_id, JobStatus.FAILED, error=error)

    def _on_revoked(
        self,
        sender: Any = None,
        request: Any = None,
        terminated: bool = False,
        signum: Any = None,
        expired: bool = False,
        **_: Any,
    ) -> None:
        task = sender if sender is not None else getattr(request, "task", None)
        job_id = getattr(request, "id", None)
        if job_id is None or not self._mine(task):
            return
        if expired:
            reason = "expired before a worker ran it"
        elif terminated:
            reason = f"terminated by signal {signum}" if signum else "terminated"
        else:
            reason = "revoked"
        self.producer().finish(job_id, JobStatus.CANCELLED, error=reason)

    def _on_shutdown(self, **_: Any) -> None:
        self.producers.close()


def install(app: Celery, **settings: Any) -> CeleryProgress:
    """Give every task of ``app`` a progress-sync job (see the module docstring).

    Call it where the app is made, so it runs in the processes that send tasks and in the
    workers. Returns the integration; ``disconnect()`` undoes it.

    Args:
        app: the Celery app.
        **settings: the settings of ``CeleryProgress`` (``store_url``, ``server_url``,
            ``heartbeat_timeout``...).

    Raises:
        ValueError: a setting is out of range.
    """
    integration = CeleryProgress(app, **settings)
    integration.connect()
    return integration


def current_progress() -> TaskProgress:
    """The progress handle of the task running in this thread.

    Raises:
        RuntimeError: not inside a task of an app with the integration installed.
    """
    task = current_task
    job_id = None if task is None else task.request.id
    with _running_lock:
        progress = _running.get(job_id) if job_id is not None else None
    if progress is None:
        raise RuntimeError(
            "progress_sync.celery.report is called inside a Celery task of an app on which "
            "progress_sync.celery.install(app, ...) was called"
        )
    return progress


def report(percent: float, stage: str = "", message: str | None = None) -> None:
    """Report the current task's progress (see ``TaskProgress.report``); returns at once.

    Raises:
        RuntimeError: not inside a tracked task.
        InvalidUpdateError: a field is malformed.
        TaskCancelled: the task's job was cancelled (the first call after the cancel).
    """
    current_progress().report(percent, stage, message)


def tqdm(iterable: Iterable[Any] | None = None, **kwargs: Any) -> ReportingTqdm:
    """A ``ReportingTqdm`` reporting the current task's progress (``desc`` is the stage).

    Raises:
        RuntimeError: not inside a tracked task.
    """
    return current_progress().tqdm(iterable, **kwargs)
