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
from werkzeug.exceptions import HTTPException, MethodNotAllowed

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


def _validation_detail(exc: RequestSchemaValidationError) -> tuple[str, str]:
    cause = exc.validation_error
    if isinstance(cause, pydantic.ValidationError):
        first = cause.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        return field, f"{field}: {first['msg']}"
    return "body", f"body: the request body must be a JSON object ({cause})"


def install_error_handlers(app: Quart) -> None:
    """Register the handlers that turn every error into a JSON response."""

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        response = error_response(exc.status, exc.error, exc.detail, exc.field)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(exc: RequestSchemaValidationError) -> Response:
        field, detail = _validation_detail(exc)
        return error_response(400, "invalid request", detail, field)

    @app.errorhandler(InvalidUpdateError)
    async def invalid_update(exc: InvalidUpdateError) -> Response:
        return error_response(400, "invalid request", str(exc), exc.field)

    @app.errorhandler(UnknownStatusError)
    async def unknown_status(exc: UnknownStatusError) -> Response:
        return error_response(400, "invalid request", f"status: {exc}", "status")

    @app.errorhandler(JobNotFoundError)
    async def job_not_found(exc: JobNotFoundError) -> Response:
        return error_response(404, "job not found", f"no job with id {exc.job_id!r}", "jobId")

    @app.errorhandler(JobExistsError)
    async def job_exists(exc: JobExistsError) -> Response:
        return error_response(409, "job exists", str(exc), "jobId")

    @app.errorhandler(JobFinishedError)
    async def job_finished(exc: JobFinishedError) -> Response:
        return error_response(409, "job finished", str(exc), "jobId")

    @app.errorhandler(JobQueueFullError)
    async def queue_full(exc: JobQueueFullError) -> Response:
        response = error_response(503, "queue full", str(exc))
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(StoreUnavailableError)
    async def store_unavailable(exc: StoreUnavailableError) -> Response:
        logger.warning("request failed, the store is unavailable: %s", exc)
        response = error_response(
            503, "store unavailable", "the job store cannot be reached now; try again shortly"
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        name = (exc.name or "error").lower()
        field = "body" if status in (400, 413, 415) else None
        response = error_response(status, name, exc.description or name, field)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error while handling a request", exc_info=exc)
        return error_response(
            500, "internal error", "an unexpected error occurred; see the server log"
        )
