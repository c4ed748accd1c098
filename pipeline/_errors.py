"""Exceptions raised by the pipeline.

The tree::

    ProgressSyncError                 base class of every error raised here
    ├── InvalidUpdateError (ValueError)   a report or terminal state is malformed
    ├── UnknownStatusError (ValueError)   a status name maps to no job state
    ├── JobNotFoundError (LookupError)    no job with that id is registered
    ├── JobExistsError                    a job with that id is registered already
    ├── JobFinishedError                  the job is in a terminal state already
    ├── RegistrationTimeoutError          a job was not registered in time
    ├── BufferClosedError                 a report reached a buffer that was closed
    ├── StoreUnavailableError             the store could not be reached; try again
    └── WaitTimeoutError (TimeoutError)   a test-kit wait ended before its condition held
"""

from __future__ import annotations


class ProgressSyncError(Exception):
    """Base class of every error raised by ``pipeline``."""


class InvalidUpdateError(ProgressSyncError, ValueError):
    """A progress report or terminal state is malformed.

    Attributes:
        field: the camelCase name of the offending field (``percent``, ``stage``, ...).
        reason: what is wrong with it, in words a caller can act on.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class UnknownStatusError(ProgressSyncError, ValueError):
    """A status name does not map to any job state (see ``parse_status``)."""


class JobNotFoundError(ProgressSyncError, LookupError):
    """No job with this id is registered in the store."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is not registered; register it first")
        self.job_id = job_id


class JobExistsError(ProgressSyncError):
    """A job with this id is registered already; choose another id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is registered already; choose another id")
        self.job_id = job_id


class JobFinishedError(ProgressSyncError):
    """The job has reached a terminal state already, so it cannot be cancelled or run."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id!r} has ended already with status {status!r}")
        self.job_id = job_id
        self.status = status


class RegistrationTimeoutError(ProgressSyncError, TimeoutError):
    """A job was not registered within the time the caller was prepared to wait."""

    def __init__(self, job_id: str, timeout: float) -> None:
        super().__init__(f"job {job_id!r} was not registered within {timeout:g} s")
        self.job_id = job_id
        self.timeout = timeout


class BufferClosedError(ProgressSyncError, RuntimeError):
    """A report or terminal state reached an update buffer after it was closed.

    Report only inside the ``async with open_update_buffer(...)`` block.
    """


class StoreUnavailableError(ProgressSyncError, ConnectionError):
    """The export store could not be reached; the write can be tried again later.

    The update buffer keeps the latest state of each job and retries its writes after this.
    """


class WaitTimeoutError(ProgressSyncError, TimeoutError):
    """A wait of the test kit (``pipeline.testing``, ``server.testing``) timed out.

    The job did not reach its terminal state, the condition did not hold, or the stream did
    not end, within the time the test allowed.

    Attributes:
        timeout: how long the helper waited, in seconds (of trio's clock).
        received: what arrived before the timeout (snapshots or stream events), oldest
            first, so the failure shows how far the job got.
    """

    def __init__(self, message: str, *, timeout: float, received: tuple[object, ...]) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.received = received
