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
    """``POST /api/jobs``: start a job of a known kind.

    Attributes:
        kind: the job kind (``"demo"``).
        params: the kind's parameters (for ``demo``: ``durationS``, ``updatesPerS``,
            ``failAtPercent``).
        job_id: ``jobId``, optional id to use; a random one by default.
    """

    kind: str = pydantic.Field(min_length=1, max_length=64)
    params: dict[str, Any] = pydantic.Field(default_factory=dict)
    job_id: str | None = None


class CreateJobResponse(_ApiModel):
    """``201`` to ``POST /api/jobs``: where to follow the new job."""

    job_id: str
    status: str
    status_url: str
    stream_url: str


class ErrorResponse(_ApiModel):
    """Every 4xx and 5xx body: a short error, the reason, and the field at fault if any."""

    error: str
    detail: str
    field: str | None = None
