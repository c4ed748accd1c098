"""Operations: ``GET /healthz`` and ``GET /metrics`` (Prometheus text format)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Response, jsonify

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from ._app import Services


def install_ops_routes(app: QuartTrio, services: Services) -> None:
    """Add ``GET /healthz`` and ``GET /metrics``."""
    config = services.config
    store = services.store
    runner = services.runner
    hub = services.streams
    registry = services.metrics.registry

    @app.get("/healthz")
    async def healthz() -> tuple[Response, int]:
        """Health and the pipeline's counters.

        200 ``{"status": "ok", ...}``; 503 ``{"status": "unhealthy", "reason", ...}`` while
        the update buffer cannot deliver (its latest flush failed, or its drain task is not
        running), and 503 ``{"status": "draining"}`` once a shutdown has begun, so a load
        balancer stops sending new clients.
        """
        store_stats = store.statistics()
        sink_stats = services.sink.statistics()
        status, reason = "ok", None
        if sink_stats.last_error is not None:
            status, reason = "unhealthy", f"the latest flush failed: {sink_stats.last_error}"
        elif not sink_stats.draining:
            status, reason = "unhealthy", "the update buffer's drain task is not running"
        elif hub.stopping:
            status, reason = "draining", "the server is shutting down"
        body = {
            "status": status,
            "reason": reason,
            "syncMode": config.sync_mode.value,
            "activeJobs": runner.active_jobs,
            "openStreams": hub.admitted,
            "store": {
                "jobs": store_stats.jobs,
                "subscribers": store_stats.subscribers,
                "writes": store_stats.writes,
                "ignoredTerminal": store_stats.ignored_terminal,
            },
            "sink": {
                "reportsReceived": sink_stats.reports_received,
                "coalesced": sink_stats.coalesced,
                "overflowed": sink_stats.overflowed,
                "storeWrites": sink_stats.store_writes,
                "failedWrites": sink_stats.failed_writes,
                "pending": sink_stats.pending,
                "lastError": sink_stats.last_error,
            },
        }
        return jsonify(body), 200 if status == "ok" else 503

    @app.get("/metrics")
    async def metrics() -> Response:
        """The server's metrics in the Prometheus text format (prometheus-client)."""
        return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})
