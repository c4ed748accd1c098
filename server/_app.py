"""The Quart-Trio application: routes over the store, the update sink and the job runner."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from quart import Response, jsonify, url_for
from quart_schema import QuartSchema, validate_request
from quart_trio import QuartTrio

from pipeline import ExportStore, JobRunner, UpdateSink, check_job_id

from ._config import ServerConfig
from ._cors import install_cors
from ._errors import install_error_handlers
from ._guard import ConnectionGuard
from ._hub import StreamHub
from ._metrics import Metrics
from ._models import CreateJobRequest
from ._ops_routes import install_ops_routes
from ._read_routes import install_read_routes
from ._stream_routes import install_stream_routes

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
        ``POST /api/jobs``: start a job; 201 ``{jobId, status, statusUrl, streamUrl}``.
        ``GET /api/jobs``: the jobs, a page at a time (``_read_routes``).
        ``GET /api/jobs/{jobId}``: the job's snapshot with an ETag (``_read_routes``).
        ``GET /api/jobs/{jobId}/progress/stream``: the job's SSE stream (``_stream_routes``).
        ``GET /api/progress/stream?jobIds=a,b``: several jobs' SSE stream (``_stream_routes``).
        ``POST /api/jobs/{jobId}/cancel``: cancel; 202 with the ``cancelled`` snapshot.
        ``GET /healthz``, ``GET /metrics``: health and Prometheus metrics (``_ops_routes``).
        ``GET /openapi.json``, ``/docs``: the OpenAPI document (quart-schema).

    Every request body is limited to ``config.max_body_bytes`` (413 beyond), every write to a
    client to ``config.send_timeout`` seconds (``ConnectionGuard``), and cross-origin use to
    ``config.cors_origins``.
    """
    app = QuartTrio(__name__)
    app.config["JSON_SORT_KEYS"] = False
    config = services.config
    app.config["MAX_CONTENT_LENGTH"] = config.max_body_bytes
    QuartSchema(app, info={"title": "progress-sync", "version": "0.1.0"})
    install_error_handlers(app)
    install_cors(app, config.cors_origins)
    runner = services.runner

    @app.post("/api/jobs")
    @validate_request(CreateJobRequest)
    async def create_job(data: CreateJobRequest) -> tuple[Response, int, dict[str, str]]:
        """Start a job of a known kind; 201 with where to follow it."""
        if data.job_id is not None:
            check_job_id(data.job_id)
        snapshot = await runner.submit(data.kind, data.params, job_id=data.job_id)
        status_url = url_for("get_job", job_id=snapshot.job_id)
        body = {
            "jobId": snapshot.job_id,
            "status": snapshot.status.value,
            "statusUrl": status_url,
            "streamUrl": url_for("stream_job", job_id=snapshot.job_id),
        }
        return jsonify(body), 201, {"Location": status_url}

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
