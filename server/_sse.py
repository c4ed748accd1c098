"""Server-sent events: the wire format and the stream of one job's snapshots.

The format follows the WHATWG HTML standard, section 9.2 "Server-sent events"
(https://html.spec.whatwg.org/multipage/server-sent-events.html): an event is ``field: value``
lines ended by a blank line; a line starting with ``:`` is a comment; CR, LF and CRLF all end
a line, so no field value may hold one.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import trio

from pipeline import (
    ExportStore,
    JobSnapshot,
    JobStatus,
    RegistrationTimeoutError,
    StoreUnavailableError,
)

EVENT_FOR_STATUS: dict[JobStatus, str] = {
    JobStatus.QUEUED: "job-progress",
    JobStatus.RUNNING: "job-progress",
    JobStatus.COMPLETED: "job-completed",
    JobStatus.FAILED: "job-failed",
    JobStatus.CANCELLED: "job-cancelled",
}
"""The SSE ``event`` name that carries a snapshot in each state."""

JOB_ERROR_EVENT = "job-error"
"""The event that ends a stream whose job was not registered in time."""

HEARTBEAT = b": heartbeat\n\n"

STORE_RETRY_INTERVAL = 1.0
"""Seconds between two attempts to open a stream's subscription while the store is unavailable."""
"""A comment line: ignored by clients, it keeps proxies from closing an idle stream."""

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}
"""Headers of every stream response; ``X-Accel-Buffering: no`` stops nginx buffering it."""

_LINE_BREAKS = re.compile(r"\r\n|\r|\n")


def format_event(data: str, *, event: str | None = None, id: str | None = None) -> bytes:
    """Encode one SSE event.

    Args:
        data: the event's data; each line of it becomes its own ``data:`` line, as the
            standard requires for multi-line data.
        event: the event type (``event:`` field), or None for the default ``message``.
        id: the event id (``id:`` field), or None.

    Returns:
        The UTF-8 bytes of the event, ended by a blank line. Line breaks are removed from
        ``event`` and ``id`` (where the standard has no way to carry them), and NUL from ``id``
        (the standard ignores an id that holds one).
    """
    parts = []
    if id is not None:
        parts.append("id: " + _LINE_BREAKS.sub("", id).replace("\0", "") + "\n")
    if event is not None:
        parts.append("event: " + _LINE_BREAKS.sub("", event) + "\n")
    for line in _LINE_BREAKS.split(data):
        parts.append("data: " + line + "\n")
    parts.append("\n")
    return "".join(parts).encode()


def format_retry(retry_ms: int) -> bytes:
    """Encode a ``retry:`` field: the reconnection time a client should use, in milliseconds."""
    return f"retry: {int(retry_ms)}\n\n".encode()


def snapshot_event(snapshot: JobSnapshot) -> bytes:
    """Encode a snapshot as its event: ``id`` = seq, ``event`` by status, ``data`` = JSON.

    The JSON is the snapshot's cached one-line encoding (``JobSnapshot.json_text``): JSON
    escapes every control character, so it never holds a line break and never splits.
    """
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (
        snapshot.seq,
        EVENT_FOR_STATUS[snapshot.status].encode(),
        snapshot.json_text.encode(),
    )


async def job_event_stream(
    store: ExportStore,
    job_id: str,
    *,
    registration_timeout: float,
    retry_ms: int,
    heartbeat_interval: float,
) -> AsyncIterator[bytes]:
    """Yield the SSE byte chunks of one job's stream, from ``retry:`` to the terminal event.

    1. ``retry:`` at once, so the status line and headers reach the client at once.
    2. Wait for the job to be registered, sending heartbeats meanwhile; if it is not
       registered within ``registration_timeout`` seconds, send ``job-error`` and end.
    3. The current snapshot, then each change (conflated: a slow client gets the latest state,
       never a backlog), as ``job-progress`` events.
    4. The terminal event (``job-completed``, ``job-failed`` or ``job-cancelled``), then end.

    A heartbeat comment goes out whenever nothing was sent for ``heartbeat_interval`` seconds.
    While the store cannot be reached (``StoreUnavailableError``: Redis is away) the stream
    stays open, sends heartbeats and looks again every ``STORE_RETRY_INTERVAL`` seconds; an
    open subscription simply waits, and resumes from the current snapshot (the store resyncs
    it) when the store is back.
    The subscription is closed when the generator ends, is closed or is cancelled (the client
    went away).
    """
    yield format_retry(retry_ms)
    deadline = trio.current_time() + registration_timeout
    while True:
        remaining = deadline - trio.current_time()
        try:
            await store.wait_registered(job_id, max(0.0, min(heartbeat_interval, remaining)))
            async with store.subscribe(job_id) as subscription:
                while True:
                    snapshot = None
                    with trio.move_on_after(heartbeat_interval):
                        snapshot = await subscription.receive()
                    if snapshot is None:
                        yield HEARTBEAT
                        continue
                    yield snapshot_event(snapshot)
                    if snapshot.is_terminal:
                        return
        except RegistrationTimeoutError:
            if remaining <= heartbeat_interval:
                reason = {
                    "jobId": job_id,
                    "error": "job not registered",
                    "detail": f"job {job_id!r} was not registered within "
                    f"{registration_timeout:g} s; check the job id",
                }
                yield format_event(json.dumps(reason), event=JOB_ERROR_EVENT)
                return
            yield HEARTBEAT
        except StoreUnavailableError:
            # The store (Redis) cannot be reached: keep the stream open with heartbeats and
            # look again; the subscription resumes from the current snapshot.
            yield HEARTBEAT
            await trio.sleep(min(heartbeat_interval, STORE_RETRY_INTERVAL))
