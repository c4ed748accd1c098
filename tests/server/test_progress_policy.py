"""The progress policy end to end: the kit's check and the monotonic rule with ``reset``, a
reset carried through the buffer's coalescing, and the ingest API's ``etaSeconds`` / ``reset``.

Pipeline cases in virtual time; the HTTP cases on a real server (real clock).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import trio
from progress_sync import JobStatus, MemoryStore, open_update_buffer
from progress_sync.testing import assert_percent_never_decreases, wait_for_snapshot


@dataclass
class Record:
    percent: float | None
    seq: int | None
    is_terminal: bool = False
    attempt: int | None = None


def test_the_kit_allows_a_decrease_only_with_a_new_attempt():
    assert_percent_never_decreases(
        [Record(20, 2), Record(80, 3), Record(5, 4, attempt=2), Record(6, 5, attempt=2)]
    )
    with pytest.raises(AssertionError, match=r"record 1 \(seq 3, percent 80\) then record 2"):
        assert_percent_never_decreases([Record(20, 2), Record(80, 3), Record(40, 4)])
    with pytest.raises(AssertionError, match="percent decreased"):
        assert_percent_never_decreases([Record(80, 3, attempt=2), Record(40, 4, attempt=2)])


async def test_a_reset_coalesced_with_a_later_report_is_not_lost(autojump_clock):
    store = MemoryStore()
    await store.register("job", status=JobStatus.RUNNING)
    async with open_update_buffer(store, flush_interval=1.0, capacity=2) as buffer:
        buffer.report_nowait("job", 80.0, "first try")
        await buffer.flush()
        buffer.report_nowait("job", 2.0, "again", reset=True)
        for percent in (3.0, 4.0, 5.0):  # overflow: the channel holds 2
            buffer.report_nowait("job", percent, "again")
        await buffer.flush()
    snapshot = await store.get("job")
    assert (snapshot.percent, snapshot.attempt, snapshot.stage) == (5.0, 2, "again")


async def test_the_ingest_api_takes_eta_seconds_and_reset(progress_server):
    store = progress_server.store
    async with progress_server.client() as http:
        await http.post("/api/jobs", json={"jobId": "p1"})
        answer = await http.post("/api/jobs/p1/progress", json={"percent": 60, "etaSeconds": 42})
        assert answer.status_code == 202, answer.text
        first = await wait_for_snapshot(store, "p1", lambda s: s.percent == 60)
        assert first.eta_seconds == 42.0
        answer = await http.post("/api/jobs/p1/progress", json={"percent": 30, "stage": "b"})
        kept = await wait_for_snapshot(store, "p1", lambda s: s.stage == "b")
        assert (kept.percent, kept.attempt, kept.eta_seconds) == (60, 1, None)
        batch = [{"jobId": "p1", "percent": 10, "reset": True, "etaSeconds": 90.25}]
        answer = await http.post("/api/progress", json=batch)
        assert answer.json()["accepted"] == 1
        await wait_for_snapshot(store, "p1", lambda s: s.attempt == 2)
        snapshot = (await http.get("/api/jobs/p1")).json()
        assert (snapshot["percent"], snapshot["attempt"], snapshot["etaSeconds"]) == (
            10,
            2,
            90.2,
        )
        for field, value in (("reset", "yes"), ("etaSeconds", -1), ("etaSeconds", "soon")):
            answer = await http.post("/api/jobs/p1/progress", json={"percent": 1, field: value})
            assert answer.status_code == 400, answer.text
            assert answer.json()["field"] == field
        health = (await http.get("/healthz")).json()
        assert health["store"]["lowerPercentKept"] == 1


async def test_the_clients_send_eta_seconds_and_a_reset_that_survives_coalescing(progress_server):
    from progress_sync.client import ProgressClient, open_progress_client

    store = progress_server.store
    async with open_progress_client(progress_server.base_url, flush_interval=0.05) as client:
        await client.register("c1")
        client.report_nowait("c1", 70.0, "first", eta_seconds=12.0)
        await wait_for_snapshot(store, "c1", lambda s: s.percent == 70)
        assert (await store.get("c1")).eta_seconds == 12.0
        client.report_nowait("c1", 1.0, "again", reset=True)
        client.report_nowait("c1", 2.0, "again")  # replaces it before the batch: reset kept
        again = await wait_for_snapshot(store, "c1", lambda s: s.stage == "again")
        assert (again.percent, again.attempt) == (2.0, 2)

    def sync_producer() -> None:
        with ProgressClient(progress_server.base_url, flush_interval=0.05) as sync_client:
            sync_client.register("c2")
            sync_client.report_nowait("c2", 30.0, "x", eta_seconds=5.5)
            sync_client.flush()
            sync_client.report_nowait("c2", 10.0, "y", reset=True)
            sync_client.flush()

    await trio.to_thread.run_sync(sync_producer)
    final = await wait_for_snapshot(store, "c2", lambda s: s.stage == "y")
    assert (final.percent, final.attempt) == (10.0, 2)


async def test_a_job_the_runner_runs_can_start_over_and_give_its_own_eta(autojump_clock):
    from progress_sync import JobKind, open_job_runner

    async def retrying(reporter, params):  # type: ignore[no-untyped-def]
        reporter.report(60.0, "try 1", eta_seconds=30.0)
        await trio.sleep(1)
        reporter.report(10.0, "try 2", reset=True)
        await trio.sleep(1)
        return "ok"

    store = MemoryStore()
    seen = []
    kind = JobKind(name="retrying", run=retrying, parse_params=lambda raw: dict(raw))
    async with (
        open_update_buffer(store, flush_interval=0.1) as buffer,
        open_job_runner(store, buffer, kinds={"retrying": kind}) as runner,
    ):
        job = await runner.submit("retrying", {})
        async with store.subscribe(job.job_id) as subscription:
            seen = [snapshot async for snapshot in subscription]
    running = [s for s in seen if s.status is JobStatus.RUNNING and s.stage]
    assert (running[0].percent, running[0].eta_seconds) == (60.0, 30.0)
    assert (running[-1].percent, running[-1].attempt) == (10.0, 2)
    assert_percent_never_decreases(seen)
