"""Server-sent events: the wire format and the stream of one job's snapshots.

The format follows the WHATWG HTML standard, section 9.2 "Server-sent events"
(https://html.spec.whatwg.org/multipage/server-sent-events.html): an event is ``field: value``
lines ended by a blank line; a line starting with ``:`` is a comment; CR, LF and CRLF all end
a line, so no field value may hold one.
"""

from __future__ import annotations

import json
import re

from progress_sync import JobSnapshot, JobStatus

EVENT_FOR_STATUS: dict[JobStatus, str] = {
    JobStatus.QUEUED: "job-progress",
    JobStatus.RUNNING: "job-progress",
    JobStatus.COMPLETED: "job-completed",
    JobStatus.FAILED: "job-failed",
    JobStatus.CANCELLED: "job-cancelled",
}
"""The SSE ``event`` name that carries a snapshot in each state."""

JOB_ERROR_EVENT = "job-error"
"""The event that ends a stream whose job was not registered in time (or, in a multi-job
stream, tells that one of the jobs is not registered)."""

RECONNECT_EVENT = "reconnect"
"""The last event of a stream cut by a server shutdown: come back after the ``retry:`` time."""

HEARTBEAT = b": heartbeat\n\n"
"""A comment line: ignored by clients, it keeps proxies from closing an idle stream."""

STORE_RETRY_INTERVAL = 1.0
"""Seconds between two attempts to open a stream's subscription while the store is unavailable."""

SSE_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",
}
"""Headers of every stream response.

``no-cache`` keeps caches from replaying a stream; ``no-transform`` forbids proxies to compress
or otherwise rewrite it (RFC 9111, section 5.2.2.6), since a compressed stream is held back in
the compressor's buffer; ``X-Accel-Buffering: no`` stops nginx buffering it. The app itself
never compresses a response.
"""

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


def snapshot_event(snapshot: JobSnapshot, id: str | None = None) -> bytes:
    """Encode a snapshot as its event: ``id`` = seq, ``event`` by status, ``data`` = JSON.

    The JSON is the snapshot's cached one-line encoding (``JobSnapshot.json_text``): JSON
    escapes every control character (CR and LF included), so the data never holds a line
    break and never splits, whatever the producer put in ``stage`` or ``message``. A lone
    surrogate (``"\\ud800"`` is valid JSON input) cannot be encoded as UTF-8; it is written as
    its JSON escape, so the stream stays valid UTF-8 (section 9.2.5 decodes it as such).

    Args:
        snapshot: the snapshot.
        id: the event's ``id`` field; the snapshot's ``seq`` by default. A multi-job stream
            passes its own (digits and commas only, so never a line break).
    """
    return b"id: %s\nevent: %s\ndata: %s\n\n" % (
        id.encode() if id is not None else b"%d" % snapshot.seq,
        EVENT_FOR_STATUS[snapshot.status].encode(),
        snapshot.json_text.encode("utf-8", "backslashreplace"),
    )


def reconnect_event(retry_ms: int, detail: dict[str, object]) -> bytes:
    """Encode the last event of a stream cut by a shutdown: ``retry:`` then ``reconnect``.

    The ``retry:`` field sets the client's reconnection time (WHATWG HTML, section 9.2.6,
    "Interpreting an event stream"); EventSource reconnects that long after the stream ends,
    sending the last event id it saw in ``Last-Event-ID``.

    Args:
        retry_ms: the reconnection time to ask for, in milliseconds.
        detail: the event's data (a JSON object).
    """
    data = json.dumps({**detail, "retryMs": retry_ms}, separators=(",", ":"))
    return f"retry: {int(retry_ms)}\nevent: {RECONNECT_EVENT}\ndata: {data}\n\n".encode()
