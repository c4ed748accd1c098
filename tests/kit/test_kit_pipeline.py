"""The test kit's pipeline half (``progress_sync.testing``): fixtures, waits and checks.

Every test here runs in virtual time (``autojump_clock``): a wait that would hang fails at
once, and the flush interval costs no real time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
import trio
from progress_sync import JobStatus, MemoryStore, UpdateBuffer, WaitTimeoutError
from progress_sync.testing import (
    DEFAULT_TEST_FLUSH_INTERVAL,
    assert_exactly_one_terminal,
    assert_percent_never_decreases,
    assert_seq_increasing,
    assert_stream_well_formed,
    assert_terminal_last,
    collect_snapshots,
    wait_for_snapshot,
)


async def produce(buffer: UpdateBuffer, job_id: str, *, steps: int = 100, pause: float = 0.01):
    """A producer: ``steps`` reports ``pause`` seconds apart, then ``completed``."""
    for step in range(1, steps + 1):
        buffer.report_nowait(job_id, percent=100 * step / steps, stage="work")
        await trio.sleep(pause)
    await buffer.finish(job_id, "completed", result={"steps": steps})


# --- fixtures ---


def test_progress_store_is_a_fresh_memory_store(progress_store):
    assert isinstance(progress_store, MemoryStore)
    assert progress_store.statistics().jobs == 0


async def test_progress_buffer_writes_to_progress_store(progress_store, progress_buffer):
    assert progress_buffer.store is progress_store
    assert progress_buffer.flush_interval == DEFAULT_TEST_FLUSH_INTERVAL


async def test_progress_buffer_flushes_in_virtual_time(
    progress_store, progress_buffer, autojump_clock
):
    await progress_store.register("job")
    started = trio.current_time()
    progress_buffer.report_nowait("job", percent=10.0, stage="a")
    snapshot = await wait_for_snapshot(progress_store, "job", lambda s: s.percent == 10.0)
    assert snapshot.stage == "a"
    # Reached the store at the first flush, one interval of virtual time later.
    assert trio.current_time() - started == pytest.approx(DEFAULT_TEST_FLUSH_INTERVAL, abs=1e-6)


class TestOverriddenFlushInterval:
    """A class (or module, or conftest) overrides ``progress_flush_interval`` for its tests."""

    @pytest.fixture
    def progress_flush_interval(self) -> float:
        return 60.0

    async def test_a_minute_long_interval_costs_no_real_time(
        self, progress_store, progress_buffer, autojump_clock
    ):
        assert progress_buffer.flush_interval == 60.0
        await progress_store.register("job")
        real_start = time.perf_counter()
        progress_buffer.report_nowait("job", percent=5.0, stage="slow")
        await trio.sleep(59.0)
        assert (await progress_store.get("job")).percent == 0.0
        await trio.sleep(1.5)
        assert (await progress_store.get("job")).percent == 5.0
        assert time.perf_counter() - real_start < 5.0


class TestBufferTeardown:
    """``progress_buffer`` flushes what is buffered when the test ends."""

    @pytest.fixture
    def progress_flush_interval(self) -> float:
        return 3600.0

    @pytest.fixture
    async def progress_store(self):
        # progress_buffer depends on this fixture, so this teardown runs after the buffer's.
        store = MemoryStore()
        yield store
        assert (await store.get("job")).percent == 42.0

    async def test_a_report_left_in_the_buffer_is_written_at_teardown(
        self, progress_store, progress_buffer
    ):
        await progress_store.register("job")
        progress_buffer.report_nowait("job", percent=42.0, stage="x")
        assert (await progress_store.get("job")).percent == 0.0


# --- collect_snapshots ---


async def test_collect_snapshots_follows_a_producer_to_its_terminal_state(
    progress_store, progress_buffer, nursery, autojump_clock
):
    await progress_store.register("export")
    nursery.start_soon(produce, progress_buffer, "export")
    snapshots = await collect_snapshots(progress_store, "export")
    final = assert_stream_well_formed(snapshots)
    assert final.status is JobStatus.COMPLETED
    assert final.result == {"steps": 100}
    assert snapshots[0].seq == 1
    # 100 reports over 1 s of virtual time, flushed every 0.05 s: coalesced to ~20 writes.
    assert 2 < len(snapshots) < 40


async def test_collect_snapshots_may_start_before_the_job_is_registered(
    progress_store, progress_buffer, nursery, autojump_clock
):
    async def register_later():
        await trio.sleep(3)
        await progress_store.register("late")
        await produce(progress_buffer, "late", steps=5)

    nursery.start_soon(register_later)
    snapshots = await collect_snapshots(progress_store, "late")
    assert snapshots[0].status is JobStatus.QUEUED
    assert snapshots[-1].status is JobStatus.COMPLETED


async def test_collect_snapshots_of_an_ended_job_is_its_terminal_snapshot(
    progress_store, progress_buffer
):
    await progress_store.register("done")
    await progress_buffer.finish("done", "failed", error="boom")
    snapshots = await collect_snapshots(progress_store, "done")
    assert [s.status for s in snapshots] == [JobStatus.FAILED]
    assert snapshots[0].error == "boom"


async def test_collect_snapshots_times_out_in_virtual_time_with_what_it_saw(
    progress_store, progress_buffer, autojump_clock
):
    await progress_store.register("stuck")
    progress_buffer.report_nowait("stuck", percent=30.0, stage="hung")
    started = trio.current_time()
    with pytest.raises(
        WaitTimeoutError,
        match=r"job 'stuck' did not reach a terminal state within 5 s; "
        r"last snapshot: running 30% stage 'hung'",
    ) as caught:
        await collect_snapshots(progress_store, "stuck", timeout=5)
    assert trio.current_time() - started == pytest.approx(5.0)
    assert caught.value.timeout == 5.0
    assert [s.percent for s in caught.value.received] == [0.0, 30.0]
    assert isinstance(caught.value, TimeoutError)


async def test_collect_snapshots_of_a_job_never_registered_times_out(
    progress_store, autojump_clock
):
    with pytest.raises(WaitTimeoutError, match=r"within 2 s; no snapshot arrived") as caught:
        await collect_snapshots(progress_store, "ghost", timeout=2)
    assert caught.value.received == ()


@pytest.mark.parametrize(
    ("bad_timeout", "message"),
    [
        (0, "timeout must be a positive number of seconds, not 0"),
        (-1.0, "timeout must be a positive number of seconds, not -1.0"),
        (True, "timeout must be a positive number of seconds, not True"),
        ("5", "timeout must be a positive number of seconds, not '5'"),
        (float("nan"), "timeout must be a positive number of seconds, not nan"),
        (float("inf"), "timeout must be finite"),
    ],
)
async def test_waits_refuse_a_bad_timeout(progress_store, bad_timeout, message):
    with pytest.raises(ValueError, match=message):
        await collect_snapshots(progress_store, "job", timeout=bad_timeout)
    with pytest.raises(ValueError, match=message):
        await wait_for_snapshot(progress_store, "job", bool, timeout=bad_timeout)


# --- wait_for_snapshot ---


async def test_wait_for_snapshot_returns_the_first_snapshot_that_satisfies_the_condition(
    progress_store, progress_buffer, nursery, autojump_clock
):
    await progress_store.register("job")
    nursery.start_soon(produce, progress_buffer, "job")
    half = await wait_for_snapshot(progress_store, "job", lambda s: s.percent >= 50)
    assert 50 <= half.percent < 100
    assert half.status is JobStatus.RUNNING
    # The test still waits for the end: pytest-trio would cancel the producer on return.
    assert (await collect_snapshots(progress_store, "job"))[-1].is_terminal


async def test_wait_for_snapshot_times_out_in_virtual_time(
    progress_store, progress_buffer, autojump_clock
):
    await progress_store.register("job")
    progress_buffer.report_nowait("job", percent=10.0, stage="s")
    with pytest.raises(
        WaitTimeoutError,
        match=r"no snapshot of job 'job' satisfied the condition within 3 s; "
        r"last snapshot: running 10%",
    ) as caught:
        await wait_for_snapshot(progress_store, "job", lambda s: s.percent > 50, timeout=3)
    assert caught.value.received[-1].percent == 10.0


async def test_wait_for_snapshot_fails_when_the_job_ends_without_the_condition(
    progress_store, progress_buffer
):
    await progress_store.register("job")
    progress_buffer.report_nowait("job", percent=20.0, stage="s")
    await progress_buffer.finish("job", "cancelled")
    with pytest.raises(
        AssertionError,
        match=r"job 'job' ended cancelled at 20% without satisfying the condition",
    ):
        await wait_for_snapshot(progress_store, "job", lambda s: s.percent >= 50)


# --- checks ---


@dataclass
class Record:
    percent: float | None
    seq: int | None = None
    is_terminal: bool = False


def test_checks_pass_a_well_formed_sequence_and_return_the_terminal_record():
    records = [Record(0, 1), Record(None, None), Record(40, 3), Record(40, 4), Record(100, 5, True)]
    assert assert_stream_well_formed(records) is records[-1]


def test_percent_decreasing_is_reported_with_both_records():
    with pytest.raises(
        AssertionError,
        match=r"percent decreased: record 0 \(seq 1, percent 50\) then "
        r"record 2 \(seq 3, percent 40\)",
    ):
        assert_percent_never_decreases([Record(50, 1), Record(None, 2), Record(40, 3)])


def test_seq_not_increasing_is_reported():
    with pytest.raises(AssertionError, match=r"seq did not increase: record 0 \(seq 2"):
        assert_seq_increasing([Record(1, 2), Record(2, None), Record(3, 2)])


def test_no_terminal_record_is_reported():
    with pytest.raises(AssertionError, match=r"expected exactly one terminal record, got 0$"):
        assert_exactly_one_terminal([Record(10, 1)])


def test_two_terminal_records_are_reported_and_listed():
    with pytest.raises(
        AssertionError,
        match=r"got 2: record 1 \(seq 2, percent 100, terminal\); record 2 \(seq 3",
    ):
        assert_exactly_one_terminal([Record(1, 1), Record(100, 2, True), Record(100, 3, True)])


def test_a_record_after_the_terminal_one_is_reported():
    with pytest.raises(AssertionError, match=r"the last record is not terminal: record -1"):
        assert_terminal_last([Record(100, 1, True), Record(100, 2)])


def test_an_empty_sequence_has_no_terminal_record():
    with pytest.raises(AssertionError, match=r"no records: the stream ended before anything"):
        assert_terminal_last([])
    with pytest.raises(AssertionError, match=r"got 0"):
        assert_stream_well_formed([])
