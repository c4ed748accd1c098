"""The Quart-Trio application: routes over the store, the update sink and the job runner."""

from __future__ import annotations

import logging
from typing import cast

from hypercorn.typing import ASGIFramework
from quart_trio import QuartTrio

from ._auth import install_auth
from ._cors import install_cors
from ._errors import install_error_handlers
from ._guard import ConnectionGuard
from ._ingest import install_ingest_routes
from ._ingest_asgi import ASGIApp, IngestFastPath
from ._job_routes import install_job_routes
from ._openapi import install_openapi
from ._ops_routes import ops
from ._read_routes import install_read_routes
from ._request import ApiRequest
from ._seam import EndOfResponse
from ._services import SERVICES_KEY, Services
from ._web import web
from .sse._refusal import install_stream_refusal
from .sse._routes import install_stream_routes

logger = logging.getLogger(__name__)


def create_app(services: Services) -> QuartTrio:
    """Build the app. The services must stay open while it serves.

    Routes:
        ``GET /``, ``/static/...``: the web page with live progress bars (see ``_web``).
        ``POST /api/jobs``: start a job (with ``kind``) or register an external job (without,
            ``_job_routes``); 201 ``{jobId, status, statusUrl, streamUrl}`` (+ ``subscribeToken``).
        ``GET /api/jobs``: the jobs, a page at a time (``_read_routes``).
        ``GET /api/jobs/{jobId}``: the job's snapshot with an ETag (``_read_routes``).
        ``GET /api/jobs/{jobId}/progress/stream``: the job's SSE stream (``sse._routes``).
        ``GET /api/progress/stream?jobIds=a,b``: several jobs' SSE stream (``sse._routes``).
        ``POST /api/jobs/{jobId}/cancel``: cancel; 202 + ``cancelled`` snapshot (``_job_routes``).
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
    app.extensions[SERVICES_KEY] = services
    app.register_blueprint(web)
    install_stream_refusal(app, config)
    auth = install_auth(app, config)
    ingest = install_ingest_routes(app, services, auth)

    install_job_routes(app, services, auth)
    install_read_routes(app, services)
    install_stream_routes(app, services)
    app.register_blueprint(ops)
    # Quart's documented way to wrap its ASGI app in middleware; mypy sees a method
    # IngestFastPath speaks plain ASGI dicts; the casts meet Hypercorn's TypedDict signature.
    fast_path = IngestFastPath(
        cast("ASGIApp", app.asgi_app), ingest=ingest, auth=auth, config=config, hub=services.streams
    )
    app.asgi_app = ConnectionGuard(  # type: ignore[method-assign]
        EndOfResponse(cast("ASGIFramework", fast_path)),
        send_timeout=config.send_timeout,
        hub=services.streams,
        metrics=services.metrics,
    )
    return app
