"""Exceptions raised by the pipeline.

The tree::

    ProgressSyncError                 base class of every error raised here
    ├── InvalidFieldError (ValueError)    a field of a request is malformed
    │   └── InvalidUpdateError            a report or terminal state is malformed
    ├── UnknownStatusError (ValueError)   a status name maps to no job state
    ├── JobNotFoundError (LookupError)    no job with that id is registered
    │   └── JobGoneError                  a followed job left the store (deleted or expired)
    ├── JobExistsError                    a job with that id is registered already
    ├── JobFinishedError                  the job is in a terminal state already
    ├── RegistrationTimeoutError          a job was not registered in time
    ├── JobQueueFullError                 the runner's queue of waiting jobs is full
    ├── SinkClosedError (RuntimeError)    a report reached a sink or client that was closed
    │                                     (``BufferClosedError``: its deprecated old name)
    ├── StoreUnavailableError             the store could not be reached; try again
    ├── WaitTimeoutError (TimeoutError)   a test-kit wait ended before its condition held
    ├── ServerUnavailableError            (client) the server could not be reached; try again
    └── ServerRejectedError               (client) the server answered with an error
        └── AuthenticationError           (client) 401/403: token missing, wrong or expired

The progress client (``progress_sync.client``) raises the same errors as the in-process pipeline
where the server's answer maps onto one (400 ``InvalidUpdateError``, 404 ``JobNotFoundError``,
409 ``JobExistsError`` / ``JobFinishedError``), and ``ServerRejectedError`` otherwise.
"""

from __future__ import annotations


class ProgressSyncError(Exception):
    """Base class of every error raised by ``progress_sync``."""


class InvalidFieldError(ProgressSyncError, ValueError):
    """A field of a request is malformed (the server answers 400 ``invalid_request``).

    Attributes:
        field: the camelCase name of the offending field, query parameter or body
            (``jobIds``, ``params.durationS``, ``body``, ...).
        reason: what is wrong with it, in words a caller can act on.
    """

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidUpdateError(InvalidFieldError):
    """A progress report or terminal state is malformed (``percent``, ``stage``, ``jobId``...).

    Attributes:
        field: the camelCase name of the offending field (``percent``, ``stage``, ...).
        reason: what is wrong with it, in words a caller can act on.
    """


class UnknownStatusError(ProgressSyncError, ValueError):
    """A status name does not map to any job state (see ``parse_status``)."""


class JobNotFoundError(ProgressSyncError, LookupError):
    """No job with this id is registered in the store."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} is not registered; register it first")
        self.job_id = job_id


class JobGoneError(JobNotFoundError):
    """A job that was being followed left the store: deleted, or expired.

    Raised by a ``Subscription`` (and ``MultiSubscription``) in place of the job's next
    snapshot, once; the job's streams end with ``job-error``.

    Attributes:
        job_id: the job.
        reason: why it left, in words (``deleted``, ``expired from the store``).
    """

    def __init__(self, job_id: str, reason: str) -> None:
        ProgressSyncError.__init__(self, f"job {job_id!r} is gone: {reason}")
        self.job_id = job_id
        self.reason = reason


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


class JobQueueFullError(ProgressSyncError):
    """The job runner already has as many jobs waiting as it may queue; try again later."""

    def __init__(self, max_queued: int) -> None:
        super().__init__(
            f"{max_queued} jobs are already waiting to run; try again when some have started"
        )
        self.max_queued = max_queued


class SinkClosedError(ProgressSyncError, RuntimeError):
    """A report or terminal state reached a sink or client after it was closed.

    Raised by the update buffer and the direct sync (report only inside their ``async with``
    block), the thread reporter, and the progress clients (report inside their ``with`` /
    ``async with`` block).
    """


BufferClosedError = SinkClosedError
"""Deprecated: the old name of ``SinkClosedError`` (it was raised by things that are not
buffers too); the same class, kept for one release (see CHANGELOG.md)."""


class StoreUnavailableError(ProgressSyncError, ConnectionError):
    """The export store could not be reached; the write can be tried again later.

    The update buffer keeps the latest state of each job and retries its writes after this.
    """


class WaitTimeoutError(ProgressSyncError, TimeoutError):
    """A wait of the test kit (``progress_sync.testing``) timed out.

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


class ServerUnavailableError(ProgressSyncError, ConnectionError):
    """The progress-sync server could not be reached (connection refused, timed out, ...).

    Raised by the progress client; its background flushes keep the latest report per job and
    try again at the next flush.
    """


class ServerRejectedError(ProgressSyncError):
    """The progress-sync server answered a client's request with an error status.

    Attributes:
        status_code: the HTTP status (4xx or 5xx).
        error: the body's short ``error`` (``"invalid request"``, ``"unauthorized"``, ...).
        detail: the body's ``detail``: what was wrong, in words.
        field: the body's ``field`` at fault, or None.
    """

    def __init__(self, status_code: int, error: str, detail: str, field: str | None) -> None:
        super().__init__(f"the server answered {status_code} {error}: {detail}")
        self.status_code = status_code
        self.error = error
        self.detail = detail
        self.field = field


class AuthenticationError(ServerRejectedError, PermissionError):
    """The server refused the client's credentials (401 or 403).

    A producer token missing or wrong, or a subscribe token missing, expired or for another
    job; ``detail`` says which. Pass the right token (``token=`` of the client, ``--token``).
    """
