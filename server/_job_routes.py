"""The job routes: ``POST /api/jobs`` (start a job, or register an external one) and
``POST /api/jobs/{jobId}/cancel``."""

from __future__ import annotations

import uuid
from typing import Any

from progress_sync import InvalidFieldError, check_job_id, check_text
from progress_sync._contract import JOB_CANCEL_PATH, JOBS_PATH, quart_rule
from quart_schema import (
    document_request,
    document_response,
    tag,
    validate_request,
    validate_response,
)
from quart_trio import QuartTrio

from ._auth import Auth, document_auth
from ._ingest import created_response, read_object, register_external_job
from ._models import CancelJobRequest, CreateJobRequest, CreateJobResponse, JobSnapshotBody
from ._openapi import LocationHeader, error_responses
from ._services import Services


def install_job_routes(app: QuartTrio, services: Services, auth: Auth) -> None:
    """Mount ``POST /api/jobs`` and ``POST /api/jobs/{jobId}/cancel`` on ``app``."""
    config = services.config
    store = services.store
    runner = services.runner

    @app.post(quart_rule(JOBS_PATH))
    @tag(["jobs"])
    @document_auth(config, "produce")
    @error_responses(400, 409, 413, 503)
    @document_response(CreateJobResponse, 201, LocationHeader)
    @validate_response(CreateJobResponse, 201)
    @validate_request(CreateJobRequest)
    async def create_job(data: CreateJobRequest) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Start a job of a known kind, or register an external job.

        With ``kind`` the server runs the job; without it the job is *external* and a
        producer reports its progress (``POST /api/jobs/{jobId}/progress``). 400 for an
        unknown kind or bad params; 409 if ``jobId`` is taken; 503 with ``Retry-After`` when
        the job queue is full.
        """
        job_id = check_job_id(data.job_id) if data.job_id is not None else uuid.uuid4().hex
        if data.kind is None:
            snapshot = await register_external_job(store, data, job_id=job_id)
        else:
            for name, field_name in (
                ("status", "status"),
                ("stage", "stage"),
                ("message", "message"),
                ("heartbeat_timeout_s", "heartbeatTimeoutS"),
            ):
                if name in data.model_fields_set:
                    raise InvalidFieldError(field_name, "only external jobs (without kind) take it")
            snapshot = await runner.submit(data.kind, data.params, job_id=job_id)
        return created_response(snapshot, auth)

    @app.post(quart_rule(JOB_CANCEL_PATH))
    @tag(["jobs"])
    @document_auth(config, "produce")
    @error_responses(400, 404, 409, 413, 503)
    @validate_response(JobSnapshotBody, 202)
    @document_request(CancelJobRequest)
    async def cancel_job(job_id: str) -> tuple[dict[str, Any], int]:
        """Cancel a queued or running job.

        202 with the ``cancelled`` snapshot once it is stored; 409 if the job has ended. The
        body is optional: ``{"reason": "..."}`` becomes the job's ``error``.
        """
        check_job_id(job_id)
        body = await read_object(("reason",))
        reason = body.get("reason")
        if reason is not None:
            check_text("reason", reason)
        snapshot = await runner.cancel(job_id, reason=reason)
        return snapshot.to_dict(), 202
