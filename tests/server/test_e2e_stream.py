"""End to end: a real Hypercorn server on a loopback port and a real SSE client (httpx-sse),
through the test kit (``progress_server`` is the kit's ``progress_server``)."""

from __future__ import annotations

import pytest
from progress_sync.server.testing import (
    TERMINAL_EVENTS,
    ProgressServer,
    assert_stream_well_formed,
    open_event_stream,
)

__all__ = ["TERMINAL_EVENTS", "collect"]


async def collect(server: ProgressServer, job_id: str) -> list[tuple[str, str, dict]]:
    """Follow a job's stream to its end; returns (event, id, data) for each event."""
    async with server.client() as client, open_event_stream(client, job_id) as stream:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        assert stream.response.headers["cache-control"] == "no-cache, no-transform"
        assert stream.response.headers["x-accel-buffering"] == "no"
        return [(event.event, event.id or "", event.payload) async for event in stream]


@pytest.mark.slow
async def test_demo_job_streams_increasing_progress_then_completed(progress_server):
    async with progress_server.client() as client:
        response = await client.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 1.0, "updatesPerS": 100}}
        )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"jobId", "status", "statusUrl", "streamUrl"}
    assert body["status"] in ("queued", "running")
    async with progress_server.client() as client:
        async with open_event_stream(client, body["jobId"]) as stream:
            events = [event async for event in stream]
        assert stream.retry == 2000
    final = assert_stream_well_formed(events)
    progress = [event.percent for event in events if event.event == "job-progress"]
    assert any(p >= 25 for p in progress)
    assert any(p >= 50 for p in progress)
    assert any(p >= 75 for p in progress)
    assert final.event == "job-completed"
    assert final.percent == 100
    assert final.status == "completed"
    assert final.payload["result"]["output"] == f"{body['jobId']}.mp4"


async def test_failing_job_streams_job_failed_with_its_message(progress_server):
    async with progress_server.client() as client:
        params = {"durationS": 0.5, "updatesPerS": 40, "failAtPercent": 50}
        response = await client.post("/api/jobs", json={"kind": "demo", "params": params})
    events = await collect(progress_server, response.json()["jobId"])
    name, _, final = events[-1]
    assert name == "job-failed"
    assert final["status"] == "failed"
    assert "simulated failure at 50.0%" in final["error"]
    assert all(n == "job-progress" for n, _, _ in events[:-1])


@pytest.mark.slow
async def test_unknown_job_stream_ends_with_job_error_after_registration_timeout(progress_server):
    events = await collect(progress_server, "no-such-job")
    assert [name for name, _, _ in events] == ["job-error"]
    assert events[0][2]["jobId"] == "no-such-job"
    assert "not registered within 1 s" in events[0][2]["detail"]


async def test_stream_opened_before_registration_gets_the_job_once_registered(progress_server):
    async with (
        progress_server.client() as client,
        open_event_stream(client, "late-job") as stream,
    ):
        # The stream is open (its headers arrived) before the job exists.
        assert stream.response.status_code == 200
        response = await client.post(
            "/api/jobs",
            json={"kind": "demo", "jobId": "late-job", "params": {"durationS": 0.2}},
        )
        assert response.status_code == 201
        events = [event async for event in stream]
    assert assert_stream_well_formed(events).event == "job-completed"
    assert events[0].payload["jobId"] == "late-job"


async def test_polling_fallback_returns_the_snapshot(progress_server):
    async with progress_server.client() as client:
        created = await client.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.2}}
        )
        job_id = created.json()["jobId"]
        response = await client.get(f"/api/jobs/{job_id}")
        assert response.status_code == 200
        snapshot = response.json()
        assert snapshot["jobId"] == job_id
        assert set(snapshot) >= {
            "jobId",
            "status",
            "percent",
            "stage",
            "message",
            "seq",
            "createdAt",
            "updatedAt",
            "error",
            "result",
        }
        assert snapshot["createdAt"].endswith("Z")
        missing = await client.get("/api/jobs/nope")
        assert missing.status_code == 404
        assert missing.json()["field"] == "jobId"


async def test_cancel_ends_the_job_cancelled(progress_server):
    async with progress_server.client() as client:
        created = await client.post("/api/jobs", json={"kind": "demo", "params": {"durationS": 30}})
        job_id = created.json()["jobId"]
        response = await client.post(f"/api/jobs/{job_id}/cancel")
        assert response.status_code == 202
        assert response.json()["status"] == "cancelled"
        again = await client.post(f"/api/jobs/{job_id}/cancel")
        assert again.status_code == 409
    events = await collect(progress_server, job_id)
    assert [name for name, _, _ in events] == ["job-cancelled"]
