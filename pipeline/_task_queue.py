"""What the Celery and RQ integrations share: one producer per process, the task's handle,
and the JSON-safe summary of a task's result. Imports neither Celery nor RQ."""

from __future__ import annotations

import atexit
import json
import logging
import os
import reprlib
import threading
from collections.abc import Callable, Iterable
from contextlib import ExitStack
from typing import Any

from ._errors import JobFinishedError
from ._status import JobStatus
from ._tqdm import ReportingTqdm
from .worker import TaskProducer, open_task_producer

logger = logging.getLogger(__name__)

MAX_RESULT_CHARS = 16384
"""A task's result longer than this as JSON is stored as a summary (its type and a repr)."""


def json_safe_result(value: Any) -> Any:
    """A task's return value as the job's ``result``: itself when it is JSON (finite numbers,
    at most ``MAX_RESULT_CHARS`` characters), else ``{"type": ..., "repr": ...}``."""
    try:
        text = json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):
        pass
    else:
        if len(text) <= MAX_RESULT_CHARS:
            return value
    return {"type": type(value).__qualname__, "repr": reprlib.repr(value)}


def error_text(exc: BaseException) -> str:
    """A failed job's ``error``: ``"ValueError: the reason"`` (the type alone when empty)."""
    text = str(exc)
    name = type(exc).__name__
    return f"{name}: {text}"[:2000] if text else name


class ProcessProducer:
    """One ``TaskProducer`` per process, opened on first use and closed at exit.

    Worker pools fork (Celery's prefork, RQ's work horse): a producer's thread does not
    survive a fork, so a process that finds one opened by its parent opens its own.

    Args:
        settings: keyword arguments of ``open_task_producer``.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._producer: TaskProducer | None = None
        self._stack: ExitStack | None = None
        self._inherited: list[ExitStack] = []

    def get(self) -> TaskProducer:
        """The producer of this process (opened now if needed).

        Raises:
            ValueError: neither a store URL nor a server URL is configured.
            StoreUnavailableError: Redis could not be reached.
        """
        with self._lock:
            if self._producer is None or self._pid != os.getpid():
                if self._stack is not None:
                    # The parent's, copied by fork: its thread is not here. Keep it
                    # referenced (never closed here) so nothing of the parent's is torn down.
                    self._inherited.append(self._stack)
                stack = ExitStack()
                self._producer = stack.enter_context(open_task_producer(**self.settings))
                self._stack = stack
                self._pid = os.getpid()
                atexit.register(self.close)
            return self._producer

    def close(self) -> None:
        """Write what is pending and close this process's producer (idempotent)."""
        with self._lock:
            stack, self._stack, self._producer = self._stack, None, None
            mine = self._pid == os.getpid()
        if stack is not None and mine:
            try:
                stack.close()
            except Exception:
                logger.exception("closing the progress-sync producer failed")


class TaskProgress:
    """The progress of the task running now: ``report`` and ``tqdm`` bound to its job.

    Attributes:
        job_id: the job's id (the task's id).
    """

    def __init__(
        self,
        job_id: str,
        producer: TaskProducer,
        cancelled_error: Callable[[str], BaseException] | None = None,
    ) -> None:
        self.job_id = job_id
        self._producer = producer
        self._cancelled = threading.Event()
        self._raised = False
        self._cancelled_error = cancelled_error or (
            lambda job_id: JobFinishedError(job_id, JobStatus.CANCELLED.value)
        )

    @property
    def cancelled(self) -> bool:
        """Whether the job was cancelled (through the API) while the task runs."""
        return self._cancelled.is_set()

    def report(self, percent: float, stage: str = "", message: str | None = None) -> None:
        """Report the task's progress; returns at once (written with the next flush).

        Args:
            percent: 0-100.
            stage: what the task is doing (at most 200 characters).
            message: optional free text (at most 2000 characters).

        Raises:
            InvalidUpdateError: a field is malformed (the message names it).
            JobFinishedError: the first call after the job was cancelled (through the API),
                so a task stops at its next report (the integration's own subclass:
                Celery's ``TaskCancelled`` is also a ``celery.exceptions.Ignore``).
        """
        if self._cancelled.is_set() and not self._raised:
            self._raised = True
            raise self._cancelled_error(self.job_id)
        self._producer.report(self.job_id, percent, stage, message)

    def tqdm(self, iterable: Iterable[Any] | None = None, **kwargs: Any) -> ReportingTqdm:
        """A ``ReportingTqdm`` reporting to this job (``desc`` is the stage)."""
        return ReportingTqdm(iterable, report=self.report, **kwargs)

    def mark_cancelled(self) -> None:
        """Note that the job was cancelled: the next ``report`` raises."""
        self._cancelled.set()
