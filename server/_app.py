"""The Quart-Trio application: routes over the store, the update sink and the job runner."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

from quart import Response, jsonify
from quart_schema import QuartSchema, validate_request
from quart_trio import QuartTrio

from pipeline import ExportStore, InvalidUpdateError, JobRunner, UpdateSink, check_job_id

from ._auth import install_auth
from ._config import ServerConfig
from ._cors import install_cors
from ._errors import install_error_handlers
from ._guard import ConnectionGuard
from ._hub import StreamHub
from ._ingest import created_response, install_ingest_routes, register_external_job
from ._metrics import Metrics
from ._models import CreateJobRequest
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
        ``GET /openapi.json``, ``/docs``: the OpenAPI document (quart-schema).
        The ingest routes of ``install_ingest_routes``; authentication by ``install_auth``.

    Every request body is limited to ``config.max_body_bytes`` (413 beyond), every write to a
    client to ``config.send_timeout`` seconds (``ConnectionGuard``), and cross-origin use to
    ``config.cors_origins``.
    """
    app = QuartTrio(__name__)
    app.request_class = ApiRequest
    config = services.config
    QuartSchema(app, info={"title": "progress-sync", "version": "0.1.0"})
    # Bodies keep their keys in the order written (jobId first), as the SSE data does.
    app.json.sort_keys = False  # type: ignore[attr-defined]
    install_error_handlers(app)
    install_cors(app, config.cors_origins)
    install_web_routes(app, config)
    install_stream_refusal(app, config)
    store = services.store
    runner = services.runner
    auth = install_auth(app, config)
    install_ingest_routes(app, services, auth)

    @app.post("/api/jobs")
    @validate_request(CreateJobRequest)
    async def create_job(data: CreateJobRequest) -> tuple[Response, int, dict[str, str]]:
        """Start a job of a known kind, or register an external one; 201 with where to follow it."""
        job_id = check_job_id(data.job_id) if data.job_id is not None else uuid.uuid4().hex
        if data.kind is None:
            snapshot = await register_external_job(store, data, job_id=job_id)
        else:
            for name in ("status", "stage", "message"):
                if name in data.model_fields_set:
                    raise InvalidUpdateError(name, "only external jobs (without kind) take it")
            snapshot = await runner.submit(data.kind, data.params, job_id=job_id)
        return created_response(snapshot, auth)

    @app.post("/api/jobs/<job_id>/cancel")
    async def cancel_job(job_id: str) -> tuple[Response, int]:
        """Cancel a queued or running job; 202 once it is stored ``cancelled``."""
        check_job_id(job_id)
        snapshot = await runner.cancel(job_id)
        return jsonify(snapshot.to_dict()), 202

    install_read_routes(app, services)
    install_stream_routes(app, services)
    install_ops_routes(app, services)
    app.asgi_app = ConnectionGuard(  # type: ignore[method-assign]
        app.asgi_app,
        send_timeout=config.send_timeout,
        hub=services.streams,
        metrics=services.metrics,
    )
    return app
