"""Test kit, server half: the app in process or on a real server, and SSE streams parsed.

The helpers behind the server fixtures of the ``progress_sync`` pytest plugin
(``progress_sync.testing``, which imports this module only when a test uses one of them, so a
pytest run that does not pays nothing for Quart and Hypercorn). Its helpers (and those of
``progress_sync.testing``, re-exported here) are plain functions you import.

Streams (parsed by httpx-sse, on a real server through an ``httpx.AsyncClient`` or in
process through ``progress_client``):
    open_event_stream: ``async with open_event_stream(client, job_id) as stream:``; iterate
        it for ``StreamEvent``.
    collect_events: every event of a stream until the server ends it, bounded by a timeout.
    open_slow_sse_client: a subscriber that reads slowly, or is frozen until thawed, for
        testing backpressure and conflation.
Checks on the events: see ``progress_sync.testing`` (``assert_stream_well_formed`` and the rest).

The kit's modules, one job each: ``_events`` (streams opened, read, collected),
``_transport`` (the app in process through ASGI), ``_slow_client`` (a slow or frozen
subscriber), ``_live_server`` (a real server in the test's nursery). The checks and waits on
snapshots are ``progress_sync.testing``'s (re-exported here), and the pytest plugin with the
fixtures is ``progress_sync.testing`` too.
"""

from progress_sync import WaitTimeoutError
from progress_sync.testing import (
    DEFAULT_TEST_FLUSH_INTERVAL,
    DEFAULT_WAIT_TIMEOUT,
    ProgressRecord,
    assert_exactly_one_terminal,
    assert_percent_never_decreases,
    assert_seq_increasing,
    assert_stream_well_formed,
    assert_terminal_last,
    check_timeout,
    collect_snapshots,
    wait_for_snapshot,
)

from ._events import (
    STREAM_PATH,
    TERMINAL_EVENTS,
    EventStream,
    StreamEvent,
    collect_events,
    open_event_stream,
)
from ._live_server import ProgressServer, default_config, require_real_clock, start_progress_server
from ._slow_client import SlowSSEClient, open_slow_sse_client
from ._transport import (
    ASGIRequest,
    InProcessServer,
    open_asgi_request,
    open_in_process_server,
    parse_sse,
)

__all__ = [
    "DEFAULT_TEST_FLUSH_INTERVAL",
    "DEFAULT_WAIT_TIMEOUT",
    "STREAM_PATH",
    "TERMINAL_EVENTS",
    "ASGIRequest",
    "EventStream",
    "InProcessServer",
    "ProgressRecord",
    "ProgressServer",
    "SlowSSEClient",
    "StreamEvent",
    "WaitTimeoutError",
    "assert_exactly_one_terminal",
    "assert_percent_never_decreases",
    "assert_seq_increasing",
    "assert_stream_well_formed",
    "assert_terminal_last",
    "check_timeout",
    "collect_events",
    "collect_snapshots",
    "default_config",
    "open_asgi_request",
    "open_event_stream",
    "open_in_process_server",
    "open_slow_sse_client",
    "parse_sse",
    "require_real_clock",
    "start_progress_server",
    "wait_for_snapshot",
]
