"""Request and response bodies of the HTTP API (pydantic models with camelCase aliases)."""

from __future__ import annotations

from typing import Any

import pydantic
from pydantic.alias_generators import to_camel


class _ApiModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid"
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
