"""Every error becomes a JSON body ``{"error", "detail", "field"}`` with a 4xx or 5xx status.

Errors raised by the HTTP layer itself (the pipeline's are in ``progress_sync._errors``)::

    ApiError                       answer with this status and JSON body
    ├── TooManySubscribersError    503 + Retry-After: the server holds max_subscribers streams
    └── ShuttingDownError          503 + Retry-After: the server is draining before it exits
"""

from __future__ import annotations

import logging

import pydantic
from progress_sync import (
    BufferClosedError,
    InvalidUpdateError,
    JobExistsError,
    JobFinishedError,
    JobNotFoundError,
    JobQueueFullError,
    StoreUnavailableError,
    UnknownStatusError,
)
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """Answer the request with this JSON error (for checks made in the HTTP layer).

    Attributes:
        status: the HTTP status (4xx or 5xx).
        error: a short name of the error (``"unauthorized"``).
        detail: what is wrong and what to do, without secrets.
        field: the field, header or query parameter at fault, or None.
        headers: extra response headers (``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        field: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {error}: {detail}")
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field
        self.headers = headers or {}


class TooManySubscribersError(ApiError):
    """The server holds its maximum number of open streams (``max_subscribers``): 503.

    Attributes:
        limit: the maximum.
        retry_after: whole seconds the client should wait (the ``Retry-After`` header).
    """

    def __init__(self, limit: int, retry_after: int) -> None:
        super().__init__(
            503,
            "too many subscribers",
            f"this server holds its maximum of {limit} open streams; retry in {retry_after} s "
            "(or raise --max-subscribers)",
            headers={"Retry-After": str(retry_after)},
        )
        self.limit = limit
        self.retry_after = retry_after


class ShuttingDownError(ApiError):
    """The server is shutting down: 503; the client should come back (to another instance).

    Attributes:
        retry_after: whole seconds the client should wait (the ``Retry-After`` header).
    """

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            503,
            "shutting down",
            f"the server is shutting down; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


def error_response(status: int, error: str, detail: str, field: str | None = None) -> Response:
    """Build the JSON error response ``{"error": ..., "detail": ..., "field": ...}``."""
    response = jsonify({"error": error, "detail": detail, "field": field})
    response.status_code = status
    return response


def describe_error(exc: BaseException) -> ApiError | None:
    """The answer to an exception the API knows, as an ``ApiError``; None for any other.

    The one table of pipeline error -> HTTP status, error name, field and headers, used by the
    Quart error handlers and by the ingest fast path (``_ingest_asgi``)::

        InvalidUpdateError     400 invalid request   (its field)
        UnknownStatusError     400 invalid request   status
        JobNotFoundError       404 job not found     jobId
        JobExistsError         409 job exists        jobId
        JobFinishedError       409 job finished      jobId
        JobQueueFullError      503 queue full        Retry-After: 5
        StoreUnavailableError  503 store unavailable Retry-After: 1
        BufferClosedError      503 shutting down     Retry-After: 1
    """
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidUpdateError):
        return ApiError(400, "invalid request", str(exc), exc.field)
    if isinstance(exc, UnknownStatusError):
        return ApiError(400, "invalid request", f"status: {exc}", "status")
    if isinstance(exc, JobNotFoundError):
        return ApiError(404, "job not found", f"no job with id {exc.job_id!r}", "jobId")
    if isinstance(exc, JobExistsError):
        return ApiError(409, "job exists", str(exc), "jobId")
    if isinstance(exc, JobFinishedError):
        return ApiError(409, "job finished", str(exc), "jobId")
    if isinstance(exc, JobQueueFullError):
        return ApiError(503, "queue full", str(exc), headers={"Retry-After": "5"})
    if isinstance(exc, StoreUnavailableError):
        logger.warning("request failed, the store is unavailable: %s", exc)
        return ApiError(
            503,
            "store unavailable",
            "the job store cannot be reached now; try again shortly",
            headers={"Retry-After": "1"},
        )
    if isinstance(exc, BufferClosedError):
        return ApiError(
            503,
            "shutting down",
            "the server is shutting down; retry against another one",
            headers={"Retry-After": "1"},
        )
    return None


KNOWN_ERRORS: tuple[type[Exception], ...] = (
    ApiError,
    InvalidUpdateError,
    UnknownStatusError,
    JobNotFoundError,
    JobExistsError,
    JobFinishedError,
    JobQueueFullError,
    StoreUnavailableError,
    BufferClosedError,
)
"""The exceptions ``describe_error`` answers."""


def error_body(error: ApiError) -> dict[str, str | None]:
    """The JSON body of an error answer: ``{"error", "detail", "field"}``."""
    return {"error": error.error, "detail": error.detail, "field": error.field}


def _validation_detail(exc: RequestSchemaValidationError) -> tuple[str, str]:
    cause = exc.validation_error
    if isinstance(cause, pydantic.ValidationError):
        first = cause.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        return field, f"{field}: {first['msg']}"
    return "body", f"body: the request body must be a JSON object ({cause})"


def install_error_handlers(app: Quart) -> None:
    """Register the handlers that turn every error into a JSON response."""

    async def known_error(exc: Exception) -> Response:
        error = describe_error(exc)
        assert error is not None
        response = error_response(error.status, error.error, error.detail, error.field)
        response.headers.update(error.headers)
        return response

    for known in KNOWN_ERRORS:
        app.register_error_handler(known, known_error)

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(exc: RequestSchemaValidationError) -> Response:
        field, detail = _validation_detail(exc)
        return error_response(400, "invalid request", detail, field)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        name = (exc.name or "error").lower()
        field = "body" if status in (400, 413, 415) else None
        response = error_response(status, name, exc.description or name, field)
        if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
            response.headers["Allow"] = ", ".join(exc.valid_methods)  # type: ignore[attr-defined]
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error while handling a request", exc_info=exc)
        return error_response(
            500, "internal error", "an unexpected error occurred; see the server log"
        )
