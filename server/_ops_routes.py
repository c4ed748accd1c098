"""Operations: ``GET /healthz`` and ``GET /metrics`` (Prometheus text format), as the
blueprint ``ops`` of module-level routes that read the app's services."""

from __future__ import annotations

from typing import Any

from progress_sync._contract import (
    HEALTH_PATH,
    METRICS_PATH,
    quart_rule,
)
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Blueprint, Response
from quart_schema import document_response, tag, validate_response

from ._models import HealthResponse
from ._openapi import PrometheusText
from ._services import current_services

ops = Blueprint("ops", __name__)
"""``GET /healthz`` and ``GET /metrics``."""


@ops.get(quart_rule(HEALTH_PATH))
@tag(["operations"])
@validate_response(HealthResponse, 200)
@validate_response(HealthResponse, 503)
async def healthz() -> tuple[dict[str, Any], int]:
    """Health and the pipeline's counters.

    ``status`` is ``ok`` (200); ``degraded`` (still 200: the process serves, streams keep
    their heartbeats) while the store cannot be reached (``store.available``);
    ``unhealthy`` (503, with ``reason``) while the update buffer cannot deliver: a flush
    failed by an unexpected error (logged with its traceback) or its drain task is not
    running; ``draining`` (503) once a shutdown has begun, so a load balancer stops
    sending new clients.
    """
    services = current_services()
    store, runner, hub = services.store, services.runner, services.streams
    store_stats = store.statistics()
    sink_stats = services.sink.statistics()
    status, reason, code = "ok", None, 200
    if sink_stats.last_error is not None:
        status, reason, code = (
            "unhealthy",
            f"a flush of the update buffer failed: {sink_stats.last_error}",
            503,
        )
    elif not sink_stats.draining:
        status, reason, code = (
            "unhealthy",
            "the update buffer's drain task is not running",
            503,
        )
    elif hub.stopping:
        status, reason, code = "draining", "the server is shutting down", 503
    elif not store_stats.available:
        status, reason = "degraded", "the store cannot be reached; retrying"
    body = {
        "status": status,
        "reason": reason,
        "syncMode": services.config.sync_mode.value,
        "activeJobs": runner.active_jobs,
        "openStreams": hub.admitted,
        "store": {
            "backend": type(store).__name__,
            "available": store_stats.available,
            "jobs": store_stats.jobs,
            "subscribers": store_stats.subscribers,
            "writes": store_stats.writes,
            "ignoredTerminal": store_stats.ignored_terminal,
            "unavailableErrors": store_stats.unavailable_errors,
            "resyncs": store_stats.resyncs,
            "leasesExpired": store_stats.leases_expired,
            "lowerPercentKept": store_stats.lower_percent_kept,
        },
        "sink": {
            "reportsReceived": sink_stats.reports_received,
            "coalesced": sink_stats.coalesced,
            "overflowed": sink_stats.overflowed,
            "storeWrites": sink_stats.store_writes,
            "pending": sink_stats.pending,
            "failedWrites": sink_stats.failed_writes,
            "lastError": sink_stats.last_error,
        },
    }
    return body, code


@ops.get(quart_rule(METRICS_PATH))
@tag(["operations"])
@document_response(PrometheusText, 200)
async def metrics() -> Response:
    """The server's metrics in the Prometheus text format (prometheus-client)."""
    registry = current_services().metrics.registry
    return Response(generate_latest(registry), 200, {"Content-Type": CONTENT_TYPE_LATEST})
