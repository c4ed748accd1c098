"""The Quart-Trio application: routes over the store, the update sink and the job runner."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

from hypercorn.typing import ASGIFramework
from progress_sync import (
    ExportStore,
    InvalidFieldError,
    JobRunner,
    UpdateSink,
    check_job_id,
    check_text,
)
from progress_sync._contract import (
    JOB_CANCEL_PATH,
    JOBS_PATH,
    quart_rule,
)
from quart_schema import (
    document_request,
    document_response,
    tag,
    validate_request,
    validate_response,
)
from quart_trio import QuartTrio

from ._auth import document_auth, install_auth
from ._config import ServerConfig
from ._cors import install_cors
from ._errors import install_error_handlers
from ._guard import ConnectionGuard
from ._hub import StreamHub
from ._ingest import created_response, install_ingest_routes, read_object, register_external_job
from ._ingest_asgi import ASGIApp, IngestFastPath
from ._metrics import Metrics
from ._models import CancelJobRequest, CreateJobRequest, CreateJobResponse, JobSnapshot
from ._openapi import LocationHeader, error_responses, install_openapi
from ._ops_routes import install_ops_routes
from ._read_routes import install_read_routes
from ._request import ApiRequest
from ._stream_refusal import install_stream_refusal
from ._stream_routes import install_stream_routes
from ._web import install_web_routes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    """What the app serves from; opened and owned by ``serve`` (or by a test).

    Attributes:
        config: the server's settings.
        store: the export store.
        sink: where reports go (the update buffer, or direct sync).
        runner: the job runner.
        streams: the server's open SSE streams (admission, shutdown).
        metrics: the server's Prometheus metrics.
    """

    config: ServerConfig
    store: ExportStore
    sink: UpdateSink
    runner: JobRunner
    streams: StreamHub = field(default_factory=StreamHub)
    metrics: Metrics = field(default_factory=Metrics)


def create_app(services: Services) -> QuartTrio:
    """Build the app. The services must stay open while it serves.

    Routes:
        ``GET /``, ``/static/...``: the web page with live progress bars (see ``_web``).
        ``POST /api/jobs``: start a job (with ``kind``) or register an external job (without);
            201 ``{jobId, status, statusUrl, streamUrl}`` (+ ``subscribeToken``).
        ``GET /api/jobs``: the jobs, a page at a time (``_read_routes``).
        ``GET /api/jobs/{jobId}``: the job's snapshot with an ETag (``_read_routes``).
        ``GET /api/jobs/{jobId}/progress/stream``: the job's SSE stream (``_stream_routes``).
        ``GET /api/progress/stream?jobIds=a,b``: several jobs' SSE stream (``_stream_routes``).
        ``POST /api/jobs/{jobId}/cancel``: cancel; 202 with the ``cancelled`` snapshot.
        ``GET /healthz``, ``GET /metrics``: health and Prometheus metrics (``_ops_routes``).
        ``GET /openapi.json``, ``/docs``: the OpenAPI document (quart-schema, ``_openapi``).
        The ingest routes of ``install_ingest_routes``; authentication by ``install_auth``.

    Every request body is limited to ``config.max_body_bytes`` (413 beyond), every write to a
    client to ``config.send_timeout`` seconds (``ConnectionGuard``), and cross-origin use to
    ``config.cors_origins``.
    """
    app = QuartTrio(__name__)
    app.request_class = ApiRequest
    config = services.config
    install_openapi(app, job_kinds=list(services.runner.kinds))
    # Bodies keep their keys in the order written (jobId first), as the SSE data does.
    # app.json is typed as the JSONProvider base; Quart's default provider has sort_keys
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_error_handlers(app)
    install_cors(app, config.cors_origins)
    install_web_routes(app, config)
    install_stream_refusal(app, config)
    store = services.store
    runner = services.runner
    auth = install_auth(app, config)
    ingest = install_ingest_routes(app, services, auth)

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
    @validate_response(JobSnapshot, 202)
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

    install_read_routes(app, services)
    install_stream_routes(app, services)
    install_ops_routes(app, services)
    # Quart's documented way to wrap its ASGI app in middleware; mypy sees a method
    # IngestFastPath speaks plain ASGI dicts; the casts meet Hypercorn's TypedDict signature.
    fast_path = IngestFastPath(
        cast("ASGIApp", app.asgi_app), ingest=ingest, auth=auth, config=config, hub=services.streams
    )
    app.asgi_app = ConnectionGuard(  # type: ignore[method-assign]
        cast("ASGIFramework", fast_path),
        send_timeout=config.send_timeout,
        hub=services.streams,
        metrics=services.metrics,
    )
    return app
