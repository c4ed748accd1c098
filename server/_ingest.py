"""HTTP ingest: producers in other processes register external jobs, report and finish them.

Routes (see README "Ingest API"):

- ``POST /api/jobs/{jobId}/progress``: one update, through the update buffer; 202.
- ``POST /api/progress``: a batch for many jobs, a JSON array or NDJSON
  (``Content-Type: application/x-ndjson``, one object per line, https://github.com/ndjson/ndjson-spec);
  each bad line gets its own error, the good ones are applied; 200.
- ``POST /api/jobs/{jobId}/complete`` and ``/fail``: terminal states, written synchronously
  (the answer comes once the state is stored and subscribers are told); 200.
- ``POST /api/jobs/{jobId}/heartbeat``: the producer is alive; renews the job's lease; 200.
- ``POST /api/jobs/{jobId}/subscribe-token``: a fresh subscribe token for a job.
- ``POST /api/jobs`` without ``kind`` registers an external job (``register_external_job``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from msgspec import UNSET
from progress_sync import (
    ExportStore,
    InvalidFieldError,
    InvalidUpdateError,
    JobFinishedError,
    JobSnapshot,
    JobStatus,
    UpdateSink,
    check_eta_seconds,
    check_job_id,
    check_progress,
    check_reported_at,
    parse_status,
)
from progress_sync._contract import (
    BATCH_TOO_LARGE,
    JOB_COMPLETE_PATH,
    JOB_FAIL_PATH,
    JOB_HEARTBEAT_PATH,
    JOB_PROGRESS_PATH,
    JOB_RUN_BY_SERVER,
    JOB_SUBSCRIBE_TOKEN_PATH,
    PROGRESS_PATH,
    REQUEST_TOO_LARGE,
    SUBSCRIBE_TOKENS_OFF,
    quart_rule,
)
from quart import Quart, Response, request, url_for
from quart_schema import document_request, tag, validate_response
from werkzeug.exceptions import RequestEntityTooLarge

from . import _ingest_body as body_schema
from ._auth import Auth, document_auth
from ._config import ServerConfig
from ._errors import ApiError, error_response
from ._models import (
    AcceptedResponse,
    BatchRequest,
    BatchResponse,
    CompleteJobRequest,
    CreateJobRequest,
    FailJobRequest,
    JobSnapshotBody,
    ProgressRequest,
    SubscribeTokenResponse,
)
from ._openapi import error_responses
from ._request import decode_json

MAX_CLOCK_SKEW = 300.0
"""Seconds a producer's ``reportedAt`` may be ahead of the server's clock.

An update stamped in the future would make every later update look stale to the store, so
one from a clock running more than five minutes fast is refused rather than applied."""

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})
"""Content types read as NDJSON (one JSON object per line); anything else is read as JSON."""

_UPDATE_FIELDS = ("jobId", "percent", "stage", "message", "reportedAt", "etaSeconds", "reset")
_MISSING: Any = object()


@dataclass
class BatchOutcome:
    """What ``POST /api/progress`` did, as its JSON answer.

    Attributes:
        accepted: updates handed to the update buffer.
        errors: one ``{"line", "field", "reason"}`` per refused line (``line`` is 1-based: the
            NDJSON line, or the array index + 1).
        unknown_jobs: ids of jobs that are not registered (their updates were not applied).
        finished_jobs: ids of jobs already in a terminal state (their updates were ignored).
    """

    accepted: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    unknown_jobs: list[str] = field(default_factory=list)
    finished_jobs: list[str] = field(default_factory=list)
    server_run: dict[str, str] = field(default_factory=dict)
    """Jobs of the batch the server runs, and their kind (their updates are refused)."""

    def to_dict(self) -> dict[str, Any]:
        """The camelCase JSON answer."""
        return {
            "accepted": self.accepted,
            "errors": self.errors,
            "unknownJobs": self.unknown_jobs,
            "finishedJobs": self.finished_jobs,
        }


ParsedUpdate = tuple[str, float, str, str | None, float | None, float | None, bool]
"""``(job_id, percent, stage, message, reported_at, eta_seconds, reset)``."""


def parse_update(obj: object, *, now: float, job_id: str | None = None) -> ParsedUpdate:
    """Check one update object from a producer.

    Args:
        obj: the decoded JSON: ``{"jobId", "percent", "stage"?, "message"?, "reportedAt"?,
            "etaSeconds"?, "reset"?}``.
        now: the server's time, seconds since the Unix epoch (for the clock-skew check).
        job_id: the job id from the URL; then ``jobId`` may be left out of ``obj``.

    Returns:
        ``(job_id, percent, stage, message, reported_at, eta_seconds, reset)``; ``stage``
        defaults to ``""``, ``reported_at`` to None (the buffer stamps the receive time),
        ``eta_seconds`` to None and ``reset`` to False.

    Raises:
        InvalidUpdateError: naming the first field at fault and why.
    """
    if not isinstance(obj, dict):
        raise InvalidUpdateError(
            "body", f"each update must be a JSON object, not {_json_type(obj)}"
        )
    for key in obj:
        if key not in _UPDATE_FIELDS:
            raise InvalidUpdateError(
                str(key), f"unknown field; an update has {', '.join(_UPDATE_FIELDS)}"
            )
    body_job_id = obj.get("jobId", _MISSING)
    if job_id is None:
        if body_job_id is _MISSING:
            raise InvalidUpdateError("jobId", "is required")
        job_id = check_job_id(body_job_id)
    elif body_job_id is not _MISSING and body_job_id != job_id:
        raise InvalidUpdateError("jobId", "differs from the job id in the URL; leave it out")
    percent = obj.get("percent", _MISSING)
    if percent is _MISSING:
        raise InvalidUpdateError("percent", "is required (a number from 0 to 100)")
    stage = obj.get("stage", "")
    message = obj.get("message")
    percent = check_progress(percent, stage, message)
    reported_at = obj.get("reportedAt")
    if reported_at is not None:
        reported_at = check_reported_at(reported_at)
        if reported_at > now + MAX_CLOCK_SKEW:
            raise InvalidUpdateError(
                "reportedAt",
                f"is {reported_at - now:.0f} s ahead of the server's clock (at most "
                f"{MAX_CLOCK_SKEW:g} s allowed); fix the producer's clock or leave reportedAt out",
            )
    eta_seconds = check_eta_seconds(obj.get("etaSeconds"))
    reset = obj.get("reset", False)
    if type(reset) is not bool:
        raise InvalidUpdateError("reset", f"must be true or false, not {_json_type(reset)}")
    return job_id, percent, stage, message, reported_at, eta_seconds, reset


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
    }.get(type(value), "an object")


def _check_external(snapshot: JobSnapshot) -> None:
    if snapshot.kind is not None:
        raise ApiError(
            JOB_RUN_BY_SERVER,
            f"job {snapshot.job_id!r} is a {snapshot.kind!r} job the server runs; only external "
            "jobs (registered without kind) take progress and terminal states over HTTP; "
            "cancel it with POST /api/jobs/{jobId}/cancel",
            "jobId",
        )


class Ingest:
    """What the ingest routes do with a body, whatever carried it: the Quart routes, the fast
    ASGI path in front of Quart (``_ingest_asgi``) and WebSocket frames all call these.

    A body is decoded and validated in one pass by the msgspec Structs of ``_ingest_body``;
    one the Structs refuse is read again by ``parse_update``, which names the field at fault
    and why (the errors of the API). The jobs of a batch are looked up in one call
    (``ExportStore.get_many``).

    Args:
        store: the export store (job lookups).
        sink: where accepted reports go (the update buffer, or direct sync).
        max_batch_updates: the most updates one batch may hold.
    """

    def __init__(self, store: ExportStore, sink: UpdateSink, *, max_batch_updates: int) -> None:
        self.store = store
        self.sink = sink
        self.max_batch_updates = max_batch_updates

    async def report_one(self, job_id: str, data: bytes) -> None:
        """``POST /api/jobs/{jobId}/progress``: hand one update to the sink.

        Raises:
            InvalidUpdateError: the job id or the body is malformed (400).
            JobNotFoundError: the job is not registered (404).
            JobFinishedError: the job has ended (409).
            ApiError: 409 when the server runs the job.
            SinkClosedError: the sink is closed (503).
            StoreUnavailableError: the store cannot be reached (503).
        """
        check_job_id(job_id)
        now = time.time()
        try:
            body: body_schema.ProgressBody | None = body_schema.PROGRESS_DECODER.decode(data)
        except body_schema.DECODE_ERRORS:
            body = None
        if (
            body is not None
            and (body.job_id is UNSET or body.job_id == job_id)
            and (body.reported_at is None or body.reported_at <= now + MAX_CLOCK_SKEW)
        ):
            percent, stage, message, reported_at, eta, reset = (
                body.percent,
                body.stage,
                body.message,
                body.reported_at,
                body.eta_seconds,
                body.reset,
            )
        else:  # refused: say why
            obj = json_body(data, allow_empty=False)
            _, percent, stage, message, reported_at, eta, reset = parse_update(
                obj, now=now, job_id=job_id
            )
        snapshot = await self.store.get(job_id)
        _check_external(snapshot)
        if snapshot.is_terminal:
            raise JobFinishedError(job_id, snapshot.status.value)
        self.sink.report_nowait(
            job_id, percent, stage, message, reported_at=reported_at, eta_seconds=eta, reset=reset
        )

    async def report_batch(self, data: bytes, *, ndjson: bool) -> dict[str, Any]:
        """``POST /api/progress`` (and a WebSocket frame, ``ndjson=False``): hand a batch's
        good updates to the sink.

        Returns:
            The answer, ``BatchOutcome.to_dict()``.

        Raises:
            InvalidUpdateError: a JSON body that is not valid JSON or not an array (400).
            ApiError: 413 when the batch holds more than ``max_batch_updates`` updates.
            SinkClosedError: the sink is closed (503).
            StoreUnavailableError: the store cannot be reached (503).
        """
        now = time.time()
        outcome = BatchOutcome()
        updates = _decode_batch(data, ndjson=ndjson, now=now)
        line_numbers: list[int] | None = None
        if updates is None:  # some update was refused: read it again line by line, saying why
            updates, line_numbers = _explain_batch(
                data, ndjson, now, self.max_batch_updates, outcome
            )
        elif len(updates) > self.max_batch_updates:
            raise _batch_too_large(self.max_batch_updates)
        await self._apply(updates, outcome)
        if outcome.server_run:
            if line_numbers is None:
                line_numbers = _line_numbers(data, ndjson, len(updates))
            for index, update in enumerate(updates):
                kind = outcome.server_run.get(update.job_id)
                if kind is not None:
                    outcome.errors.append(
                        {
                            "line": line_numbers[index],
                            "field": "jobId",
                            "reason": f"job {update.job_id!r} is run by the server (kind "
                            f"{kind!r}); only external jobs take progress over HTTP",
                        }
                    )
        return outcome.to_dict()

    async def _apply(
        self, updates: list[body_schema.BatchUpdateBody], outcome: BatchOutcome
    ) -> None:
        # One store lookup for the whole batch; the verdict per job, then one loop.
        job_ids = dict.fromkeys([update.job_id for update in updates])
        states = await self.store.get_many(job_ids)
        live: set[str] = set()
        for job_id in job_ids:
            snapshot = states.get(job_id)
            if snapshot is None:
                outcome.unknown_jobs.append(job_id)
            elif snapshot.is_terminal:
                outcome.finished_jobs.append(job_id)
            elif snapshot.kind is not None:
                outcome.server_run[job_id] = snapshot.kind
            else:
                live.add(job_id)
        report_nowait = self.sink.report_nowait
        accepted = 0
        for update in updates:
            job_id = update.job_id
            if job_id in live:
                report_nowait(
                    job_id,
                    update.percent,
                    update.stage,
                    update.message,
                    reported_at=update.reported_at,
                    eta_seconds=update.eta_seconds,
                    reset=update.reset,
                )
                accepted += 1
        outcome.accepted = accepted


def _decode_batch(
    data: bytes, *, ndjson: bool, now: float
) -> list[body_schema.BatchUpdateBody] | None:
    """The batch's updates when every one is valid (the fast path), else None."""
    try:
        if ndjson:
            updates = body_schema.LINE_DECODER.decode_lines(data)
        else:
            updates = body_schema.BATCH_DECODER.decode(data)
    except body_schema.DECODE_ERRORS:
        return None
    latest = now + MAX_CLOCK_SKEW
    for update in updates:
        reported_at = update.reported_at
        if reported_at is not None and reported_at > latest:
            return None
    return updates


def _explain_batch(
    data: bytes, ndjson: bool, now: float, max_updates: int, outcome: BatchOutcome
) -> tuple[list[body_schema.BatchUpdateBody], list[int]]:
    """Read a batch the Structs refused line by line: the good updates, their line numbers,
    and one error per bad line in ``outcome.errors``."""
    updates: list[body_schema.BatchUpdateBody] = []
    numbers: list[int] = []
    for number, item in read_batch(data, ndjson, max_updates):
        if isinstance(item, InvalidFieldError):
            outcome.errors.append({"line": number, "field": item.field, "reason": item.reason})
            continue
        try:
            job_id, percent, stage, message, reported_at, eta, reset = parse_update(item, now=now)
        except InvalidUpdateError as exc:
            outcome.errors.append({"line": number, "field": exc.field, "reason": exc.reason})
            continue
        updates.append(
            body_schema.BatchUpdateBody(
                job_id=job_id,
                percent=percent,
                stage=stage,
                message=message,
                reported_at=reported_at,
                eta_seconds=eta,
                reset=reset,
            )
        )
        numbers.append(number)
    return updates, numbers


def _line_numbers(data: bytes, ndjson: bool, count: int) -> list[int]:
    """The 1-based line of each update of a batch that decoded whole (errors only)."""
    if not ndjson:
        return list(range(1, count + 1))
    return [n for n, raw in enumerate(data.split(b"\n"), start=1) if raw.strip()]


async def register_external_job(
    store: ExportStore, data: CreateJobRequest, *, job_id: str
) -> JobSnapshot:
    """Register an external job (``POST /api/jobs`` without ``kind``): the server runs nothing.

    Args:
        store: where the job is registered.
        data: the request; ``status`` (``queued`` or ``running``, or an alias such as
            ``pending`` or ``in_progress``; default ``running``), ``stage`` and ``message``.
        job_id: the id to use (the client's, or a random one).

    Raises:
        InvalidUpdateError: ``params`` given, ``status`` terminal, or a field malformed.
        UnknownStatusError: ``status`` names no job state.
        JobExistsError: ``job_id`` is taken (409).
    """
    if "params" in data.model_fields_set:
        raise InvalidUpdateError("params", "only jobs with a kind take params")
    status = parse_status(data.status) if data.status is not None else JobStatus.RUNNING
    if status.is_terminal:
        raise InvalidUpdateError(
            "status", f"a job is registered queued or running, not {status.value}"
        )
    return await store.register(
        job_id,
        status=status,
        stage=data.stage or "",
        message=data.message,
        kind=None,
        heartbeat_timeout=data.heartbeat_timeout_s,
    )


def created_response(
    snapshot: JobSnapshot, auth: Auth
) -> tuple[dict[str, Any], int, dict[str, str]]:
    """The 201 answer to ``POST /api/jobs``: where to follow the job, and its subscribe token.

    Returns:
        The body (a ``CreateJobResponse``), the status and the ``Location`` header.
    """
    status_url = url_for("get_job", job_id=snapshot.job_id)
    body = {
        "jobId": snapshot.job_id,
        "status": snapshot.status.value,
        "statusUrl": status_url,
        "streamUrl": url_for("stream_job", job_id=snapshot.job_id),
        **auth.credentials(snapshot.job_id),
    }
    return body, 201, {"Location": status_url}


def json_body(data: bytes, *, allow_empty: bool) -> Any:
    """Decode a JSON body (an empty one is ``{}`` when ``allow_empty``).

    Raises:
        InvalidUpdateError: the body is empty (and may not be), or not JSON (``decode_json``).
    """
    if not data.strip():
        if allow_empty:
            return {}
        raise InvalidUpdateError("body", "is empty; send a JSON object")
    return decode_json(data)


async def _request_body() -> bytes:
    data = await request.get_data(as_text=False)
    return data if isinstance(data, bytes) else data.encode()


async def _read_json(*, allow_empty: bool) -> Any:
    return json_body(await _request_body(), allow_empty=allow_empty)


async def read_object(allowed: tuple[str, ...], *, allow_empty: bool = True) -> dict[str, Any]:
    """Read a JSON object body with only the ``allowed`` fields (an empty body is ``{}``
    when ``allow_empty``).

    Raises:
        InvalidUpdateError: the body is not JSON, not an object, or has another field.
    """
    body = await _read_json(allow_empty=allow_empty)
    if not isinstance(body, dict):
        raise InvalidUpdateError("body", f"must be a JSON object, not {_json_type(body)}")
    for key in body:
        if key not in allowed:
            expected = ", ".join(allowed) or "no fields"
            raise InvalidUpdateError(str(key), f"unknown field; expected {expected}")
    return body


def install_ingest_routes(
    app: Quart, services: Any, auth: Auth
) -> Ingest:  # five routes as closures
    """Add the ingest routes (see the module docstring) to ``app``.

    Args:
        app: the Quart app.
        services: the app's ``Services`` (config, store, sink).
        auth: the app's authentication (for subscribe tokens).

    Returns:
        The ``Ingest`` the routes use (the fast path in front of Quart uses the same).
    """
    config: ServerConfig = services.config
    store: ExportStore = services.store
    sink: UpdateSink = services.sink
    ingest = Ingest(store, sink, max_batch_updates=config.max_batch_updates)
    # Quart refuses bigger bodies with 413 while reading them (Quart's MAX_CONTENT_LENGTH).
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes

    @app.errorhandler(RequestEntityTooLarge)
    async def body_too_large(exc: RequestEntityTooLarge) -> Response:
        return error_response(
            REQUEST_TOO_LARGE,
            f"the body is larger than {config.max_body_bytes} bytes (--max-body-bytes); "
            "send smaller batches",
            "body",
        )

    async def live_job(job_id: str) -> JobSnapshot:
        snapshot = await store.get(job_id)
        _check_external(snapshot)
        if snapshot.is_terminal:
            raise JobFinishedError(job_id, snapshot.status.value)
        return snapshot

    @app.post(quart_rule(JOB_PROGRESS_PATH))
    @tag(["ingest"])
    @document_auth(config, "produce")
    @error_responses(400, 404, 409, 413, 503)
    @validate_response(AcceptedResponse, 202)
    @document_request(ProgressRequest)
    async def report_progress(job_id: str) -> tuple[dict[str, Any], int]:
        """Report one update of an external job.

        202 once the update is in the update buffer, which coalesces it with the job's
        other updates and writes it within a flush interval. 404 if the job is not
        registered; 409 if it has ended or the server runs it.
        """
        await ingest.report_one(job_id, await _request_body())
        return {"accepted": 1}, 202

    @app.post(quart_rule(PROGRESS_PATH))
    @tag(["ingest"])
    @document_auth(config, "produce")
    @error_responses(400, 413, 503)
    @validate_response(BatchResponse, 200)
    @document_request(BatchRequest)
    async def report_batch() -> dict[str, Any]:
        """Report updates of many external jobs: a JSON array, or NDJSON.

        Each bad update gets its own error and the good ones are applied; updates of jobs
        that are not registered, or have ended, are named. 400 when the body is not a JSON
        array (nor NDJSON); 413 beyond ``--max-batch-updates`` updates, and nothing is
        applied.
        """
        data = await _request_body()
        return await ingest.report_batch(data, ndjson=request.mimetype in NDJSON_TYPES)

    async def finish(job_id: str, status: JobStatus, **outcome: Any) -> dict[str, Any]:
        check_job_id(job_id)
        await live_job(job_id)
        snapshot = await sink.finish(job_id, status, **outcome)
        if snapshot.status is not status:
            # Another request ended the job between our check and our write; its state won.
            raise JobFinishedError(job_id, snapshot.status.value)
        return snapshot.to_dict()

    @app.post(quart_rule(JOB_COMPLETE_PATH))
    @tag(["ingest"])
    @document_auth(config, "produce")
    @error_responses(400, 404, 409, 413, 503)
    @validate_response(JobSnapshotBody, 200)
    @document_request(CompleteJobRequest)
    async def complete_job(job_id: str) -> dict[str, Any]:
        """End an external job ``completed``, with its result.

        200 with the terminal snapshot once it is stored and the job's subscribers are told;
        the job's latest buffered progress goes into the same write. 409 if the job has
        ended or the server runs it.
        """
        body = await read_object(("result",))
        return await finish(job_id, JobStatus.COMPLETED, result=body.get("result"))

    @app.post(quart_rule(JOB_FAIL_PATH))
    @tag(["ingest"])
    @document_auth(config, "produce")
    @error_responses(400, 404, 409, 413, 503)
    @validate_response(JobSnapshotBody, 200)
    @document_request(FailJobRequest)
    async def fail_job(job_id: str) -> dict[str, Any]:
        """End an external job ``failed``, with why.

        200 with the terminal snapshot once it is stored and the job's subscribers are told.
        409 if the job has ended or the server runs it.
        """
        body = await read_object(("error",), allow_empty=False)
        if "error" not in body:
            raise InvalidUpdateError("error", "is required: why the job failed")
        if not isinstance(body["error"], str) or not body["error"].strip():
            raise InvalidUpdateError("error", "must be a non-empty string: why the job failed")
        return await finish(job_id, JobStatus.FAILED, error=body["error"])

    @app.post(quart_rule(JOB_HEARTBEAT_PATH))
    @tag(["ingest"])
    @document_auth(config, "produce")
    @error_responses(400, 404, 409, 503)
    @validate_response(JobSnapshotBody, 200)
    async def heartbeat_job(job_id: str) -> dict[str, Any]:
        """Say the producer of an external job is alive: renew the job's lease.

        For a job registered with ``heartbeatTimeoutS``: the lease runs that long again from
        now (a progress report renews it too). The job itself does not change (no new
        ``seq``, no event). 200 with the job's snapshot; 404 if the job is not registered;
        409 if it has ended (its lease may have expired: see its ``error``) or the server
        runs it. The body is ignored.
        """
        check_job_id(job_id)
        _check_external(await store.get(job_id))
        return (await store.heartbeat(job_id)).to_dict()

    @app.post(quart_rule(JOB_SUBSCRIBE_TOKEN_PATH))
    @tag(["jobs"])
    @document_auth(config, "produce")
    @error_responses(400, 404, 503)
    @validate_response(SubscribeTokenResponse, 200)
    async def new_subscribe_token(job_id: str) -> dict[str, Any]:
        """Issue a fresh subscribe token for a job.

        400 when the server has no subscribe secret (reading jobs then needs no token).
        """
        check_job_id(job_id)
        if auth.subscribe_tokens is None:
            raise ApiError(
                SUBSCRIBE_TOKENS_OFF,
                "this server has no subscribe secret, so reading jobs needs no token",
            )
        await store.get(job_id)
        return {"jobId": job_id, **auth.credentials(job_id)}

    return ingest


def _batch_too_large(max_updates: int) -> ApiError:
    return ApiError(
        BATCH_TOO_LARGE,
        f"a batch holds at most {max_updates} updates (--max-batch-updates); "
        "send this one in smaller batches",
        "body",
    )


def read_batch(data: bytes, ndjson: bool, max_updates: int) -> list[tuple[int, object]]:
    """Read a batch's body into ``(line number, decoded object or error)``.

    Raises:
        InvalidUpdateError: a JSON body that is not valid JSON or not an array (400).
        ApiError: 413 when the batch holds more than ``max_updates`` updates.
    """
    if ndjson:
        lines: list[tuple[int, object]] = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                lines.append((number, decode_json(raw)))
            except InvalidFieldError as exc:
                lines.append((number, exc))
            if len(lines) > max_updates:
                break
    else:
        if not data.strip():
            raise InvalidUpdateError("body", "is empty; send a JSON array of updates")
        try:
            items = decode_json(data)
        except InvalidFieldError as exc:
            raise InvalidUpdateError(
                "body",
                f"{exc.reason}; send a JSON array, or NDJSON with "
                "Content-Type: application/x-ndjson",
            ) from None
        if not isinstance(items, list):
            raise InvalidUpdateError(
                "body", f"must be a JSON array of updates, not {_json_type(items)}"
            )
        lines = list(enumerate(items, start=1))
    if len(lines) > max_updates:
        raise _batch_too_large(max_updates)
    return lines
