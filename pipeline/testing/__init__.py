"""The test kit: the ``progress_sync`` pytest plugin, waits and checks, in virtual time.

Installing progress-sync registers this module as the pytest plugin ``progress_sync`` (entry
point in the ``pytest11`` group), so its fixtures are there in every test of a project that has
progress-sync installed. Turn it off with ``-p no:progress_sync``; with plugin autoloading off
(``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1``), turn it on with ``-p trio -p progress_sync.testing``
(pytest-trio's plugin is autoloaded too, so it must be named as well).

Loading the plugin imports only pytest, trio and the core: the server stack (Quart, Hypercorn)
is imported when a test first uses a server fixture, from ``progress_sync.server.testing``
(which holds the stream helpers: ``open_event_stream``, ``collect_events``, ...; they can be
imported from here too, and are loaded on first use). The fixtures are async and need
pytest-trio (``trio_mode = true``, or tests marked ``@pytest.mark.trio``).

Fixtures (prefixed ``progress_`` so they do not clash with your own):
    progress_flush_interval: the buffer's flush interval in seconds (0.05); override it.
    progress_store: a fresh ``MemoryStore``.
    progress_buffer: an ``UpdateBuffer`` over ``progress_store``, its drain task running; it
        flushes every ``progress_flush_interval`` seconds of trio's clock, so with
        ``autojump_clock`` a flush costs no real time.
    progress_server_config: the ``ServerConfig`` of the server fixtures (loopback, port 0,
        flush interval ``progress_flush_interval``); override it to change a setting.
    progress_services: the server's services (update buffer, job runner) over
        ``progress_store``, opened for the test.
    progress_client: a Quart test client of the app over ``progress_services``: in process,
        no sockets, so it works under ``autojump_clock`` (streams run in virtual time).
    progress_server: a real Hypercorn server on ``127.0.0.1`` with an ephemeral port, started
        with ``await nursery.start(...)`` in the fixture's nursery, over ``progress_store``;
        a ``ProgressServer`` (``base_url``, ``client()``, ``stop``). Real clock only.
    progress_server_url: ``progress_server.base_url``, e.g. ``"http://127.0.0.1:41234"``.

Waits (bounded by a timeout of trio's clock, so they fail at once in virtual time):
    collect_snapshots: a job's snapshots until its terminal state.
    wait_for_snapshot: the first snapshot of a job that satisfies a condition.

Checks (raise ``AssertionError`` saying which record broke which rule), for snapshots and
for the stream events of ``progress_sync.server.testing`` alike:
    assert_percent_never_decreases, assert_exactly_one_terminal, assert_terminal_last,
    assert_seq_increasing, and assert_stream_well_formed (all four).

Two traps this kit is built around, described in the README ("Testing your own code"):
pytest-trio's ``nursery`` fixture cancels what the test started when the test function
returns, so a test must wait for an observable condition (``collect_snapshots``,
``wait_for_snapshot``) rather than return; and the autojump clock jumps whenever every task
is blocked, including on real sockets and threads, so only in-process tests use it.


The kit's modules: ``_plugin`` (the fixtures), ``_waits`` (``collect_snapshots``,
``wait_for_snapshot``), ``_checks`` (``assert_*``); the server half is the package
``progress_sync.server.testing`` (events, in-process transport, slow client, live server).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._checks import ProgressRecord as ProgressRecord
from ._checks import assert_exactly_one_terminal as assert_exactly_one_terminal
from ._checks import assert_percent_never_decreases as assert_percent_never_decreases
from ._checks import assert_seq_increasing as assert_seq_increasing
from ._checks import assert_stream_well_formed as assert_stream_well_formed
from ._checks import assert_terminal_last as assert_terminal_last
from ._plugin import DEFAULT_TEST_FLUSH_INTERVAL as DEFAULT_TEST_FLUSH_INTERVAL
from ._plugin import progress_buffer as progress_buffer
from ._plugin import progress_client as progress_client
from ._plugin import progress_flush_interval as progress_flush_interval
from ._plugin import progress_server as progress_server
from ._plugin import progress_server_config as progress_server_config
from ._plugin import progress_server_url as progress_server_url
from ._plugin import progress_services as progress_services
from ._plugin import progress_store as progress_store
from ._waits import DEFAULT_WAIT_TIMEOUT as DEFAULT_WAIT_TIMEOUT
from ._waits import check_timeout as check_timeout
from ._waits import collect_snapshots as collect_snapshots
from ._waits import wait_for_snapshot as wait_for_snapshot

if TYPE_CHECKING:
    from ..server.testing import STREAM_PATH as STREAM_PATH
    from ..server.testing import TERMINAL_EVENTS as TERMINAL_EVENTS
    from ..server.testing import EventStream as EventStream
    from ..server.testing import ProgressServer as ProgressServer
    from ..server.testing import SlowSSEClient as SlowSSEClient
    from ..server.testing import StreamEvent as StreamEvent
    from ..server.testing import collect_events as collect_events
    from ..server.testing import open_event_stream as open_event_stream
    from ..server.testing import open_slow_sse_client as open_slow_sse_client
    from ..server.testing import require_real_clock as require_real_clock
    from ..server.testing import start_progress_server as start_progress_server

# --- server names: the server stack is imported when a test first uses one ------------------

_SERVER_KIT_NAMES = frozenset(
    {
        "STREAM_PATH",
        "TERMINAL_EVENTS",
        "EventStream",
        "ProgressServer",
        "SlowSSEClient",
        "StreamEvent",
        "collect_events",
        "open_event_stream",
        "open_slow_sse_client",
        "require_real_clock",
        "start_progress_server",
    }
)
"""Names of ``progress_sync.server.testing`` that ``from progress_sync.testing import ...``
finds too (loaded on first use)."""


def __getattr__(name: str) -> Any:
    if name in _SERVER_KIT_NAMES:
        from ..server import testing as server_kit

        return getattr(server_kit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
