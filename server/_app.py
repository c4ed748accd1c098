"""The Quart-Trio application: routes over the store, the update sink and the job runner."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from quart import Response, jsonify, make_response
from quart_schema import QuartSchema, validate_request
from quart_trio import QuartTrio

from pipeline import ExportStore, InvalidUpdateError, JobRunner, UpdateSink, check_job_id

from ._auth import install_auth
from ._config import ServerConfig
from ._errors import install_error_handlers
from ._ingest import created_response, install_ingest_routes, register_external_job
from ._models import CreateJobRequest
from ._sse import SSE_HEADERS, job_event_stream
from ._stream_refusal import install_stream_refusal
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
    """

    config: ServerConfig
    store: ExportStore
    sink: UpdateSink
    runner: JobRunner


def create_app(services: Services) -> QuartTrio:
    """Build the app. The services must stay open while it serves.

    Routes:
        ``GET /``, ``/static/...``: the web page with live progress bars (see ``_web``).
        ``POST /api/jobs``: start a job (with ``kind``) or register an external job (without);
            201 ``{jobId, status, statusUrl, streamUrl}`` (+ ``subscribeToken``).
        ``GET /api/jobs/{jobId}``: the job's snapshot (the polling fallback); 404 if unknown.
        ``GET /api/jobs/{jobId}/progress/stream``: the job's SSE stream.
        ``POST /api/jobs/{jobId}/cancel``: cancel; 202 with the ``cancelled`` snapshot.
        ``GET /healthz``: liveness and the pipeline's counters.
        ``GET /openapi.json``, ``/docs``: the OpenAPI document (quart-schema).
        The ingest routes of ``install_ingest_routes``; authentication by ``install_auth``.
    """
    app = QuartTrio(__name__)
    app.config["JSON_SORT_KEYS"] = False
    QuartSchema(app, info={"title": "progress-sync", "version": "0.1.0"})
    install_error_handlers(app)
    install_web_routes(app)
    install_stream_refusal(app, services.config)
    config = services.config
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

    @app.get("/api/jobs/<job_id>")
    async def get_job(job_id: str) -> Response:
        """The job's current snapshot: the polling fallback."""
        check_job_id(job_id)
        snapshot = await store.get(job_id)
        return jsonify(snapshot.to_dict())

    @app.get("/api/jobs/<job_id>/progress/stream")
    async def stream_job(job_id: str) -> Response:
        """The job's progress as server-sent events (see ``job_event_stream``)."""
        check_job_id(job_id)
        events = job_event_stream(
            store,
            job_id,
            registration_timeout=config.registration_timeout,
            retry_ms=config.retry_ms,
            heartbeat_interval=config.heartbeat_interval,
        )
        response: Response = await make_response(events, 200, SSE_HEADERS)
        # Quart cuts responses after RESPONSE_TIMEOUT (60 s) unless told otherwise.
        response.timeout = None
        return response

    @app.post("/api/jobs/<job_id>/cancel")
    async def cancel_job(job_id: str) -> tuple[Response, int]:
        """Cancel a queued or running job; 202 once it is stored ``cancelled``."""
        check_job_id(job_id)
        snapshot = await runner.cancel(job_id)
        return jsonify(snapshot.to_dict()), 202

    @app.get("/healthz")
    async def healthz() -> Response:
        """``{"status": "ok"|"degraded", "syncMode", "store": {...}, "sink": {...}}``.

        ``degraded`` (still 200: the process serves, streams keep their heartbeats) while the
        store cannot be reached; ``store.available`` says the same, and
        ``store.unavailableErrors`` counts the operations that failed because of it.
        """
        store_stats = store.statistics()
        sink_stats = services.sink.statistics()
        return jsonify(
            {
                "status": "ok" if store_stats.available else "degraded",
                "syncMode": config.sync_mode.value,
                "activeJobs": runner.active_jobs,
                "store": {
                    "backend": type(store).__name__,
                    "available": store_stats.available,
                    "jobs": store_stats.jobs,
                    "subscribers": store_stats.subscribers,
                    "writes": store_stats.writes,
                    "ignoredTerminal": store_stats.ignored_terminal,
                    "unavailableErrors": store_stats.unavailable_errors,
                    "resyncs": store_stats.resyncs,
                },
                "sink": {
                    "reportsReceived": sink_stats.reports_received,
                    "coalesced": sink_stats.coalesced,
                    "overflowed": sink_stats.overflowed,
                    "storeWrites": sink_stats.store_writes,
                    "pending": sink_stats.pending,
                    "failedWrites": sink_stats.failed_writes,
                },
            }
        )

    return app
