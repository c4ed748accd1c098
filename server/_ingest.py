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

from progress_sync import (
    ExportStore,
    InvalidUpdateError,
    JobFinishedError,
    JobNotFoundError,
    JobSnapshot,
    JobStatus,
    UpdateSink,
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
    ProgressRequest,
    SubscribeTokenResponse,
)
from ._models import (
    JobSnapshot as JobSnapshotBody,
)
from ._openapi import error_responses
from ._request import decode_json

MAX_CLOCK_SKEW = 300.0
"""Seconds a producer's ``reportedAt`` may be ahead of the server's clock.

An update stamped in the future would make every later update look stale to the store, so
one from a clock running more than five minutes fast is refused rather than applied."""

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/jsonl", "application/x-jsonlines"})
"""Content types read as NDJSON (one JSON object per line); anything else is read as JSON."""

_UPDATE_FIELDS = ("jobId", "percent", "stage", "message", "reportedAt")
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

    def to_dict(self) -> dict[str, Any]:
        """The camelCase JSON answer."""
        return {
            "accepted": self.accepted,
            "errors": self.errors,
            "unknownJobs": self.unknown_jobs,
            "finishedJobs": self.finished_jobs,
        }


def parse_update(
    obj: object, *, now: float, job_id: str | None = None
) -> tuple[str, float, str, str | None, float | None]:
    """Check one update object from a producer.

    Args:
        obj: the decoded JSON: ``{"jobId", "percent", "stage"?, "message"?, "reportedAt"?}``.
        now: the server's time, seconds since the Unix epoch (for the clock-skew check).
        job_id: the job id from the URL; then ``jobId`` may be left out of ``obj``.

    Returns:
        ``(job_id, percent, stage, message, reported_at)``; ``stage`` defaults to ``""`` and
        ``reported_at`` to None (the buffer stamps the receive time).

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
    return job_id, percent, stage, message, reported_at


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


async def _read_json(*, allow_empty: bool) -> Any:
    data = await request.get_data()
    if not data.strip():
        if allow_empty:
            return {}
        raise InvalidUpdateError("body", "is empty; send a JSON object")
    return decode_json(data)


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


def install_ingest_routes(app: Quart, services: Any, auth: Auth) -> None:  # noqa: C901  # five routes as closures
    """Add the ingest routes (see the module docstring) to ``app``.

    Args:
        app: the Quart app.
        services: the app's ``Services`` (config, store, sink).
        auth: the app's authentication (for subscribe tokens).
    """
    config: ServerConfig = services.config
    store: ExportStore = services.store
    sink: UpdateSink = services.sink
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
        check_job_id(job_id)
        body = await _read_json(allow_empty=False)
        _, percent, stage, message, reported_at = parse_update(body, now=time.time(), job_id=job_id)
        await live_job(job_id)
        sink.report_nowait(job_id, percent, stage, message, reported_at=reported_at)
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
        lines = await _read_batch(config.max_batch_updates)
        outcome = BatchOutcome()
        now = time.time()
        parsed: list[tuple[int, tuple[str, float, str, str | None, float | None]]] = []
        for number, item in lines:
            if isinstance(item, InvalidUpdateError):
                outcome.errors.append({"line": number, "field": item.field, "reason": item.reason})
                continue
            try:
                parsed.append((number, parse_update(item, now=now)))
            except InvalidUpdateError as exc:
                outcome.errors.append({"line": number, "field": exc.field, "reason": exc.reason})
        # One store lookup per job, not per line.
        states: dict[str, JobSnapshot | None] = {}
        for _, update in parsed:
            job_id = update[0]
            if job_id not in states:
                try:
                    states[job_id] = await store.get(job_id)
                except JobNotFoundError:
                    states[job_id] = None
                    outcome.unknown_jobs.append(job_id)
                else:
                    if states[job_id].is_terminal:  # type: ignore[union-attr]  # just set from get()
                        outcome.finished_jobs.append(job_id)
        report_nowait = sink.report_nowait
        for number, (job_id, percent, stage, message, reported_at) in parsed:
            snapshot = states[job_id]
            if snapshot is None or snapshot.is_terminal:
                continue
            if snapshot.kind is not None:
                outcome.errors.append(
                    {
                        "line": number,
                        "field": "jobId",
                        "reason": f"job {job_id!r} is run by the server (kind "
                        f"{snapshot.kind!r}); only external jobs take progress over HTTP",
                    }
                )
                continue
            report_nowait(job_id, percent, stage, message, reported_at=reported_at)
            outcome.accepted += 1
        return outcome.to_dict()

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


async def _read_batch(max_updates: int) -> list[tuple[int, object]]:
    """Read ``POST /api/progress``'s body into ``(line number, decoded object or error)``.

    Raises:
        InvalidUpdateError: a JSON body that is not valid JSON or not an array (400).
        ApiError: 413 when the batch holds more than ``max_updates`` updates.
    """
    data = await request.get_data(cache=True, as_text=False, parse_form_data=False)
    if request.mimetype in NDJSON_TYPES:
        lines: list[tuple[int, object]] = []
        for number, raw in enumerate(data.split(b"\n"), start=1):
            if not raw.strip():
                continue
            try:
                lines.append((number, decode_json(raw)))
            except InvalidUpdateError as exc:
                lines.append((number, exc))
            if len(lines) > max_updates:
                break
    else:
        if not data.strip():
            raise InvalidUpdateError("body", "is empty; send a JSON array of updates")
        try:
            items = decode_json(data)
        except InvalidUpdateError as exc:
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
        raise ApiError(
            BATCH_TOO_LARGE,
            f"a batch holds at most {max_updates} updates (--max-batch-updates); "
            "send this one in smaller batches",
            "body",
        )
    return lines
