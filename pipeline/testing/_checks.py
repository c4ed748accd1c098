"""Checks on a job's records (snapshots or stream events): each raises ``AssertionError`` naming
the records that broke its rule.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol, TypeVar

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
