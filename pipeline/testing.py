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
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import pytest
import trio

from ._buffer import UpdateBuffer, open_update_buffer
from ._errors import RegistrationTimeoutError, WaitTimeoutError
from ._memory_store import MemoryStore
from ._snapshot import JobSnapshot
from ._store import ExportStore

if TYPE_CHECKING:
    from quart.typing import TestClientProtocol

    from .server import ServerConfig, Services
    from .server.testing import STREAM_PATH as STREAM_PATH
    from .server.testing import TERMINAL_EVENTS as TERMINAL_EVENTS
    from .server.testing import EventStream as EventStream
    from .server.testing import ProgressServer as ProgressServer
    from .server.testing import SlowSSEClient as SlowSSEClient
    from .server.testing import StreamEvent as StreamEvent
    from .server.testing import collect_events as collect_events
    from .server.testing import open_event_stream as open_event_stream
    from .server.testing import open_slow_sse_client as open_slow_sse_client
    from .server.testing import require_real_clock as require_real_clock
    from .server.testing import start_progress_server as start_progress_server

DEFAULT_TEST_FLUSH_INTERVAL = 0.05
"""The flush interval of the kit's buffer and server, in seconds: short, so tests on the real
clock stay fast; in virtual time any value costs nothing."""

DEFAULT_WAIT_TIMEOUT = 10.0
"""How long the kit's waits wait by default, in seconds of trio's clock."""


class ProgressRecord(Protocol):
    """What the checks read: a ``JobSnapshot`` or a ``progress_sync.server.testing.StreamEvent``.

    Attributes:
        percent: progress in percent (0-100), or None when the record carries none (a
            ``job-error`` event); such records are skipped by the percent check.
        seq: the job's version (the SSE ``id``), or None when the record has none.
        is_terminal: True for a terminal state (``completed``, ``failed``, ``cancelled``).
    """

    @property
    def percent(self) -> float | None: ...

    @property
    def seq(self) -> int | None: ...

    @property
    def is_terminal(self) -> bool: ...


R = TypeVar("R", bound=ProgressRecord)


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def progress_flush_interval() -> float:
    """Seconds between flushes of ``progress_buffer`` and of ``progress_server``'s buffer.

    0.05 by default. Override it in your conftest or test module to test your own interval.
    """
    return DEFAULT_TEST_FLUSH_INTERVAL


@pytest.fixture
def progress_store() -> MemoryStore:
    """A fresh in-memory export store, shared by the kit's buffer, server and client."""
    return MemoryStore()


@pytest.fixture
async def progress_buffer(
    progress_store: MemoryStore, progress_flush_interval: float
) -> AsyncIterator[UpdateBuffer]:
    """An ``UpdateBuffer`` over ``progress_store`` with its drain task running.

    Reports reach the store at the next flush, ``progress_flush_interval`` seconds of trio's
    clock later (no real time under ``autojump_clock``); ``await progress_buffer.flush()``
    writes them at once. The buffer is closed, and flushed, after the test.
    """
    async with open_update_buffer(progress_store, flush_interval=progress_flush_interval) as buffer:
        yield buffer


# --- waits ----------------------------------------------------------------------------------


def check_timeout(timeout: float) -> float:
    """Check a wait's timeout: a positive, finite number of seconds.

    Returns:
        ``timeout`` as a float.

    Raises:
        ValueError: it is not a positive, finite number (a bool is refused).
    """
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if math.isinf(timeout):
        raise ValueError("timeout must be finite: a wait without a bound can hang the test run")
    return float(timeout)


async def collect_snapshots(
    store: ExportStore,
    job_id: str,
    *,
    # A bound of its own (not the caller's fail_after) so the error can show what arrived.
    timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
) -> list[JobSnapshot]:
    """Subscribe to a job and collect its snapshots until its terminal state.

    Waits for the job to be registered first, so it may be called before the job exists.
    What it collects is what a subscriber sees: the snapshot current when it subscribed,
    then each change, *conflated* (a snapshot replaced before this task took it is skipped;
    see ``Subscription``). The terminal snapshot is always the last one.

    Args:
        store: the export store (``progress_store``).
        job_id: the job's id.
        timeout: how long to wait for the terminal state, in seconds of trio's clock
            (virtual under ``autojump_clock``, so a stuck job fails the test at once).

    Returns:
        The snapshots received, oldest first, ending with the terminal one.

    Raises:
        ValueError: ``timeout`` is not a positive, finite number.
        WaitTimeoutError: the job was not registered, or did not reach a terminal state,
            within ``timeout``; its ``received`` holds the snapshots seen until then.
    """
    timeout = check_timeout(timeout)
    received: list[JobSnapshot] = []
    with trio.move_on_after(timeout):
        if await _wait_registered(store, job_id, timeout):
            async with store.subscribe(job_id) as subscription:
                async for snapshot in subscription:
                    received.append(snapshot)
                return received
    raise WaitTimeoutError(
        f"job {job_id!r} did not reach a terminal state within {timeout:g} s; "
        f"{_last_seen(received)}",
        timeout=timeout,
        received=tuple(received),
    )


async def wait_for_snapshot(
    store: ExportStore,
    job_id: str,
    condition: Callable[[JobSnapshot], bool],
    *,
    timeout: float = DEFAULT_WAIT_TIMEOUT,  # noqa: ASYNC109
) -> JobSnapshot:
    """Wait until a job's snapshot satisfies ``condition`` and return that snapshot.

    Use it to wait for an observable state instead of sleeping, and before a test returns
    (pytest-trio cancels the tasks in its ``nursery`` fixture when the test function ends).
    Snapshots are conflated for a slow waiter, so test a condition that stays true once
    reached (``lambda s: s.percent >= 50``), not an exact intermediate value.

    Args:
        store: the export store.
        job_id: the job's id (it may be registered later).
        condition: called with each snapshot the subscription receives.
        timeout: how long to wait, in seconds of trio's clock.

    Returns:
        The first snapshot received for which ``condition`` returned true.

    Raises:
        ValueError: ``timeout`` is not a positive, finite number.
        WaitTimeoutError: no snapshot satisfied ``condition`` within ``timeout``.
        AssertionError: the job reached its terminal state, which does not satisfy
            ``condition``, so the condition can never hold.
    """
    timeout = check_timeout(timeout)
    received: list[JobSnapshot] = []
    with trio.move_on_after(timeout):
        if await _wait_registered(store, job_id, timeout):
            async with store.subscribe(job_id) as subscription:
                async for snapshot in subscription:
                    received.append(snapshot)
                    if condition(snapshot):
                        return snapshot
                raise AssertionError(
                    f"job {job_id!r} ended {received[-1].status.value} at "
                    f"{received[-1].percent:g}% without satisfying the condition"
                )
    raise WaitTimeoutError(
        f"no snapshot of job {job_id!r} satisfied the condition within {timeout:g} s; "
        f"{_last_seen(received)}",
        timeout=timeout,
        received=tuple(received),
    )


async def _wait_registered(store: ExportStore, job_id: str, timeout: float) -> bool:  # noqa: ASYNC109
    # The caller's cancel scope and the store's own timeout expire together (at once, in
    # virtual time); either way the caller reports the timeout.
    try:
        await store.wait_registered(job_id, timeout)
    except RegistrationTimeoutError:
        return False
    return True


def _last_seen(received: Sequence[JobSnapshot]) -> str:
    if not received:
        return "no snapshot arrived (is the job registered, and is its producer running?)"
    last = received[-1]
    return f"last snapshot: {last.status.value} {last.percent:g}% stage {last.stage!r}"


# --- checks ---------------------------------------------------------------------------------


def _describe(index: int, record: ProgressRecord) -> str:
    terminal = ", terminal" if record.is_terminal else ""
    return f"record {index} (seq {record.seq}, percent {record.percent}{terminal})"


def assert_percent_never_decreases(records: Iterable[ProgressRecord]) -> None:
    """Check that percent never goes down from one record to the next within an attempt.

    The store's policy (``ExportStore``): percent only goes down with a new ``attempt`` (a
    report sent with ``reset``), so a lower percent in a record whose ``attempt`` is higher
    than the previous record's is allowed. Records without a percent (``None``) are
    skipped; records without an ``attempt`` count as attempt 1.

    Raises:
        AssertionError: naming the two records where percent went down.
    """
    previous: tuple[int, ProgressRecord] | None = None
    for index, record in enumerate(records):
        if record.percent is None:
            continue
        if (
            previous is not None
            and record.percent < previous[1].percent  # type: ignore[operator]  # previous has a percent: records without one are skipped
            and _attempt(record) <= _attempt(previous[1])
        ):
            raise AssertionError(
                f"percent decreased: {_describe(*previous)} then {_describe(index, record)}"
            )
        previous = (index, record)


def _attempt(record: ProgressRecord) -> int:
    attempt = getattr(record, "attempt", None)
    return attempt if isinstance(attempt, int) else 1


def assert_exactly_one_terminal(records: Iterable[ProgressRecord]) -> None:
    """Check that exactly one record is a terminal state.

    Raises:
        AssertionError: there is none, or more than one (the message lists them).
    """
    terminal = [(i, r) for i, r in enumerate(records) if r.is_terminal]
    if len(terminal) != 1:
        listed = "; ".join(_describe(i, r) for i, r in terminal)
        raise AssertionError(
            f"expected exactly one terminal record, got {len(terminal)}"
            + (f": {listed}" if listed else "")
        )


def assert_terminal_last(records: Iterable[ProgressRecord]) -> None:
    """Check that the last record is a terminal state (nothing comes after the end).

    Raises:
        AssertionError: there are no records, or the last one is not terminal.
    """
    records = list(records)
    if not records:
        raise AssertionError("no records: the stream ended before anything arrived")
    if not records[-1].is_terminal:
        raise AssertionError(f"the last record is not terminal: {_describe(-1, records[-1])}")


def assert_seq_increasing(records: Iterable[ProgressRecord]) -> None:
    """Check that ``seq`` (the SSE ``id``) strictly increases; records without one are skipped.

    Raises:
        AssertionError: naming the two records where ``seq`` did not increase.
    """
    previous: tuple[int, ProgressRecord] | None = None
    for index, record in enumerate(records):
        if record.seq is None:
            continue
        if previous is not None and record.seq <= previous[1].seq:  # type: ignore[operator]  # previous has a seq: records without one are skipped
            raise AssertionError(
                f"seq did not increase: {_describe(*previous)} then {_describe(index, record)}"
            )
        previous = (index, record)


def assert_stream_well_formed(records: Iterable[R]) -> R:
    """Run every check: percent never decreases, seq increases, one terminal record, last.

    Returns:
        The terminal record, for further assertions on the outcome.

    Raises:
        AssertionError: from the first check that fails.
    """
    records = list(records)
    assert_percent_never_decreases(records)
    assert_seq_increasing(records)
    assert_exactly_one_terminal(records)
    assert_terminal_last(records)
    return records[-1]


# --- server fixtures: the server stack is imported when a test first uses one -----------------

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
        from .server import testing as server_kit

        return getattr(server_kit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture
def progress_server_config(progress_flush_interval: float) -> ServerConfig:
    """Settings of ``progress_server`` and ``progress_client``: 127.0.0.1, port 0, the kit's
    flush interval, 5 s registration timeout, 1 s graceful timeout, 60 s send timeout.
    Override to change."""
    from .server.testing import default_config

    return default_config(progress_flush_interval)


@pytest.fixture
async def progress_services(
    progress_server_config: ServerConfig, progress_store: MemoryStore
) -> AsyncIterator[Services]:
    """The app's services over ``progress_store``: update sink and job runner (``demo`` kind).

    Add your own job kinds with ``progress_services.runner.kinds["name"] = JobKind(...)``.
    """
    from .server import open_services

    async with open_services(progress_server_config, progress_store) as services:
        yield services


@pytest.fixture
async def progress_client(progress_services: Services) -> AsyncIterator[TestClientProtocol]:
    """A Quart test client of the app, in process: no sockets, so virtual time works.

    ``await progress_client.post("/api/jobs", json=...)``, ``collect_events(progress_client,
    job_id)``; the app (``progress_client.app``) has run its startup and runs its shutdown
    after the test.
    """
    from .server import create_app

    app = create_app(progress_services)
    async with app.test_app() as test_app:
        yield test_app.test_client()


@pytest.fixture
async def progress_server(
    nursery: trio.Nursery, progress_server_config: ServerConfig, progress_store: MemoryStore
) -> AsyncIterator[ProgressServer]:
    """A real Hypercorn server on 127.0.0.1 (ephemeral port) over ``progress_store``.

    Started with ``await nursery.start(...)``; shut down gracefully after the test. Needs the
    real clock: a test that also asks for ``autojump_clock`` fails with a message saying so.
    """
    from .server.testing import require_real_clock, start_progress_server

    require_real_clock("progress_server")
    server = await start_progress_server(nursery, progress_server_config, store=progress_store)
    yield server
    await server.aclose()


@pytest.fixture
def progress_server_url(progress_server: ProgressServer) -> str:
    """The base URL of ``progress_server``, ``http://127.0.0.1:<port>``."""
    return progress_server.base_url
