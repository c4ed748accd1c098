"""The SSE routes: one job's stream, and several jobs' on one connection."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from progress_sync import (
    JOB_ID_PATTERN,
    InvalidFieldError,
    JobNotFoundError,
    StoreUnavailableError,
    check_job_id,
)
from progress_sync._contract import (
    JOB_STREAM_PATH,
    MULTI_STREAM_PATH,
    quart_rule,
)
from quart import Response, make_response, request
from quart_schema import document_headers, document_response, tag, validate_querystring

from .._auth import document_auth
from .._errors import ShuttingDownError
from .._models import MultiStreamQuery, StreamQuery
from .._openapi import (
    JobEventStream,
    LastEventIdHeader,
    MultiJobEventStream,
    StreamHeaders,
    StreamSeenEnd,
    error_responses,
)
from ._admission import spread_retry_ms
from ._framing import SSE_HEADERS
from ._loop import StreamContext, job_event_stream, multi_job_event_stream
from ._resume import last_event_id, parse_seq, parse_seq_vector

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from .._services import Services


def parse_job_ids(raw: str, limit: int) -> list[str]:
    """Split the ``jobIds`` parameter (``a,b,c``) into job ids, duplicates dropped.

    Raises:
        InvalidFieldError: naming ``jobIds`` when an id is malformed or there are more than
            ``limit`` of them.
    """
    job_ids = list(dict.fromkeys(part.strip() for part in raw.split(",")))
    for position, job_id in enumerate(job_ids, start=1):
        if JOB_ID_PATTERN.fullmatch(job_id) is None:
            raise InvalidFieldError(
                "jobIds",
                f"id {position} ({job_id[:40]!r}) must be 1-128 letters, digits, '.', '_', ':' "
                "or '-', starting with a letter or digit; separate ids with commas",
            )
    if len(job_ids) > limit:
        raise InvalidFieldError(
            "jobIds", f"at most {limit} jobs per stream, got {len(job_ids)}; open another stream"
        )
    return job_ids


def install_stream_routes(app: QuartTrio, services: Services) -> None:
    """Add ``GET /api/jobs/{jobId}/progress/stream`` and ``GET /api/progress/stream``."""
    config = services.config
    store = services.store
    hub = services.streams
    context = StreamContext(
        store=store,
        hub=hub,
        metrics=services.metrics,
        retry_ms=config.retry_ms,
        heartbeat_interval=config.heartbeat_interval,
        registration_timeout=config.registration_timeout,
        shutdown_retry_spread_ms=config.shutdown_retry_spread_ms,
    )
    retry_after = max(1, math.ceil(config.retry_ms / 1000))

    def admit() -> None:
        if hub.stopping:
            spread = spread_retry_ms(config.retry_ms, config.shutdown_retry_spread_ms)
            raise ShuttingDownError(max(1, math.ceil(spread / 1000)))
        # the hub marks the scope it admitted with a key of its own
        scope = cast("MutableMapping[str, Any]", request.scope)
        hub.admit(scope, limit=config.max_subscribers, retry_after=retry_after)

    async def sse_response(events: AsyncIterator[bytes]) -> Response:
        response = cast(Response, await make_response(events, 200, SSE_HEADERS))
        # Quart cuts responses after RESPONSE_TIMEOUT (60 s) unless told otherwise.
        response.timeout = None
        return response

    def no_content() -> Response:
        # WHATWG HTML 9.2.1: "a client can be told to stop reconnecting using the HTTP 204 No
        # Content response code" (any status but 200 fails the connection, 9.2.3).
        return Response(b"", 204, {"Cache-Control": "no-cache"})

    async def has_seen_end(job_id: str, seen: int) -> bool:
        try:
            snapshot = await store.get(job_id)
        except JobNotFoundError:
            return seen == 0  # it was told so with job-error, id 0
        except StoreUnavailableError:
            return False  # not known now: the stream keeps heartbeats until the store is back
        return snapshot.is_terminal and snapshot.seq == seen

    @app.get(quart_rule(JOB_STREAM_PATH))
    @tag(["streams"])
    @document_auth(config, "read-job")
    @error_responses(400, 503)
    @document_response(JobEventStream, 200, StreamHeaders)
    @document_response(StreamSeenEnd, 204)
    @document_headers(LastEventIdHeader)
    @validate_querystring(StreamQuery)
    async def stream_job(job_id: str, query_args: StreamQuery) -> Response:
        """Follow a job: its progress as server-sent events (``text/event-stream``).

        Events: ``job-progress`` while it runs, then one of ``job-completed``, ``job-failed``,
        ``job-cancelled``; ``job-error`` if it is not registered in time; ``reconnect`` when
        the server shuts down first. Each event's ``id`` is the job's ``seq``; reconnect with
        it in ``Last-Event-ID`` (or ``?lastEventId=``) to skip what you have. 204 when that id
        is the job's terminal event; 503 with ``Retry-After`` when the server is full.
        ``minIntervalMs`` paces the events for this subscriber (at most one per interval,
        always the latest state; terminal events and ``job-error`` never wait).
        """
        check_job_id(job_id)
        header = request.headers.get("Last-Event-ID")
        seen = parse_seq(last_event_id(header, query_args.last_event_id))
        if seen is not None and await has_seen_end(job_id, seen):
            return no_content()
        admit()
        return await sse_response(
            job_event_stream(
                context, job_id, last_seen=seen, min_interval=query_args.min_interval_ms / 1000
            )
        )

    @app.get(quart_rule(MULTI_STREAM_PATH))
    @tag(["streams"])
    @document_auth(config, "read-jobs")
    @error_responses(400, 503)
    @document_response(MultiJobEventStream, 200, StreamHeaders)
    @document_response(StreamSeenEnd, 204)
    @document_headers(LastEventIdHeader)
    @validate_querystring(MultiStreamQuery)
    async def stream_jobs(query_args: MultiStreamQuery) -> Response:
        """Follow several jobs on one connection: ``?jobIds=a,b,c``.

        The events of each job as on its own stream (every event's data carries ``jobId``);
        each ``id`` lists the seq the client has of every job in ``jobIds`` order
        (``5,0,12``). Jobs not registered get one ``job-error`` each. Ends when every job
        has ended; 204 on a reconnect that has seen every job end. ``minIntervalMs``: at
        most one event per job per interval for this subscriber, always the latest.
        """
        job_ids = parse_job_ids(query_args.job_ids, config.max_stream_jobs)
        header = request.headers.get("Last-Event-ID")
        seen = parse_seq_vector(last_event_id(header, query_args.last_event_id), len(job_ids))
        if seen is not None and await _all_seen_end(job_ids, seen):
            return no_content()
        admit()
        return await sse_response(
            multi_job_event_stream(
                context, job_ids, last_seen=seen, min_interval=query_args.min_interval_ms / 1000
            )
        )

    async def _all_seen_end(job_ids: Sequence[str], seen: Sequence[int]) -> bool:
        for job_id, seq in zip(job_ids, seen, strict=True):
            if not await has_seen_end(job_id, seq):
                return False
        return True
