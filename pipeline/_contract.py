"""The wire contract between the server and its clients: paths and errors, written once.

The server (``progress_sync.server``) and the progress clients (``progress_sync.client``) both
read this module, so it imports nothing of the server stack (no Quart, no Hypercorn).

Paths
    The routes as templates with ``{jobId}`` (as the OpenAPI document writes them); ``path()``
    fills one in for a client, ``quart_rule()`` turns one into a Quart rule for the server.

Errors
    Every 4xx and 5xx body is ``{"error", "code", "detail", "field"}`` (JSON, camelCase):

    - ``code``: machine-readable, snake_case, one of ``ERRORS`` below. Clients match on it,
      never on the words of ``error`` or ``detail``.
    - ``error``: a short name in words (``"job not found"``).
    - ``detail``: what is wrong and what to do, without secrets.
    - ``field``: the field, header or query parameter at fault, or null.
    - ``jobStatus``: only with ``job_finished``: the status the job ended with.

    ``ERRORS`` is the one table of error code <-> HTTP status <-> short name;
    ``PIPELINE_ERRORS`` says which pipeline exception the server answers with which code, and
    which one a client raises for that code (``error_for_answer``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ._errors import (
    AuthenticationError,
    InvalidFieldError,
    InvalidUpdateError,
    JobExistsError,
    JobFinishedError,
    JobNotFoundError,
    JobQueueFullError,
    ProgressSyncError,
    ServerRejectedError,
    ServerUnavailableError,
    SinkClosedError,
    StoreUnavailableError,
    UnknownStatusError,
)

# -- Paths ------------------------------------------------------------------------------------

JOBS_PATH = "/api/jobs"
"""``GET`` lists jobs; ``POST`` starts a job the server runs or registers an external one."""
JOB_PATH = "/api/jobs/{jobId}"
"""``GET``: the job's snapshot."""
JOB_CANCEL_PATH = "/api/jobs/{jobId}/cancel"
JOB_COMPLETE_PATH = "/api/jobs/{jobId}/complete"
JOB_FAIL_PATH = "/api/jobs/{jobId}/fail"
JOB_HEARTBEAT_PATH = "/api/jobs/{jobId}/heartbeat"
"""``POST``: renew an external job's lease."""
JOB_PROGRESS_PATH = "/api/jobs/{jobId}/progress"
"""``POST``: one progress update of an external job."""
JOB_SUBSCRIBE_TOKEN_PATH = "/api/jobs/{jobId}/subscribe-token"
JOB_STREAM_PATH = "/api/jobs/{jobId}/progress/stream"
"""``GET``: the job's SSE stream."""
PROGRESS_PATH = "/api/progress"
"""``POST``: a batch of progress updates (JSON array or NDJSON)."""
MULTI_STREAM_PATH = "/api/progress/stream"
"""``GET ?jobIds=a,b``: one SSE stream for several jobs."""
HEALTH_PATH = "/healthz"
METRICS_PATH = "/metrics"
WEB_PAGE_PATH = "/"

API_PREFIX = "/api/"
"""Every route under this prefix answers JSON and is subject to the producer token or the
subscribe tokens (``Auth``)."""

STREAM_PATHS = (JOB_STREAM_PATH, MULTI_STREAM_PATH)
"""The SSE routes."""

_PARAMETER = re.compile(r"\{(\w+)\}")


def path(template: str, **parameters: str) -> str:
    """Fill in a path template: ``path(JOB_PATH, jobId="a b")`` is ``/api/jobs/a%20b``.

    Raises:
        KeyError: a parameter of the template is not given.
    """
    return _PARAMETER.sub(lambda m: quote(parameters[m[1]], safe=":"), template)


def quart_rule(template: str) -> str:
    """The Quart (Werkzeug) rule of a template: ``{jobId}`` becomes ``<job_id>``."""
    return _PARAMETER.sub(lambda m: "<" + _snake(m[1]) + ">", template)


def path_pattern(template: str) -> re.Pattern[str]:
    """A regex that matches the paths of a template in full (a parameter is one segment)."""
    parts = _PARAMETER.split(template)
    # split() alternates literal text and parameter names
    return re.compile(
        "".join(re.escape(part) if i % 2 == 0 else "[^/]+" for i, part in enumerate(parts))
    )


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


# -- Errors -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ErrorCode:
    """One kind of error answer.

    Attributes:
        code: the body's machine-readable ``code`` (snake_case).
        status: the HTTP status.
        error: the body's short ``error`` in words.
        retry: True when the client should try the same request again later (the reports
            are kept): the answer says the server or its store is away for now.
    """

    code: str
    status: int
    error: str
    retry: bool = False


INVALID_REQUEST = ErrorCode("invalid_request", 400, "invalid request")
"""A field of the request is malformed; ``field`` names it."""
BATCH_TOO_LARGE = ErrorCode("batch_too_large", 413, "batch too large")
REQUEST_TOO_LARGE = ErrorCode("request_too_large", 413, "request too large")
SUBSCRIBE_TOKENS_OFF = ErrorCode("subscribe_tokens_off", 400, "subscribe tokens off")
UNAUTHORIZED = ErrorCode("unauthorized", 401, "unauthorized")
TOKEN_EXPIRED = ErrorCode("token_expired", 401, "token expired")
INVALID_TOKEN = ErrorCode("invalid_token", 401, "invalid token")
FORBIDDEN = ErrorCode("forbidden", 403, "forbidden")
JOB_NOT_FOUND = ErrorCode("job_not_found", 404, "job not found")
JOB_EXISTS = ErrorCode("job_exists", 409, "job exists")
JOB_FINISHED = ErrorCode("job_finished", 409, "job finished")
JOB_RUN_BY_SERVER = ErrorCode("job_run_by_server", 409, "job run by the server")
QUEUE_FULL = ErrorCode("queue_full", 503, "queue full", retry=True)
STORE_UNAVAILABLE = ErrorCode("store_unavailable", 503, "store unavailable", retry=True)
SHUTTING_DOWN = ErrorCode("shutting_down", 503, "shutting down", retry=True)
TOO_MANY_SUBSCRIBERS = ErrorCode("too_many_subscribers", 503, "too many subscribers", retry=True)
STREAMS_REFUSED = ErrorCode("streams_refused", 503, "streams refused")
INTERNAL_ERROR = ErrorCode("internal_error", 500, "internal error")
# Answers of the HTTP layer itself (no route, wrong method, wrong media type, ...).
NOT_FOUND = ErrorCode("not_found", 404, "not found")
METHOD_NOT_ALLOWED = ErrorCode("method_not_allowed", 405, "method not allowed")
UNSUPPORTED_MEDIA_TYPE = ErrorCode("unsupported_media_type", 415, "unsupported media type")
BAD_REQUEST = ErrorCode("bad_request", 400, "bad request")

ERRORS: tuple[ErrorCode, ...] = (
    INVALID_REQUEST,
    BATCH_TOO_LARGE,
    REQUEST_TOO_LARGE,
    SUBSCRIBE_TOKENS_OFF,
    UNAUTHORIZED,
    TOKEN_EXPIRED,
    INVALID_TOKEN,
    FORBIDDEN,
    JOB_NOT_FOUND,
    JOB_EXISTS,
    JOB_FINISHED,
    JOB_RUN_BY_SERVER,
    QUEUE_FULL,
    STORE_UNAVAILABLE,
    SHUTTING_DOWN,
    TOO_MANY_SUBSCRIBERS,
    STREAMS_REFUSED,
    INTERNAL_ERROR,
    NOT_FOUND,
    METHOD_NOT_ALLOWED,
    UNSUPPORTED_MEDIA_TYPE,
    BAD_REQUEST,
)
"""Every error code the server answers with."""

ERRORS_BY_CODE: Mapping[str, ErrorCode] = {error.code: error for error in ERRORS}

RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""Statuses a client retries even without a code of ours: a proxy in front of the server
answers them when it lost the server for a moment."""


def http_error_code(status: int, name: str) -> ErrorCode:
    """The code of an answer of the HTTP layer (Werkzeug's ``HTTPException``).

    Returns the row of ``ERRORS`` with this status and name, or a row made from them
    (``code`` is the name in snake_case) for a status the table does not list.
    """
    name = name.lower()
    for error in ERRORS:
        if error.status == status and error.error == name:
            return error
    return ErrorCode(re.sub(r"\W+", "_", name).strip("_") or "error", status, name)


@dataclass(frozen=True, slots=True)
class PipelineError:
    """How one pipeline exception crosses the wire.

    Attributes:
        exception: the exception class (its subclasses included).
        error: the answer's code, status and name.
        field: the ``field`` of the answer, or None (``InvalidUpdateError`` names its own).
        retry_after: the ``Retry-After`` header's whole seconds, or None for none.
        detail: the answer's ``detail`` from the exception (``str(exc)`` when None).
        rebuild: how a client raises it again from an answer: ``(job_id, body)`` to the
            exception, or None when the client raises it only for a request about a job.
    """

    exception: type[ProgressSyncError]
    error: ErrorCode
    field: str | None = None
    retry_after: int | None = None
    detail: Callable[[Any], str] | None = None
    rebuild: Callable[[str, Mapping[str, Any]], ProgressSyncError] | None = None

    def answer(self, exc: ProgressSyncError) -> dict[str, Any]:
        """The JSON error body for ``exc``."""
        field = exc.field if isinstance(exc, InvalidFieldError) else self.field
        detail = str(exc) if self.detail is None else self.detail(exc)
        body = error_body(self.error, detail, field)
        if isinstance(exc, JobFinishedError):
            body["jobStatus"] = exc.status
        return body


def _finished(job_id: str, body: Mapping[str, Any]) -> JobFinishedError:
    return JobFinishedError(job_id, str(body.get("jobStatus") or "ended"))


PIPELINE_ERRORS: tuple[PipelineError, ...] = (
    PipelineError(InvalidFieldError, INVALID_REQUEST),
    PipelineError(
        UnknownStatusError, INVALID_REQUEST, field="status", detail=lambda exc: f"status: {exc}"
    ),
    PipelineError(
        JobNotFoundError,
        JOB_NOT_FOUND,
        field="jobId",
        detail=lambda exc: f"no job with id {exc.job_id!r}",
        rebuild=lambda job_id, body: JobNotFoundError(job_id),
    ),
    PipelineError(
        JobExistsError,
        JOB_EXISTS,
        field="jobId",
        rebuild=lambda job_id, body: JobExistsError(job_id),
    ),
    PipelineError(JobFinishedError, JOB_FINISHED, field="jobId", rebuild=_finished),
    PipelineError(JobQueueFullError, QUEUE_FULL, retry_after=5),
    PipelineError(
        StoreUnavailableError,
        STORE_UNAVAILABLE,
        retry_after=1,
        detail=lambda exc: "the job store cannot be reached now; try again shortly",
    ),
    # Reports reaching the server's buffer after it closed: the server is shutting down.
    PipelineError(
        SinkClosedError,
        SHUTTING_DOWN,
        retry_after=1,
        detail=lambda exc: "the server is shutting down; retry against another one",
    ),
)
"""Which pipeline exception the server answers with which code (most specific first)."""


def error_body(error: ErrorCode, detail: str, field: str | None = None) -> dict[str, Any]:
    """The JSON body of an error answer: ``{"error", "code", "detail", "field"}``."""
    return {"error": error.error, "code": error.code, "detail": detail, "field": field}


def error_for_answer(
    status: int, body: Mapping[str, Any], *, reason: str, text: str, job_id: str | None
) -> ProgressSyncError:
    """The exception a client raises for an error answer.

    Args:
        status: the HTTP status (4xx or 5xx).
        body: the JSON body (empty when it was none or not an object).
        reason: the status's reason phrase, the error's name when the body has none.
        text: the start of the body, the detail when the body has none.
        job_id: the job the request was about, or None.

    Returns:
        ``AuthenticationError`` for 401 and 403; ``ServerUnavailableError`` for a code that
        says to retry, or a retry status (429, 502, 503, 504) without a code of ours;
        ``InvalidUpdateError`` for ``invalid_request`` naming a field; the pipeline's own
        error for a code about the job (``job_not_found``, ``job_exists``, ``job_finished``)
        when ``job_id`` is given; ``ServerRejectedError`` otherwise.
    """
    known = ERRORS_BY_CODE.get(str(body.get("code")))
    name = str(body.get("error") or reason or "error")
    detail = str(body.get("detail") or text)
    field = body.get("field")
    field = field if isinstance(field, str) else None
    if status in (401, 403):
        return AuthenticationError(status, name, detail, field)
    if (known is not None and known.retry) or (known is None and status in RETRY_STATUSES):
        # The store is away, the server is draining for a deploy, or a proxy lost it for a
        # moment: the reports are kept and sent again, like after a connection error.
        return ServerUnavailableError(f"the server answered {status} {name}: {detail}")
    if known is INVALID_REQUEST and field is not None:
        return InvalidUpdateError(field, detail.removeprefix(f"{field}: "))
    if known is not None and job_id is not None:
        for row in PIPELINE_ERRORS:
            if row.error is known and row.rebuild is not None:
                return row.rebuild(job_id, body)
    return ServerRejectedError(status, name, detail, field)
