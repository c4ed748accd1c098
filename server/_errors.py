"""Every error becomes a JSON body ``{"error", "code", "detail", "field"}``, a 4xx or 5xx status.

The codes, their statuses and which pipeline error gets which are one table in
``progress_sync._contract`` (``ERRORS``, ``PIPELINE_ERRORS``), read here and by the clients.

Errors raised by the HTTP layer itself (the pipeline's are in ``progress_sync._errors``)::

    ApiError                       answer with this code and JSON body
    ├── TooManySubscribersError    503 + Retry-After: the server holds max_subscribers streams
    └── ShuttingDownError          503 + Retry-After: the server is draining before it exits
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pydantic
from progress_sync import StoreUnavailableError
from progress_sync._contract import (
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PIPELINE_ERRORS,
    SHUTTING_DOWN,
    TOO_MANY_SUBSCRIBERS,
    ErrorCode,
    PipelineError,
    error_body,
    http_error_code,
)
from progress_sync._errors import ProgressSyncError
from quart import Quart, Response, jsonify
from quart_schema import RequestSchemaValidationError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """Answer the request with this JSON error (for checks made in the HTTP layer).

    Attributes:
        code: the error's row of the contract (``progress_sync._contract.ERRORS``).
        status: the HTTP status (4xx or 5xx), ``code.status``.
        error: a short name of the error (``"unauthorized"``), ``code.error``.
        detail: what is wrong and what to do, without secrets.
        field: the field, header or query parameter at fault, or None.
        headers: extra response headers (``WWW-Authenticate``).
    """

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        field: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{code.status} {code.error}: {detail}")
        self.code = code
        self.status = code.status
        self.error = code.error
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
            TOO_MANY_SUBSCRIBERS,
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
            SHUTTING_DOWN,
            f"the server is shutting down; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
        )
        self.retry_after = retry_after


def error_response(code: ErrorCode, detail: str, field: str | None = None) -> Response:
    """Build the JSON error response ``{"error", "code", "detail", "field"}``."""
    response = jsonify(error_body(code, detail, field))
    response.status_code = code.status
    return response


def _validation_detail(exc: RequestSchemaValidationError) -> tuple[str, str]:
    cause = exc.validation_error
    if isinstance(cause, pydantic.ValidationError):
        first = cause.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        return field, f"{field}: {first['msg']}"
    return "body", f"body: the request body must be a JSON object ({cause})"


def error_answer(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """The answer to an exception the API knows: an ``ApiError``, or a pipeline error of the
    contract's ``PIPELINE_ERRORS``; None for any other.

    Used by the Quart handlers below and by the ingest fast path (``_ingest_asgi``,
    ``_ingest_ws``), so both answer alike.

    Returns:
        The HTTP status, the JSON body (``{"error", "code", "detail", "field"}``) and the
        extra headers (``Retry-After``, ``WWW-Authenticate``).
    """
    if isinstance(exc, ApiError):
        return exc.status, error_body(exc.code, exc.detail, exc.field), exc.headers
    for row in PIPELINE_ERRORS:
        if isinstance(exc, row.exception):
            return _pipeline_answer(row, exc)
    return None


def answer_for(exc: Exception) -> tuple[int, dict[str, Any], dict[str, str]]:
    """The error answer to ``exc`` (``error_answer``); a 500, logged, for an unexpected one."""
    answer = error_answer(exc)
    if answer is not None:
        return answer
    logger.exception("unexpected error while handling a request", exc_info=exc)
    error = ApiError(INTERNAL_ERROR, "an unexpected error occurred; see the server log")
    return answer_for(error)


def _pipeline_answer(
    row: PipelineError, exc: ProgressSyncError
) -> tuple[int, dict[str, Any], dict[str, str]]:
    if isinstance(exc, StoreUnavailableError):
        logger.warning("request failed, the store is unavailable: %s", exc)
    headers = {} if row.retry_after is None else {"Retry-After": str(row.retry_after)}
    return row.error.status, row.answer(exc), headers


def _pipeline_handler(row: PipelineError) -> Callable[[ProgressSyncError], Awaitable[Response]]:
    async def handler(exc: ProgressSyncError) -> Response:
        status, body, headers = _pipeline_answer(row, exc)
        response = jsonify(body)
        response.status_code = status
        response.headers.update(headers)
        return response

    return handler


def install_error_handlers(app: Quart) -> None:
    """Register the handlers that turn every error into a JSON response."""
    for row in PIPELINE_ERRORS:
        app.register_error_handler(row.exception, _pipeline_handler(row))

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        response = error_response(exc.code, exc.detail, exc.field)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(RequestSchemaValidationError)
    async def schema_error(exc: RequestSchemaValidationError) -> Response:
        field, detail = _validation_detail(exc)
        return error_response(INVALID_REQUEST, detail, field)

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        name = (exc.name or "error").lower()
        field = "body" if status in (400, 413, 415) else None
        code = http_error_code(status, name)
        response = error_response(code, exc.description or name, field)
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            response.headers["Allow"] = ", ".join(exc.valid_methods)
        return response

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        logger.exception("unexpected error while handling a request", exc_info=exc)
        return error_response(INTERNAL_ERROR, "an unexpected error occurred; see the server log")
