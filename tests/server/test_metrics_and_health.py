"""``/metrics`` (Prometheus text, parsed by prometheus-client) and ``/healthz``; virtual time."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import trio
from progress_sync import JobSnapshot, JobStatus, MemoryStore
from progress_sync.server import create_app
from progress_sync.server.testing import open_in_process_server
from prometheus_client.parser import text_string_to_metric_families


async def scrape(server) -> dict[tuple[str, tuple], float]:
    response = await server.client().get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = (await response.get_data()).decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


async def test_metrics_move_as_jobs_report_and_streams_send(autojump_clock):
    async with open_in_process_server(heartbeat_interval=5.0) as server:
        before = await scrape(server)
        assert before[("progress_sync_reports_received_total", ())] == 0
        await server.store.register("job-1")
        async with server.request("/api/jobs/job-1/progress/stream") as stream:
            await stream.next_event()
            for percent in range(1, 11):
                server.sink.report_nowait("job-1", float(percent), "work")
            during = await scrape(server)
            assert during[("progress_sync_buffer_depth", ())] == 10
            assert during[("progress_sync_subscribers", ())] == 1
            assert during[("progress_sync_open_streams", ())] == 1
            await stream.next_event()  # the flush, coalesced to one event
            await stream.receive_chunk()  # a heartbeat 5 s later
            await server.sink.finish("job-1", "completed")
            await stream.read_all()
        after = await scrape(server)
    assert after[("progress_sync_reports_received_total", ())] == 10
    assert after[("progress_sync_reports_coalesced_total", ())] == 9
    assert after[("progress_sync_reports_overflowed_total", ())] == 0
    assert after[("progress_sync_flushes_total", ())] == 1
    assert after[("progress_sync_store_writes_total", ())] == 3  # register, batch, finish
    assert after[("progress_sync_buffer_depth", ())] == 0
    assert after[("progress_sync_subscribers", ())] == 0
    assert after[("progress_sync_events_sent_total", (("event", "job-progress"),))] == 2
    assert after[("progress_sync_events_sent_total", (("event", "job-completed"),))] == 1
    assert after[("progress_sync_terminal_events_total", ())] == 1
    assert after[("progress_sync_heartbeats_total", ())] == 1
    assert after[("progress_sync_flush_duration_seconds_count", ())] == 1
    # The snapshot the stream opened with is the state it connected to, not a delivery: only
    # the two live changes (the flushed progress and the terminal state) have a latency.
    assert after[("progress_sync_report_to_send_seconds_count", ())] == 2
    # Virtual time does not move the wall clock: the latency is the real time it took.
    assert after[("progress_sync_report_to_send_seconds_sum", ())] < 5.0


async def test_report_to_send_latency_is_measured_from_reportedAt(autojump_clock):
    snapshot = JobSnapshot(
        job_id="job-1", status=JobStatus.RUNNING, percent=1.0, stage="", message=None, seq=9,
        created_at=0.0, updated_at=0.0, reported_at=time.time() - 0.3,
    )  # fmt: skip
    async with open_in_process_server() as server:
        server.services.metrics.snapshot_sent(snapshot)
        samples = await scrape(server)
    le_025 = ("progress_sync_report_to_send_seconds_bucket", (("le", "0.25"),))
    le_05 = ("progress_sync_report_to_send_seconds_bucket", (("le", "0.5"),))
    assert samples[le_025] == 0
    assert samples[le_05] == 1


class FlakyStore(MemoryStore):
    """A store whose batch writes fail with a bug while ``broken`` is set."""

    broken = False

    async def apply_progress(self, updates):
        if self.broken:
            raise RuntimeError("disk on fire")
        return await super().apply_progress(updates)


async def test_a_failing_drain_turns_health_unhealthy_is_logged_and_recovers(
    autojump_clock, caplog
):
    store = FlakyStore()
    async with open_in_process_server(store=store, flush_interval=0.5) as server:
        await store.register("job-1")
        client = server.client()
        healthy = await client.get("/healthz")
        assert healthy.status_code == 200
        assert (await healthy.get_json())["status"] == "ok"
        store.broken = True
        server.sink.report_nowait("job-1", 30.0, "work")
        with caplog.at_level(logging.ERROR, logger="progress_sync._buffer"):
            await trio.sleep(1.2)
        sick = await client.get("/healthz")
        assert sick.status_code == 503
        body = await sick.get_json()
        assert body["status"] == "unhealthy"
        assert "RuntimeError: disk on fire" in body["reason"]
        failure_logs = [
            r for r in caplog.records if "flush of the update buffer failed" in r.message
        ]
        assert failure_logs
        assert failure_logs[0].exc_info is not None
        assert server.sink.statistics().draining
        # It never silently stops delivering: once the store works, the state arrives.
        store.broken = False
        await trio.sleep(0.6)
        assert (await store.get("job-1")).percent == 30.0
        assert (await client.get("/healthz")).status_code == 200
        samples = await scrape(server)
        assert samples[("progress_sync_flush_failures_total", ())] >= 1


async def test_health_is_unhealthy_when_the_drain_task_is_not_running(autojump_clock):
    class StoppedSink:
        def __init__(self, sink):
            self._sink = sink

        def statistics(self):
            return replace(self._sink.statistics(), draining=False)

    async with open_in_process_server() as server:
        services = replace(server.services, sink=StoppedSink(server.sink))
        response = await create_app(services).test_client().get("/healthz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["status"] == "unhealthy"
    assert body["reason"] == "the update buffer's drain task is not running"
