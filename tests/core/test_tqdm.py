"""ReportingTqdm in process: a real tqdm loop in a worker thread reports via a thread reporter."""

from __future__ import annotations

import io
import time

import pytest
import trio
from progress_sync import (
    JobStatus,
    MemoryStore,
    ReportingTqdm,
    open_thread_reporter,
    open_update_buffer,
)
from test_threads import wait_for_percent


@pytest.mark.slow
async def test_a_tqdm_loop_in_a_worker_thread_reports_to_its_job():
    store = MemoryStore()
    await store.register("tq", status=JobStatus.RUNNING)

    def work(report) -> None:
        for _ in ReportingTqdm(range(60), report=report, desc="resize", file=io.StringIO()):
            time.sleep(0.005)

    async with (
        open_update_buffer(store, flush_interval=0.02) as buffer,
        open_thread_reporter(buffer) as reporter,
        trio.open_nursery() as nursery,
    ):
        seen: list[float] = []

        async def follow() -> None:
            seen.extend(await wait_for_percent(store, "tq", 100.0))

        nursery.start_soon(follow)
        await trio.to_thread.run_sync(work, reporter.for_job("tq").report)
    snapshot = await store.get("tq")
    assert (snapshot.percent, snapshot.stage, snapshot.message) == (100.0, "resize", "60/60 it")
    assert seen == sorted(seen)
    assert len(set(seen)) >= 3  # about 0.3 s of work, flushed every 20 ms


def test_reports_follow_redraws_and_the_close():
    calls: list[tuple[float, str, str | None]] = []
    bar = ReportingTqdm(
        total=200,
        report=lambda *args: calls.append(args),
        stage="upload",
        unit="B",
        file=io.StringIO(),
        mininterval=0,
        miniters=1,
    )
    bar.update(50)
    bar.update(50)
    bar.close()
    assert calls[0] == (0.0, "upload", "0/200 B")
    assert calls[1:] == [(25.0, "upload", "50/200 B"), (50.0, "upload", "100/200 B")]


def test_without_a_total_nothing_is_reported():
    calls: list = []
    for _ in ReportingTqdm(iter(range(10)), report=lambda *a: calls.append(a), file=io.StringIO()):
        pass
    assert calls == []


def test_a_disabled_bar_reports_nothing():
    calls: list = []
    for _ in ReportingTqdm(range(10), report=lambda *a: calls.append(a), disable=True):
        pass
    assert calls == []


def test_report_is_required():
    with pytest.raises(TypeError, match="ReportingTqdm needs report="):
        ReportingTqdm(range(3))
