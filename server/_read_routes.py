"""Reading jobs without a stream: one job's snapshot (with ETag) and the list of jobs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from progress_sync import JobSnapshot, check_job_id, parse_status
from progress_sync._contract import (
    JOB_PATH,
    JOBS_PATH,
    quart_rule,
)
from quart import Response, request
from quart_schema import (
    document_headers,
    document_response,
    tag,
    validate_querystring,
    validate_response,
)

from ._auth import document_auth
from ._models import JobListResponse, JobSnapshotBody, ListJobsQuery
from ._openapi import IfNoneMatchHeader, NotModified, SnapshotHeaders, error_responses

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from ._services import Services


def snapshot_etag(snapshot: JobSnapshot) -> str:
    """The entity tag of a snapshot (unquoted): its ``seq`` and its job's creation time.

    ``seq`` changes with every change of the job; the creation time (milliseconds, hex) tells
    apart two jobs that reused an id after the first was dropped from the store.
    """
    return f"{snapshot.seq}-{round(snapshot.created_at * 1000):x}"


def install_read_routes(app: QuartTrio, services: Services) -> None:
    """Add ``GET /api/jobs/{jobId}`` (polling, with ETag) and ``GET /api/jobs`` (list)."""
    store = services.store
    config = services.config

    @app.get(quart_rule(JOB_PATH))
    @tag(["jobs"])
    @document_auth(config, "read-job")
    @error_responses(400, 404, 503)
    @document_response(JobSnapshotBody, 200, SnapshotHeaders)
    @document_response(NotModified, 304, SnapshotHeaders)
    @document_headers(IfNoneMatchHeader)
    async def get_job(job_id: str) -> Response:
        """The job's current snapshot: the polling fallback to its stream.

        Sends an ``ETag`` made from the snapshot's ``seq``; a request whose ``If-None-Match``
        holds it gets ``304 Not Modified`` with no body (RFC 9110, section 13.1.2).
        """
        check_job_id(job_id)
        snapshot = await store.get(job_id)
        etag = snapshot_etag(snapshot)
        headers = {"Cache-Control": "no-cache"}
        if request.if_none_match.contains_weak(etag):
            # Sent without Content-Type and Content-Length (see server/_seam.py).
            response = Response(b"", 304, headers)
        else:
            response = Response(snapshot.json_text, 200, headers, mimetype="application/json")
        response.set_etag(etag)
        return response

    @app.get(quart_rule(JOBS_PATH))
    @tag(["jobs"])
    @document_auth(config, "read-jobs")
    @error_responses(400, 503)
    @validate_response(JobListResponse, 200)
    @validate_querystring(ListJobsQuery)
    async def list_jobs(query_args: ListJobsQuery) -> dict[str, Any]:
        """List jobs, newest first, a page at a time, optionally only those in one state.

        ``?status=running&offset=0&limit=100``; ``nextOffset`` is the next page's offset, or
        null on the last page.
        """
        status = parse_status(query_args.status) if query_args.status is not None else None
        page, total = await store.list_jobs(
            status=status, offset=query_args.offset, limit=query_args.limit
        )
        end = query_args.offset + len(page)
        return {
            "jobs": [snapshot.to_dict() for snapshot in page],
            "total": total,
            "offset": query_args.offset,
            "limit": query_args.limit,
            "nextOffset": end if end < total else None,
        }
