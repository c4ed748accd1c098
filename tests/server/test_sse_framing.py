"""No value can break the SSE framing: property tests, parsed back with httpx-sse.

WHATWG HTML 9.2.5/9.2.6: CR, LF and CRLF all end a line, a blank line dispatches an event,
an ``id`` holding NUL is ignored; the stream is UTF-8.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from progress_sync import MAX_MESSAGE_LENGTH, MAX_STAGE_LENGTH, JobSnapshot, JobStatus
from progress_sync.server import format_event, snapshot_event
from progress_sync.server.sse._framing import EVENT_FOR_STATUS
from progress_sync.server.testing import parse_sse

# Every code point, lone surrogates included (JSON input can carry "\ud800").
any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF))


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(
    stage=st.text(max_size=MAX_STAGE_LENGTH),
    message=st.one_of(st.none(), any_text.filter(lambda t: len(t) <= MAX_MESSAGE_LENGTH)),
    status=st.sampled_from(list(JobStatus)),
    seq=st.integers(min_value=1, max_value=2**53),
)
def test_a_snapshot_event_is_one_event_whatever_the_text(stage, message, status, seq):
    snapshot = JobSnapshot(
        job_id="job-1", status=status, percent=50.0, stage=stage, message=message, seq=seq,
        created_at=0.0, updated_at=0.0, reported_at=0.0, error=message,
    )  # fmt: skip
    body = snapshot_event(snapshot) + snapshot_event(snapshot, id="1,2")
    body.decode("utf-8")
    events = parse_sse(body)
    assert [e.id for e in events] == [str(seq), "1,2"]
    for event in events:
        assert event.event == EVENT_FOR_STATUS[status]
        data = json.loads(event.data)
        assert data["stage"] == stage
        assert data["message"] == message
        assert data["error"] == message


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(data=st.text(), event=st.text(), event_id=st.text())
def test_format_event_keeps_data_lines_and_strips_breaks_from_event_and_id(data, event, event_id):
    body = format_event(data, event=event, id=event_id) + b"data: next\n\n"
    parsed = [e for e in _all_events(body)]
    assert parsed[-1].data == "next"
    first = parsed[0]
    # Multi-line data comes back joined by LF (the parser's rule), whatever the breaks were.
    assert first.data == "\n".join(data.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    assert "\n" not in first.event
    assert "\r" not in first.event
    assert "\n" not in first.id
    assert "\0" not in first.id


def _all_events(body: bytes):
    import httpx
    from httpx_sse import EventSource

    response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
    return list(EventSource(response).iter_sse())
