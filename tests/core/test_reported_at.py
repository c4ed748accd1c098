"""``report_nowait(..., reported_at=...)``: a producer's own timestamp, on both sinks."""

from __future__ import annotations

import math

import pytest
from progress_sync import (
    InvalidUpdateError,
    JobStatus,
    MemoryStore,
    check_reported_at,
    open_direct_sync,
    open_update_buffer,
)


@pytest.mark.parametrize("open_sink", [open_update_buffer, open_direct_sync])
async def test_reported_at_becomes_the_snapshots_reported_at(open_sink):
    store = MemoryStore()
    snapshot = await store.register("j", status=JobStatus.RUNNING)
    stamp = snapshot.reported_at + 1.5
    async with open_sink(store) as sink:
        sink.report_nowait("j", 10.0, "a", reported_at=stamp)
    assert (await store.get("j")).reported_at == stamp


@pytest.mark.parametrize("open_sink", [open_update_buffer, open_direct_sync])
async def test_an_older_reported_at_is_ignored_as_stale(open_sink):
    store = MemoryStore()
    snapshot = await store.register("j", status=JobStatus.RUNNING)
    async with open_sink(store) as sink:
        sink.report_nowait("j", 50.0, "new", reported_at=snapshot.reported_at + 10)
    async with open_sink(store) as sink:
        sink.report_nowait("j", 20.0, "old", reported_at=snapshot.reported_at + 5)
    current = await store.get("j")
    assert (current.percent, current.stage) == (50.0, "new")
    assert store.statistics().ignored_stale == 1


async def test_an_int_reported_at_is_taken_as_seconds():
    store = MemoryStore()
    snapshot = await store.register("j", status=JobStatus.RUNNING)
    stamp = math.ceil(snapshot.reported_at) + 1
    async with open_update_buffer(store) as buffer:
        buffer.report_nowait("j", 1.0, "a", reported_at=stamp)
    assert (await store.get("j")).reported_at == float(stamp)


@pytest.mark.parametrize("open_sink", [open_update_buffer, open_direct_sync])
@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ("1700000000", "not str"),
        (True, "not bool"),
        (-1.0, "not -1.0"),
        (math.nan, "not nan"),
        (math.inf, "not inf"),
    ],
)
async def test_a_malformed_reported_at_is_refused_naming_the_field(open_sink, bad, reason):
    async with open_sink(MemoryStore()) as sink:
        with pytest.raises(InvalidUpdateError, match=f"reportedAt: .*{reason}"):
            sink.report_nowait("j", 1.0, "a", reported_at=bad)


def test_check_reported_at_returns_a_float():
    assert check_reported_at(1_700_000_000) == 1_700_000_000.0
    assert type(check_reported_at(1)) is float
