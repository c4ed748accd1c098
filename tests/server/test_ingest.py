"""HTTP ingest on a real server on loopback: external jobs, one update, batches, terminal states.

Buffered updates are awaited through a store subscription (event-driven), never by sleeping.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import replace

import pytest
import trio
from httpx_sse import aconnect_sse
from progress_sync import MemoryStore
from progress_sync.server import ServerConfig, create_app, open_services
from progress_sync.server.testing import ProgressServer, start_progress_server
from progress_sync.testing import wait_for_snapshot


async def register(server: ProgressServer, **body: object) -> dict:
    async with server.client() as client:
        response = await client.post("/api/jobs", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# --- registering external jobs -------------------------------------------------------------


async def test_an_external_job_is_registered_running_with_the_clients_id(progress_server):
    async with progress_server.client() as client:
        response = await client.post(
            "/api/jobs", json={"jobId": "render-1", "stage": "setup", "message": "hi"}
        )
    assert response.status_code == 201
    assert response.json() == {
        "jobId": "render-1",
        "status": "running",
        "statusUrl": "/api/jobs/render-1",
        "streamUrl": "/api/jobs/render-1/progress/stream",
    }
    assert response.headers["location"] == "/api/jobs/render-1"
    snapshot = await progress_server.store.get("render-1")
    assert (snapshot.kind, snapshot.stage, snapshot.message) == (None, "setup", "hi")


@pytest.mark.parametrize(("given", "stored"), [("Pending", "queued"), ("IN_PROGRESS", "running")])
async def test_the_initial_status_may_be_an_alias(progress_server, given, stored):
    body = await register(progress_server, status=given)
    assert body["status"] == stored
    assert len(body["jobId"]) == 32


async def test_registering_an_existing_id_is_a_409(progress_server):
    await register(progress_server, jobId="dup")
    async with progress_server.client() as client:
        response = await client.post("/api/jobs", json={"jobId": "dup"})
    assert response.status_code == 409
    assert response.json()["field"] == "jobId"
    assert "registered already" in response.json()["detail"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"status": "completed"}, "status", "queued or running, not completed"),
        ({"status": "bogus"}, "status", "unknown status 'bogus'"),
        ({"params": {"a": 1}}, "params", "only jobs with a kind take params"),
        ({"kind": "demo", "status": "running"}, "status", "only external jobs"),
        ({"jobId": "bad id"}, "jobId", "must be 1-128 letters"),
        ({"stage": "x" * 201}, "stage", "at most 200 characters"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
async def test_bad_registrations_name_the_field(progress_server, body, field, detail):
    async with progress_server.client() as client:
        response = await client.post("/api/jobs", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert detail in response.json()["detail"]


# --- one update ------------------------------------------------------------------------------


async def test_one_update_goes_through_the_buffer_to_the_stream(progress_server):
    job = await register(progress_server, jobId="one")
    async with progress_server.client() as client:
        response = await client.post(
            "/api/jobs/one/progress", json={"percent": 42.5, "stage": "encode", "message": "m"}
        )
        assert response.status_code == 202
        assert response.json() == {"accepted": 1}
        snapshot = await wait_for_snapshot(
            progress_server.store, "one", lambda s: s.percent == 42.5
        )
        assert (snapshot.stage, snapshot.message) == ("encode", "m")
        health = (await client.get("/healthz")).json()
    assert health["sink"]["reportsReceived"] >= 1
    assert job["streamUrl"] == "/api/jobs/one/progress/stream"


async def test_reported_at_is_kept_as_the_producers_time(progress_server):
    await register(progress_server, jobId="stamped")
    stamp = time.time() + 1.0
    async with progress_server.client() as client:
        response = await client.post(
            "/api/jobs/stamped/progress", json={"percent": 5, "stage": "s", "reportedAt": stamp}
        )
    assert response.status_code == 202
    snapshot = await wait_for_snapshot(progress_server.store, "stamped", lambda s: s.percent == 5)
    assert snapshot.reported_at == stamp


async def test_an_update_for_an_unknown_job_is_a_404(progress_server):
    async with progress_server.client() as client:
        response = await client.post("/api/jobs/ghost/progress", json={"percent": 1})
    assert response.status_code == 404
    assert response.json() == {
        "error": "job not found",
        "code": "job_not_found",
        "detail": "no job with id 'ghost'",
        "field": "jobId",
    }


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"percent": 101}, "percent", "from 0 to 100, not 101.0"),
        ({"percent": "50"}, "percent", "not str"),
        ({"stage": "x"}, "percent", "is required"),
        ({"percent": 1, "stage": 5}, "stage", "must be a string"),
        ({"percent": 1, "message": "m" * 2001}, "message", "at most 2000"),
        ({"percent": 1, "reportedAt": "now"}, "reportedAt", "not str"),
        ({"percent": 1, "reportedAt": time.time() + 3600}, "reportedAt", "ahead of the server"),
        ({"percent": 1, "jobId": "other"}, "jobId", "differs from the job id in the URL"),
        ({"percent": 1, "pct": 2}, "pct", "unknown field"),
        ([1, 2], "body", "must be a JSON object, not an array"),
    ],
)
async def test_a_bad_update_is_a_400_naming_the_field(progress_server, body, field, detail):
    await register(progress_server, jobId="bad")
    async with progress_server.client() as client:
        response = await client.post("/api/jobs/bad/progress", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert detail in response.json()["detail"]


async def test_an_update_that_is_not_json_is_a_400(progress_server):
    await register(progress_server, jobId="nj")
    async with progress_server.client() as client:
        response = await client.post("/api/jobs/nj/progress", content=b"{percent: 1")
        empty = await client.post("/api/jobs/nj/progress", content=b"")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]
    assert empty.status_code == 400
    assert "is empty" in empty.json()["detail"]


async def test_an_update_for_an_ended_job_is_a_409(progress_server):
    await register(progress_server, jobId="ended")
    async with progress_server.client() as client:
        assert (await client.post("/api/jobs/ended/complete")).status_code == 200
        response = await client.post("/api/jobs/ended/progress", json={"percent": 1})
    assert response.status_code == 409
    assert response.json()["error"] == "job finished"


async def test_a_job_the_server_runs_takes_no_progress_or_finish_over_http(progress_server):
    async with progress_server.client() as client:
        created = await client.post(
            "/api/jobs", json={"kind": "demo", "jobId": "own", "params": {"durationS": 30}}
        )
        assert created.status_code == 201
        progress = await client.post("/api/jobs/own/progress", json={"percent": 1})
        complete = await client.post("/api/jobs/own/complete")
        batch = await client.post("/api/progress", json=[{"jobId": "own", "percent": 1}])
        await client.post("/api/jobs/own/cancel")
    assert progress.status_code == 409
    assert complete.status_code == 409
    assert "the server runs" in complete.json()["detail"]
    assert batch.json()["accepted"] == 0
    assert batch.json()["errors"][0]["field"] == "jobId"


# --- batches ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_json_array_batch_updates_many_jobs(progress_server):
    for n in range(3):
        await register(progress_server, jobId=f"b{n}")
    lines = [{"jobId": f"b{n}", "percent": 10.0 * (n + 1), "stage": "s"} for n in range(3)]
    lines.append({"jobId": "b0", "percent": 99.0, "stage": "later"})  # coalesced: latest wins
    async with progress_server.client() as client:
        response = await client.post("/api/progress", json=lines)
    assert response.status_code == 200
    assert response.json() == {"accepted": 4, "errors": [], "unknownJobs": [], "finishedJobs": []}
    assert (
        await wait_for_snapshot(progress_server.store, "b0", lambda s: s.percent == 99)
    ).stage == "later"
    assert (
        await wait_for_snapshot(progress_server.store, "b2", lambda s: s.percent == 30)
    ).stage == "s"


@pytest.mark.slow
async def test_ndjson_with_malformed_lines_among_good_ones_applies_the_good_ones(progress_server):
    await register(progress_server, jobId="nd1")
    await register(progress_server, jobId="nd2")
    body = "\n".join(
        [
            json.dumps({"jobId": "nd1", "percent": 25, "stage": "a"}),
            "{this is not json",
            json.dumps({"jobId": "nd2", "percent": 150}),
            "",
            json.dumps({"jobId": "nd2", "percent": 60, "stage": "b"}),
            json.dumps({"percent": 1}),
            json.dumps(["not", "an", "object"]),
            json.dumps({"jobId": "nobody", "percent": 3}),
        ]
    )
    async with progress_server.client() as client:
        response = await client.post(
            "/api/progress", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
    assert response.status_code == 200
    answer = response.json()
    assert answer["accepted"] == 2
    assert answer["unknownJobs"] == ["nobody"]
    errors = {e["line"]: (e["field"], e["reason"]) for e in answer["errors"]}
    assert set(errors) == {2, 3, 6, 7}
    assert errors[2][0] == "body"
    assert "not valid JSON" in errors[2][1]
    assert errors[3][0] == "percent"
    assert "not 150.0" in errors[3][1]
    assert errors[6] == ("jobId", "is required")
    assert errors[7][0] == "body"
    assert "not an array" in errors[7][1]
    await wait_for_snapshot(progress_server.store, "nd1", lambda s: s.percent == 25)
    await wait_for_snapshot(progress_server.store, "nd2", lambda s: s.percent == 60)


async def test_updates_for_unknown_and_ended_jobs_are_reported_not_dropped(progress_server):
    await register(progress_server, jobId="live")
    await register(progress_server, jobId="done")
    async with progress_server.client() as client:
        await client.post("/api/jobs/done/fail", json={"error": "x"})
        response = await client.post(
            "/api/progress",
            json=[
                {"jobId": "live", "percent": 1},
                {"jobId": "ghost-1", "percent": 1},
                {"jobId": "ghost-1", "percent": 2},
                {"jobId": "ghost-2", "percent": 1},
                {"jobId": "done", "percent": 1},
            ],
        )
    assert response.json() == {
        "accepted": 1,
        "errors": [],
        "unknownJobs": ["ghost-1", "ghost-2"],
        "finishedJobs": ["done"],
    }


async def test_an_oversized_batch_is_a_413_and_changes_nothing(nursery, progress_server_config):
    server = await start_progress_server(
        nursery, replace(progress_server_config, max_batch_updates=100)
    )
    await register(server, jobId="big")
    lines = [{"jobId": "big", "percent": i / 10} for i in range(101)]
    ndjson = "\n".join(json.dumps(line) for line in lines)
    async with server.client() as client:
        response = await client.post("/api/progress", json=lines)
        as_ndjson = await client.post(
            "/api/progress", content=ndjson, headers={"Content-Type": "application/x-ndjson"}
        )
        fits = await client.post("/api/progress", json=lines[:100])
    for refused in (response, as_ndjson):
        assert refused.status_code == 413
        assert refused.json()["error"] == "batch too large"
        assert "at most 100 updates" in refused.json()["detail"]
    assert fits.json()["accepted"] == 100
    server.stop.set()


async def test_a_body_over_the_byte_limit_is_a_413(nursery, progress_server_config):
    server = await start_progress_server(
        nursery, replace(progress_server_config, max_body_bytes=2048)
    )
    lines = [{"jobId": "x", "percent": 1, "stage": "s" * 100} for _ in range(30)]
    async with server.client() as client:
        response = await client.post("/api/progress", json=lines)
    assert response.status_code == 413
    assert response.json() == {
        "error": "request too large",
        "code": "request_too_large",
        "detail": "the body is larger than 2048 bytes (--max-body-bytes); send smaller batches",
        "field": "body",
    }
    server.stop.set()


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"jobId": "x", "percent": 1}', "must be a JSON array of updates, not an object"),
        (b"[{", "is not valid JSON"),
        (b"", "is empty"),
    ],
)
async def test_a_json_batch_that_is_not_an_array_is_a_400(progress_server, content, detail):
    async with progress_server.client() as client:
        response = await client.post(
            "/api/progress", content=content, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert detail in response.json()["detail"]


# --- terminal states -------------------------------------------------------------------------


async def collect_events(
    server: ProgressServer, job_id: str, into: list, ready: trio.Event, done: trio.Event
) -> None:
    async with (
        server.client() as client,
        aconnect_sse(client, "GET", f"/api/jobs/{job_id}/progress/stream") as source,
    ):
        async for event in source.aiter_sse():
            if not event.data:
                continue
            into.append((event.event, json.loads(event.data)))
            ready.set()
            if event.event != "job-progress":
                done.set()  # the server ends the stream after it; read on to the end


async def test_complete_answers_after_the_terminal_state_is_stored_and_streamed(
    progress_server, nursery
):
    await register(progress_server, jobId="fin")
    events: list = []
    ready, done = trio.Event(), trio.Event()
    nursery.start_soon(collect_events, progress_server, "fin", events, ready, done)
    await ready.wait()
    async with progress_server.client() as client:
        await client.post("/api/jobs/fin/progress", json={"percent": 70, "stage": "mux"})
        response = await client.post("/api/jobs/fin/complete", json={"result": {"file": "a.mp4"}})
        # Synchronous: the store holds the terminal state when the answer arrives.
        assert (await progress_server.store.get("fin")).status.value == "completed"
        again = await client.post("/api/jobs/fin/complete")
    assert response.status_code == 200
    snapshot = response.json()
    assert (snapshot["status"], snapshot["percent"], snapshot["result"]) == (
        "completed",
        100.0,
        {"file": "a.mp4"},
    )
    assert again.status_code == 409
    assert again.json()["error"] == "job finished"
    with trio.fail_after(10):
        await done.wait()
    assert events[-1][0] == "job-completed"
    assert events[-1][1]["result"] == {"file": "a.mp4"}


async def test_fail_keeps_the_latest_progress_and_the_error(progress_server):
    await register(progress_server, jobId="f")
    async with progress_server.client() as client:
        await client.post("/api/jobs/f/progress", json={"percent": 33, "stage": "upload"})
        response = await client.post("/api/jobs/f/fail", json={"error": "disk full"})
        no_error = await client.post("/api/jobs/f/fail", json={})
    snapshot = response.json()
    assert response.status_code == 200
    assert (snapshot["status"], snapshot["error"], snapshot["percent"], snapshot["stage"]) == (
        "failed",
        "disk full",
        33.0,
        "upload",
    )
    assert no_error.status_code == 400
    assert no_error.json()["field"] == "error"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "field", "detail"),
    [
        ("fail", {"error": ""}, "error", "non-empty string"),
        ("fail", {"error": 5}, "error", "non-empty string"),
        ("fail", {"error": "e" * 2001}, "error", "at most 2000"),
        ("fail", {"error": "x", "extra": 1}, "extra", "unknown field"),
        ("complete", {"result": 1, "status": "x"}, "status", "unknown field"),
        ("complete", [1], "body", "must be a JSON object"),
    ],
)
async def test_bad_terminal_requests_name_the_field(progress_server, path, body, field, detail):
    await register(progress_server, jobId="t")
    async with progress_server.client() as client:
        response = await client.post(f"/api/jobs/t/{path}", json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert detail in response.json()["detail"]
    assert (await progress_server.store.get("t")).status.value == "running"


async def test_cancel_of_an_external_job_is_synchronous(progress_server):
    await register(progress_server, jobId="c")
    async with progress_server.client() as client:
        response = await client.post("/api/jobs/c/cancel", json={})
        unknown = await client.post("/api/jobs/nope/complete")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert (await progress_server.store.get("c")).status.value == "cancelled"
    assert unknown.status_code == 404


# --- edge cases through Quart's test client (no network) -------------------------------------


async def test_reports_while_the_buffer_is_closed_get_503():
    store = MemoryStore()
    await store.register("late")
    async with open_services(ServerConfig(), store) as services:
        app = create_app(services)
    # The buffer closed with the block: the server is shutting down.
    response = await app.test_client().post("/api/jobs/late/progress", json={"percent": 1})
    assert response.status_code == 503
    body = await response.get_json()
    assert body["error"] == "shutting down"
    assert response.headers["Retry-After"] == "1"


class FinishedElsewhere:
    """A sink whose job is cancelled by someone else just before this request's finish lands."""

    def __init__(self, sink) -> None:
        self._sink = sink

    def report_nowait(self, *args, **kwargs) -> None:
        self._sink.report_nowait(*args, **kwargs)

    async def finish(self, job_id, status, **outcome):
        await self._sink.finish(job_id, "cancelled")
        return await self._sink.finish(job_id, status, **outcome)

    def statistics(self):
        return self._sink.statistics()


async def test_a_finish_that_loses_the_race_is_a_409():
    store = MemoryStore()
    await store.register("raced")
    async with open_services(ServerConfig(), store) as services:
        app = create_app(dataclasses.replace(services, sink=FinishedElsewhere(services.sink)))
        response = await app.test_client().post("/api/jobs/raced/complete")
    assert response.status_code == 409
    assert "ended already with status 'cancelled'" in (await response.get_json())["detail"]
    assert (await store.get("raced")).status.value == "cancelled"
