"""Request and response bodies of the HTTP API (pydantic models with camelCase aliases)."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic.alias_generators import to_camel


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
    )


class CreateJobRequest(_ApiModel):
    """``POST /api/jobs``: start a job of a known kind, or register an external job.

    With ``kind`` the server runs a job of that kind; without it the job is *external*: the
    server runs nothing and a producer reports its progress over HTTP.

    Attributes:
        kind: the job kind (``"demo"``), or None for an external job.
        params: the kind's parameters (for ``demo``: ``durationS``, ``updatesPerS``,
            ``failAtPercent``); jobs with a kind only.
        job_id: ``jobId``, optional id to use; a random one by default.
        status: external jobs only: the initial status, ``queued`` or ``running`` (default),
            or an alias (``pending``, ``in_progress``, ...).
        stage: external jobs only: the initial stage text.
        message: external jobs only: an initial message.
    """

    kind: str | None = pydantic.Field(default=None, min_length=1, max_length=64)
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    job_id: str | None = None
    status: str | None = pydantic.Field(default=None, max_length=64)
    stage: str | None = pydantic.Field(default=None, max_length=200)
    message: str | None = pydantic.Field(default=None, max_length=2000)


class CreateJobResponse(_ApiModel):
    """``201`` to ``POST /api/jobs``: where to follow the new job.

    ``subscribeToken`` (and ``subscribeTokenExpiresIn``, seconds) only when the server signs
    subscribe tokens.
    """

    job_id: str
    status: str
    status_url: str
    stream_url: str
    subscribe_token: str | None = None
    subscribe_token_expires_in: float | None = None


class ProgressRequest(_ApiModel):
    """``POST /api/jobs/{jobId}/progress``: one progress update of an external job.

    Attributes:
        percent: progress in percent, 0-100.
        stage: what the job is doing (at most 200 characters; default ``""``).
        message: optional free text (at most 2000 characters).
        reported_at: ``reportedAt``, when the producer made the report, seconds since the
            Unix epoch; the server's receive time by default.
    """

    percent: float = pydantic.Field(ge=0, le=100)
    stage: str = pydantic.Field(default="", max_length=200)
    message: str | None = pydantic.Field(default=None, max_length=2000)
    reported_at: float | None = None


class BatchUpdate(ProgressRequest):
    """One line of ``POST /api/progress``: an update with its ``jobId``."""

    job_id: str


class CompleteJobRequest(_ApiModel):
    """``POST /api/jobs/{jobId}/complete``: the job's JSON result, if any."""

    result: Any = None


class FailJobRequest(_ApiModel):
    """``POST /api/jobs/{jobId}/fail``: why the job failed (at most 2000 characters)."""

    error: str = pydantic.Field(min_length=1, max_length=2000)


class ErrorResponse(_ApiModel):
    """Every 4xx and 5xx body: a short error, the reason, and the field at fault if any."""

    error: str
    detail: str
    field: str | None = None


class _QueryModel(pydantic.BaseModel):
    # A query string is text: numbers are parsed from it (``?limit=10``), unlike JSON bodies.
    # Names are camelCase only, as in bodies.
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel,
        validate_by_alias=True,
        validate_by_name=False,
        extra="forbid",
    )


class StreamQuery(_QueryModel):
    """Query of ``GET /api/jobs/{jobId}/progress/stream``.

    Attributes:
        last_event_id: ``lastEventId``, the last event id the client has, for a first
            connection that cannot send the ``Last-Event-ID`` header (EventSource cannot set
            headers); the header wins when both are sent. A malformed id is ignored.
    """

    # Other parameters (the subscribe ``token``, a cache buster) are not this route's business.
    model_config = pydantic.ConfigDict(extra="ignore")

    last_event_id: str | None = None


class MultiStreamQuery(StreamQuery):
    """Query of ``GET /api/progress/stream``.

    Attributes:
        job_ids: ``jobIds``, the jobs to follow, comma-separated (``a,b,c``), at most
            ``max_stream_jobs`` of them.
        last_event_id: ``lastEventId``, as for the single-job stream.
    """

    job_ids: str = pydantic.Field(min_length=1)


class ListJobsQuery(_QueryModel):
    """Query of ``GET /api/jobs``.

    Attributes:
        status: only jobs in this state (``queued``, ``running``, ``completed``, ``failed``,
            ``cancelled``, or an alias such as ``pending``); all by default.
        offset: how many matching jobs to skip (default 0).
        limit: the most jobs in the page, 1-1000 (default 100).
    """

    status: str | None = None
    offset: int = pydantic.Field(default=0, ge=0)
    limit: int = pydantic.Field(default=100, ge=1, le=1000)


class JobSnapshotModel(_ApiModel):
    """A job's snapshot, as ``GET /api/jobs/{jobId}`` and every stream event carry it."""

    job_id: str
    status: str
    percent: float
    stage: str
    message: str | None
    seq: int
    created_at: str
    updated_at: str
    reported_at: float
    kind: str | None
    error: str | None
    result: Any


class JobListResponse(_ApiModel):
    """``GET /api/jobs``: a page of jobs, newest first.

    Attributes:
        jobs: the snapshots of the page.
        total: how many jobs match in all.
        offset: the page's offset.
        limit: the page's size limit.
        next_offset: ``nextOffset``, the offset of the next page, or None on the last page.
    """

    jobs: list[JobSnapshotModel]
    total: int
    offset: int
    limit: int
    next_offset: int | None
