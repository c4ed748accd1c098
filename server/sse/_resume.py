"""Where a reconnecting client left off: the ``Last-Event-ID`` it sends, parsed.

A browser's EventSource sends the id of the last event it received in the ``Last-Event-ID``
header when it reconnects (WHATWG HTML, section 9.2.4 "The `Last-Event-ID` header"). A first
connection cannot set headers from EventSource, so the ``lastEventId`` query parameter carries
one (a page that kept the id across a reload, say); the header wins when both are present,
since EventSource sends the newer id in it and reuses the old URL.

Ids are what the streams send: a single-job stream's id is the job's ``seq`` (``0`` on a
``job-error``: nothing of the job seen); a multi-job stream's id lists, for each of its
``jobIds`` in order, the ``seq`` the client has of that job, comma-separated (``5,0,12``).
Anything else (garbage, a negative number, the wrong number of jobs) is no id at all: the
client gets the current snapshots, never an error.
"""

from __future__ import annotations

_MAX_SEQ_DIGITS = 18


def last_event_id(header: str | None, query: str | None) -> str | None:
    """The id a client says it has: the ``Last-Event-ID`` header, else the query parameter."""
    if header:
        return header
    return query or None


def parse_seq(value: str | None) -> int | None:
    """Parse a single-job stream's event id: a ``seq`` of 0 or more.

    Returns:
        The seq, or None when ``value`` is None or not a plain decimal number.
    """
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_SEQ_DIGITS or not value.isascii() or not value.isdigit():
        return None
    return int(value)


def parse_seq_vector(value: str | None, count: int) -> list[int] | None:
    """Parse a multi-job stream's event id: ``count`` seqs separated by commas.

    Returns:
        The seqs in ``jobIds`` order, or None when ``value`` is None or malformed (a part that
        is no number, or not exactly ``count`` parts).
    """
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != count:
        return None
    seqs = []
    for part in parts:
        seq = parse_seq(part)
        if seq is None:
            return None
        seqs.append(seq)
    return seqs


def format_seq_vector(seqs: list[int]) -> str:
    """The multi-job event id for ``seqs`` (the inverse of ``parse_seq_vector``)."""
    return ",".join(map(str, seqs))
