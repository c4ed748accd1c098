"""The ingest body's schema, written once: msgspec Structs that decode and validate in one pass.

``ProgressBody`` is one update of ``POST /api/jobs/{jobId}/progress`` (``jobId`` optional, the
URL names the job); ``BatchUpdateBody`` one update of ``POST /api/progress`` and of a WebSocket
frame of ``GET /api/progress/ws`` (``jobId`` required). The decoders below turn a body into
these objects, checking every type and bound while they parse
(https://jcristharif.com/msgspec/structs.html, https://jcristharif.com/msgspec/constraints.html).

A body they refuse is explained by ``progress_sync.server._ingest.parse_update``, whose
per-field checks (the pipeline's ``check_progress``, ``check_job_id``, ``check_reported_at``)
name the field at fault and the reason; the decoders are the fast path for bodies that pass.
The OpenAPI document's schemas of these bodies (``_models.ProgressRequest``, ``BatchUpdate``)
are checked against ``msgspec.json.schema`` of these Structs by tests/server/test_openapi.py.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from progress_sync import JOB_ID_PATTERN, MAX_MESSAGE_LENGTH, MAX_STAGE_LENGTH

JobId = Annotated[
    str, msgspec.Meta(pattern=f"^{JOB_ID_PATTERN.pattern}$", min_length=1, max_length=128)
]
Percent = Annotated[float, msgspec.Meta(ge=0, le=100)]
Stage = Annotated[str, msgspec.Meta(max_length=MAX_STAGE_LENGTH)]
Message = Annotated[str, msgspec.Meta(max_length=MAX_MESSAGE_LENGTH)]
ReportedAt = Annotated[float, msgspec.Meta(ge=0)]
EtaSeconds = Annotated[float, msgspec.Meta(ge=0, lt=1e9)]


class ProgressBody(msgspec.Struct, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """One progress update: ``{"percent", "stage"?, "message"?, "reportedAt"?, "etaSeconds"?,
    "reset"?, "jobId"?}``.

    Attributes:
        percent: progress in percent, 0-100 (a JSON number; ``true`` or ``"5"`` are refused).
        stage: what the job is doing, at most ``MAX_STAGE_LENGTH`` characters; ``""`` by default.
        message: optional free text, at most ``MAX_MESSAGE_LENGTH`` characters.
        reported_at: when the producer made the report, seconds since the Unix epoch; None
            for the server's receive time.
        eta_seconds: the producer's own estimate of the seconds left, or None.
        reset: the job starts over (a new attempt): a lower percent is published.
        job_id: the job (``UNSET`` when the URL names it).
    """

    percent: Percent
    stage: Stage = ""
    message: Message | None = None
    reported_at: ReportedAt | None = None
    eta_seconds: EtaSeconds | None = None
    reset: bool = False
    job_id: JobId | msgspec.UnsetType = msgspec.UNSET


class BatchUpdateBody(ProgressBody, kw_only=True):
    """One update of a batch: ``ProgressBody`` whose ``jobId`` is required."""

    job_id: JobId


PROGRESS_DECODER = msgspec.json.Decoder(ProgressBody)
"""``POST /api/jobs/{jobId}/progress``'s body."""

BATCH_DECODER = msgspec.json.Decoder(list[BatchUpdateBody])
"""A JSON array of updates (``POST /api/progress``, a WebSocket frame)."""

LINE_DECODER = msgspec.json.Decoder(BatchUpdateBody)
"""One NDJSON line; its ``decode_lines`` reads a whole NDJSON body (blank lines skipped)."""

DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
"""What the decoders raise for a body they refuse (``ValidationError`` is a ``DecodeError``)."""

encode = msgspec.json.Encoder().encode
"""JSON-encode an answer (dicts keep their key order)."""
