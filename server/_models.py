"""Request and response bodies of the HTTP API (pydantic models with camelCase aliases).

The OpenAPI document (``/openapi.json``, see ``_openapi``) is made from these models: a
model's docstring is its schema's description and each field's docstring (below the field,
pydantic's ``use_attribute_docstrings``) the property's. Both are reST here and CommonMark
there (``_commonmark`` turns double backquotes into single ones).
"""

from __future__ import annotations

import typing
from typing import Any, Literal

import pydantic
from progress_sync import (
    JOB_ID_PATTERN,
    MAX_HEARTBEAT_TIMEOUT,
    MAX_MESSAGE_LENGTH,
    MAX_STAGE_LENGTH,
)
from progress_sync._contract import ERRORS
from pydantic.alias_generators import to_camel

from .sse._pace import MAX_MIN_INTERVAL_MS

JobStatusName = Literal["queued", "running", "completed", "failed", "cancelled"]
"""A job's state, as the JSON bodies and the events carry it (``progress_sync.JobStatus``)."""

_ID = JOB_ID_PATTERN.pattern

JOB_ID_SCHEMA: dict[str, Any] = {
    "pattern": f"^{JOB_ID_PATTERN.pattern}$",
    "minLength": 1,
    "maxLength": 128,
}
"""The JSON Schema of a job id (``progress_sync.JOB_ID_PATTERN``): documentation only, the check
itself is ``progress_sync.check_job_id``, whose error message says what is wrong."""


NOT_BLANK = r"[^\t-\r\u001c-\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
"""A JSON Schema ``pattern`` that a text matches when ``text.strip()`` leaves something: a
character that is not whitespace to ``str.isspace`` (spelt out, since ``\\s`` differs
between regex engines)."""


def _commonmark(schema: dict[str, Any]) -> None:
    # OpenAPI descriptions are CommonMark, where code is `x`, not reST's ``x``.
    for target in (schema, *schema.get("properties", {}).values()):
        if isinstance(target.get("description"), str):
            target["description"] = target["description"].replace("``", "`")


def _title(name: str, _: object) -> str:
    # "job_id" -> "Job id" (pydantic's default would title-case the alias: "Jobid").
    return name.replace("_", " ").capitalize()


class _ApiModel(pydantic.BaseModel):
    # Clients send camelCase only (snake_case names are refused as unknown fields), and
    # values of the right JSON type only: "5" is not a number and true is not 1.
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=True,
        field_title_generator=_title,
        json_schema_extra=_commonmark,
    )


def _kind_or_external(schema: dict[str, Any]) -> None:
    # What create_job and register_external_job refuse (400), said in JSON Schema 2020-12:
    # params only with a kind; status, stage and message only without (even null).
    _commonmark(schema)
    schema["if"] = {"required": ["kind"], "properties": {"kind": {"type": "string"}}}
    schema["then"] = {
        "not": {
            "anyOf": [
                {"required": [n]} for n in ("status", "stage", "message", "heartbeatTimeoutS")
            ]
        }
    }
    schema["else"] = {"not": {"required": ["params"]}}


class CreateJobRequest(_ApiModel):
    """``POST /api/jobs``: start a job of a known kind, or register an external job.

    With ``kind`` the server runs a job of that kind; without it the job is *external*: the
    server runs nothing and a producer reports its progress over HTTP. ``params`` go with a
    kind only; ``status``, ``stage`` and ``message`` with an external job only.
    """

    model_config = pydantic.ConfigDict(json_schema_extra=_kind_or_external)

    kind: str | None = pydantic.Field(default=None, min_length=1, max_length=64)
    """The job kind (``demo``); leave it out for an external job."""
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    """The kind's parameters; jobs with a kind only. ``demo``: ``durationS`` (0-3600 s,
    default 5), ``updatesPerS`` (0-1000, default 25), ``failAtPercent`` (0-100, optional)."""
    job_id: str | None = pydantic.Field(default=None, json_schema_extra=JOB_ID_SCHEMA)
    """The id to give the job (1-128 letters, digits, ``.``, ``_``, ``:`` or ``-``, starting
    with a letter or digit); a random one by default. 409 if taken."""
    status: str | None = pydantic.Field(
        default=None, max_length=64, json_schema_extra={"enum": ["queued", "running", None]}
    )
    """External jobs only: the initial state, ``queued`` or ``running`` (default); aliases
    such as ``pending`` or ``in_progress`` are accepted too."""
    stage: str | None = pydantic.Field(default=None, max_length=MAX_STAGE_LENGTH)
    """External jobs only: the initial stage text."""
    message: str | None = pydantic.Field(default=None, max_length=MAX_MESSAGE_LENGTH)
    """External jobs only: an initial message."""
    heartbeat_timeout_s: float | None = pydantic.Field(
        default=None, ge=0.001, le=MAX_HEARTBEAT_TIMEOUT
    )
    """External jobs only: the job's lease, in seconds (0.001 to 86400). A queued or running
    job that gets no progress report and no heartbeat (``POST /api/jobs/{jobId}/heartbeat``)
    for this long ends ``failed`` (its error says the lease expired). No lease by default;
    the clients and ``progress-sync run`` set one."""


class CreateJobResponse(_ApiModel):
    """The job was created: where to follow it (also in ``Location``)."""

    job_id: str
    """The job's id."""
    status: JobStatusName
    """The job's state now."""
    status_url: str
    """Where to poll the job's snapshot: ``GET /api/jobs/{jobId}``."""
    stream_url: str
    """The job's event stream: ``GET /api/jobs/{jobId}/progress/stream``."""
    subscribe_token: str | None = None
    """Only when the server signs subscribe tokens: the token that reads this job
    (``?token=``)."""
    subscribe_token_expires_in: float | None = None
    """Only with ``subscribeToken``: seconds it stays valid."""


class ProgressRequest(_ApiModel):
    """``POST /api/jobs/{jobId}/progress``: one progress update of an external job."""

    percent: float = pydantic.Field(ge=0, le=100)
    """Progress in percent, 0-100."""
    stage: str = pydantic.Field(default="", max_length=MAX_STAGE_LENGTH)
    """What the job is doing now."""
    message: str | None = pydantic.Field(default=None, max_length=MAX_MESSAGE_LENGTH)
    """Optional free text."""
    reported_at: float | None = pydantic.Field(default=None, ge=0)
    """When the producer made the report, seconds since the Unix epoch; the server's
    receive time by default. At most 300 s ahead of the server's clock."""
    eta_seconds: float | None = pydantic.Field(default=None, ge=0, lt=1e9)
    """The producer's own estimate of the seconds left; it wins over the server's
    ``etaSeconds`` (computed from the job's rate) in the snapshot."""
    reset: bool = False
    """The job starts over (a new attempt): its percent may go down. Without it a lower
    percent than the job's is not published (the higher one is kept, and counted); with it
    the snapshot's ``attempt`` grows by one."""


class BatchUpdate(ProgressRequest):
    """One update of ``POST /api/progress``: a progress update with its ``jobId``."""

    job_id: str = pydantic.Field(json_schema_extra=JOB_ID_SCHEMA)
    """The external job the update is for."""


class BatchRequest(pydantic.RootModel[list[BatchUpdate]]):
    """``POST /api/progress``: updates for many jobs, a JSON array (or NDJSON, one update per
    line, with ``Content-Type: application/x-ndjson``)."""

    model_config = pydantic.ConfigDict(json_schema_extra=_commonmark)


class AcceptedResponse(_ApiModel):
    """The update is in the update buffer; it reaches the store and the streams within a
    flush interval."""

    accepted: int
    """Updates accepted (1)."""


class LineError(_ApiModel):
    """Why one update of a batch was refused."""

    line: int
    """The update's 1-based line: the NDJSON line, or the array index + 1."""
    field: str
    """The field at fault (``body`` when the line is not a JSON object)."""
    reason: str
    """What is wrong."""


class BatchResponse(_ApiModel):
    """What the batch did: the good updates are applied, each bad one is named."""

    accepted: int
    """Updates handed to the update buffer."""
    errors: list[LineError]
    """One entry per refused update."""
    unknown_jobs: list[str]
    """Ids of jobs that are not registered (their updates were not applied)."""
    finished_jobs: list[str]
    """Ids of jobs already in a terminal state (their updates were ignored)."""


class CompleteJobRequest(_ApiModel):
    """``POST /api/jobs/{jobId}/complete``: the job's result (the body may be empty)."""

    result: Any = None
    """The job's result: any JSON value; null by default."""


class CancelJobRequest(_ApiModel):
    """``POST /api/jobs/{jobId}/cancel``: why the job is cancelled (the body may be empty)."""

    reason: str | None = pydantic.Field(default=None, max_length=MAX_MESSAGE_LENGTH)
    """Why the job is cancelled; it becomes the job's ``error``."""


class FailJobRequest(_ApiModel):
    """``POST /api/jobs/{jobId}/fail``: why the job failed."""

    error: str = pydantic.Field(
        min_length=1, max_length=MAX_MESSAGE_LENGTH, json_schema_extra={"pattern": NOT_BLANK}
    )
    """Why the job failed (not blank)."""


class SubscribeTokenResponse(_ApiModel):
    """A fresh subscribe token for the job."""

    job_id: str
    """The job's id."""
    subscribe_token: str
    """The token that reads this job (``?token=``) and no other."""
    subscribe_token_expires_in: float
    """Seconds the token stays valid."""


class ErrorResponse(_ApiModel):
    """Every 4xx and 5xx body: a short error, the reason, and the field at fault if any."""

    error: str
    """A short name of the error (``invalid request``, ``job not found``...)."""
    code: str = pydantic.Field(json_schema_extra={"enum": [error.code for error in ERRORS]})
    """Machine-readable: what clients match on (``invalid_request``, ``job_not_found``...;
    the table of codes and statuses is ``progress_sync._contract.ERRORS``)."""
    detail: str
    """What is wrong and what to do."""
    field: str | None
    """The field, query parameter or header at fault (``jobId``, ``body``, ``token``,
    ``Authorization``...), or null."""
    job_status: JobStatusName | None = None
    """Only with ``job_finished``: the status the job ended with."""


class _QueryModel(pydantic.BaseModel):
    # A query string is text: numbers are parsed from it (``?limit=10``), unlike JSON bodies.
    # Names are camelCase only, as in bodies.
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
        use_attribute_docstrings=True,
        field_title_generator=_title,
        json_schema_extra=_commonmark,
    )


class StreamQuery(_QueryModel):
    """Query of ``GET /api/jobs/{jobId}/progress/stream``."""

    # Other parameters (the subscribe ``token``, a cache buster) are not this route's business.
    model_config = pydantic.ConfigDict(extra="ignore")

    last_event_id: str | None = None
    """The last event id the client has, for a first connection that cannot send the
    ``Last-Event-ID`` header (EventSource cannot set headers); the header wins when both are
    sent. A malformed, unknown or stale id gets the current snapshot."""
    min_interval_ms: int = pydantic.Field(default=0, ge=0, le=MAX_MIN_INTERVAL_MS)
    """At most one ``job-progress`` event per job per this many milliseconds for this
    subscriber (0-60000, default 0: every change). A change that comes sooner is held and
    replaced by any later one, so the subscriber always gets the job's latest state; terminal
    events and ``job-error`` are never delayed."""


class MultiStreamQuery(StreamQuery):
    """Query of ``GET /api/progress/stream``."""

    job_ids: str = pydantic.Field(
        min_length=1,
        json_schema_extra={"pattern": rf"^\s*{_ID}\s*(?:,\s*{_ID}\s*)*$"},
    )
    """The jobs to follow, comma-separated (``a,b,c``), at most ``--max-stream-jobs``
    (default 100) of them."""

    @pydantic.field_validator("job_ids", mode="before")
    @classmethod
    def _one_parameter(cls, value: object) -> object:
        # quart-schema hands a repeated parameter (jobIds=a&jobIds=b) over as a list.
        if isinstance(value, list):
            raise ValueError("give jobIds once, with the ids separated by commas: jobIds=a,b,c")
        return value


class ListJobsQuery(_QueryModel):
    """Query of ``GET /api/jobs``."""

    status: str | None = pydantic.Field(
        default=None, json_schema_extra={"enum": [*typing.get_args(JobStatusName), None]}
    )
    """Only jobs in this state; aliases such as ``pending`` or ``succeeded`` are accepted
    too. All jobs by default."""
    offset: int = pydantic.Field(default=0, ge=0)
    """How many matching jobs to skip."""
    limit: int = pydantic.Field(default=100, ge=1, le=1000)
    """The most jobs in the page, 1-1000."""


class JobSnapshotBody(_ApiModel):
    """A job's snapshot: ``GET /api/jobs/{jobId}``, and the data of every stream event that
    carries the job's state."""

    # The OpenAPI component keeps the name clients know (the class is named apart from the
    # pipeline's JobSnapshot, the value this documents).
    model_config = pydantic.ConfigDict(title="JobSnapshot")

    job_id: str
    """The job's id."""
    status: JobStatusName
    """The job's state; ``completed``, ``failed`` and ``cancelled`` are terminal."""
    percent: float = pydantic.Field(ge=0, le=100)
    """Progress in percent, 0-100."""
    stage: str
    """What the job is doing."""
    message: str | None
    """The latest free-text message, or null."""
    seq: int = pydantic.Field(ge=1)
    """The job's version number: strictly increasing, it is the event ``id`` of the
    job's stream and the ``ETag`` of its snapshot."""
    created_at: str
    """When the job was registered (ISO-8601, UTC)."""
    updated_at: str
    """When the job last changed (ISO-8601, UTC)."""
    reported_at: float
    """When the producer made the latest report, seconds since the Unix epoch."""
    kind: str | None
    """The job kind for jobs the server runs; null for external jobs."""
    error: str | None
    """Why the job failed (or was cancelled), else null."""
    result: Any
    """The result of a completed job (any JSON value), else null."""
    heartbeat_timeout_s: float | None = None
    """The job's lease in seconds (``heartbeatTimeoutS`` at registration), or null."""
    rate: float | None = None
    """Running jobs: the smoothed speed in percent per second (an EWMA with a 10 s time
    constant over samples of at least 1 s of producer time; pauses left out), to 4
    decimals; null before the first sample and in terminal states."""
    eta_seconds: float | None = None
    """Running jobs: seconds left until 100% at ``rate`` (to 0.1 s), or the producer's own
    ``etaSeconds``; null until 2 s of advancing history, while the job is not advancing, and
    in terminal states."""
    attempt: int = pydantic.Field(default=1, ge=1)
    """1, plus one per progress report sent with ``reset``: percent never goes down within
    an attempt; a lower percent is published only with a higher attempt."""


class JobListResponse(_ApiModel):
    """A page of jobs, newest first."""

    jobs: list[JobSnapshotBody]
    """The snapshots of the page."""
    total: int
    """How many jobs match in all."""
    offset: int
    """The page's offset."""
    limit: int
    """The page's size limit."""
    next_offset: int | None
    """The offset of the next page, or null on the last page."""


class StoreHealth(_ApiModel):
    """The export store's counters (``ExportStore.statistics()``)."""

    backend: str
    """The store's class (``MemoryStore``, ``RedisStore``)."""
    available: bool
    """False while the store cannot be reached."""
    jobs: int
    """Jobs held now."""
    subscribers: int
    """Subscriptions open now."""
    writes: int
    """Write operations so far."""
    ignored_terminal: int
    """Updates that arrived after their job's terminal state, ignored."""
    unavailable_errors: int
    """Operations that failed because the store could not be reached."""
    resyncs: int
    """Times the store re-read its subscribed jobs after (re)connecting."""
    leases_expired: int = 0
    """Jobs this server process ended ``failed`` because their lease expired."""
    lower_percent_kept: int = 0
    """Progress updates with a lower percent and no ``reset``: the higher percent was kept."""


class SinkHealth(_ApiModel):
    """The update buffer's counters (``UpdateSink.statistics()``)."""

    reports_received: int
    """Progress reports accepted."""
    coalesced: int
    """Reports replaced by a later one for the same job before being written."""
    overflowed: int
    """Reports that found the buffer's channel full (kept, coalesced, in its overflow map)."""
    store_writes: int
    """Store writes made for progress."""
    pending: int
    """Reports waiting to be written now (the buffer depth)."""
    failed_writes: int
    """Flushes that failed."""
    last_error: str | None
    """Why a flush failed by an unexpected error, or null."""


class HealthResponse(_ApiModel):
    """The server's health and the pipeline's counters."""

    status: Literal["ok", "degraded", "unhealthy", "draining"]
    """``ok``; ``degraded`` (still 200) while the store cannot be reached; ``unhealthy``
    (503) while the update buffer cannot deliver; ``draining`` (503) during a shutdown."""
    reason: str | None
    """Why the status is not ``ok``, or null."""
    sync_mode: Literal["batched", "direct"]
    """How reports reach the store: through the update buffer, or one write each."""
    active_jobs: int
    """Jobs queued or running in this server's job runner."""
    open_streams: int
    """SSE streams open on this server process."""
    store: StoreHealth
    """The export store's counters."""
    sink: SinkHealth
    """The update buffer's counters."""


class JobErrorEvent(_ApiModel):
    """The data of a ``job-error`` event (``id: 0`` for the job): the job was not registered
    in time, was not found (multi-job stream), or left the store while followed (deleted, or
    expired): nothing more will come of it."""

    job_id: str
    """The job's id."""
    error: str
    """``job not registered``, ``job not found`` or ``job gone``."""
    detail: str
    """What is wrong and what to do."""


class ReconnectEvent(_ApiModel):
    """The data of a ``reconnect`` event: the server is shutting down before the job ended;
    reconnect after ``retryMs`` (the ``retry:`` field sent with it)."""

    reason: str
    """``server shutting down``."""
    job_id: str | None = None
    """The job (single-job stream)."""
    job_ids: list[str] | None = None
    """The jobs (multi-job stream)."""
    retry_ms: int
    """Milliseconds to wait before reconnecting."""
