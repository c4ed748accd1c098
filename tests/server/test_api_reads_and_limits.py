"""Polling with ETag, the job list, request limits, CORS and the OpenAPI document.

Rules: virtual time; requests whose response ends go through Quart's test client.
"""

from __future__ import annotations

import json

import pytest
from progress_sync import MAX_MESSAGE_LENGTH, MAX_STAGE_LENGTH, InvalidUpdateError
from progress_sync.server.testing import open_in_process_server


async def test_get_job_sends_an_etag_and_answers_if_none_match_with_304(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        client = server.client()
        first = await client.get("/api/jobs/job-1")
        etag = first.headers["ETag"]
        assert first.status_code == 200
        assert etag.startswith('"1-')
        assert first.headers["Cache-Control"] == "no-cache"
        for condition in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = await client.get("/api/jobs/job-1", headers={"If-None-Match": condition})
            assert again.status_code == 304, condition
            assert await again.get_data() == b""
            assert again.headers["ETag"] == etag
        server.sink.report_nowait("job-1", 5.0, "moving")
        await server.sink.flush()
        changed = await client.get("/api/jobs/job-1", headers={"If-None-Match": etag})
        assert changed.status_code == 200
        assert changed.headers["ETag"].startswith('"2-')
        assert (await changed.get_json())["percent"] == 5.0


async def test_a_reused_job_id_gets_a_new_etag(autojump_clock):
    from progress_sync import JobSnapshot, JobStatus
    from progress_sync.server._read_routes import snapshot_etag

    fields = {"job_id": "j", "status": JobStatus.QUEUED, "percent": 0.0, "stage": "",
              "message": None, "seq": 1, "updated_at": 0.0, "reported_at": 0.0}  # fmt: skip
    assert snapshot_etag(JobSnapshot(created_at=1.0, **fields)) != snapshot_etag(
        JobSnapshot(created_at=2.0, **fields)
    )


async def test_list_jobs_pages_newest_first_and_filters_by_status(autojump_clock):
    async with open_in_process_server() as server:
        for n in range(5):
            await server.store.register(f"job-{n}")
        await server.sink.finish("job-1", "completed")
        await server.sink.finish("job-3", "completed")
        client = server.client()
        page = await (await client.get("/api/jobs?limit=2")).get_json()
        assert [j["jobId"] for j in page["jobs"]] == ["job-4", "job-3"]
        assert (page["total"], page["offset"], page["limit"], page["nextOffset"]) == (5, 0, 2, 2)
        last = await (await client.get("/api/jobs?limit=2&offset=4")).get_json()
        assert [j["jobId"] for j in last["jobs"]] == ["job-0"]
        assert last["nextOffset"] is None
        done = await (await client.get("/api/jobs?status=completed")).get_json()
        assert [j["jobId"] for j in done["jobs"]] == ["job-3", "job-1"]
        alias = await (await client.get("/api/jobs?status=Succeeded")).get_json()
        assert alias["total"] == 2
        everything = await (await client.get("/api/jobs")).get_json()
        assert everything["total"] == 5
        assert everything["limit"] == 100


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=bogus", "status"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
        ("limit=ten", "limit"),
        ("colour=red", "colour"),
    ],
)
async def test_list_jobs_rejects_bad_parameters_naming_them(autojump_clock, query, field):
    async with open_in_process_server() as server:
        response = await server.client().get(f"/api/jobs?{query}")
        assert response.status_code == 400
        body = await response.get_json()
        assert body["field"] == field
        assert body["error"] == "invalid request"


async def test_a_body_over_the_limit_gets_413_and_other_jobs_are_intact(autojump_clock):
    async with open_in_process_server(max_body_bytes=1000) as server:
        await server.store.register("job-1")
        client = server.client()
        response = await client.post(
            "/api/jobs",
            data=json.dumps({"kind": "demo", "params": {"pad": "x" * 2000}}),
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 413
        body = await response.get_json()
        assert body["field"] == "body"
        assert body["error"] == "request too large"
        assert (await client.get("/api/jobs/job-1")).status_code == 200
        assert server.store.statistics().jobs == 1


@pytest.mark.parametrize(
    "path",
    ["/api/jobs/bad!id", "/api/jobs/-dash", "/api/jobs/bad!id/progress/stream"],
)
async def test_a_malformed_job_id_gets_400_naming_jobId(autojump_clock, path):
    async with open_in_process_server() as server:
        async with server.request(path) as request:
            body = json.loads(await request.read_all())
        assert request.status == 400
        assert body["field"] == "jobId"
        assert "must be 1-128 letters" in body["detail"]


async def test_a_malformed_job_id_on_cancel_gets_400(autojump_clock):
    async with open_in_process_server() as server:
        response = await server.client().post("/api/jobs/bad!id/cancel")
        assert response.status_code == 400
        assert (await response.get_json())["field"] == "jobId"


async def test_stage_and_message_length_limits_name_the_field(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        with pytest.raises(InvalidUpdateError, match=f"stage: must be at most {MAX_STAGE_LENGTH}"):
            server.sink.report_nowait("job-1", 1.0, "s" * (MAX_STAGE_LENGTH + 1))
        with pytest.raises(
            InvalidUpdateError, match=f"message: must be at most {MAX_MESSAGE_LENGTH}"
        ):
            server.sink.report_nowait("job-1", 1.0, "ok", "m" * (MAX_MESSAGE_LENGTH + 1))
        server.sink.report_nowait("job-1", 1.0, "s" * MAX_STAGE_LENGTH, "m" * MAX_MESSAGE_LENGTH)
        await server.sink.flush()
        assert (await server.store.get("job-1")).percent == 1.0


async def test_no_cors_headers_by_default(autojump_clock):
    async with open_in_process_server() as server:
        await server.store.register("job-1")
        response = await server.client().get(
            "/api/jobs/job-1", headers={"Origin": "https://app.example.com"}
        )
        assert response.status_code == 200
        assert "Access-Control-Allow-Origin" not in response.headers


async def test_configured_origins_may_use_the_api_and_the_streams(autojump_clock):
    origin = "https://app.example.com"
    async with open_in_process_server(cors_origins=(origin,)) as server:
        await server.store.register("job-1")
        client = server.client()
        allowed = await client.get("/api/jobs/job-1", headers={"Origin": origin})
        assert allowed.headers["Access-Control-Allow-Origin"] == origin
        assert "ETag" in allowed.headers["Access-Control-Expose-Headers"]
        other = await client.get("/api/jobs/job-1", headers={"Origin": "https://evil.example"})
        assert "Access-Control-Allow-Origin" not in other.headers
        preflight = await client.options(
            "/api/jobs/job-1/progress/stream",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "last-event-id",
            },
        )
        assert preflight.headers["Access-Control-Allow-Origin"] == origin
        assert "last-event-id" in preflight.headers["Access-Control-Allow-Headers"].lower()
        async with server.request(
            "/api/jobs/job-1/progress/stream", headers=[("Origin", origin)]
        ) as stream:
            await stream.next_event()
        assert stream.headers["access-control-allow-origin"] == origin


async def test_the_openapi_document_describes_the_read_and_stream_routes(autojump_clock):
    async with open_in_process_server() as server:
        document = await (await server.client().get("/openapi.json")).get_json()
    paths = document["paths"]
    assert "get" in paths["/api/jobs"]
    listed = {p["name"] for p in paths["/api/jobs"]["get"]["parameters"]}
    assert listed >= {"status", "offset", "limit"}
    multi = {p["name"] for p in paths["/api/progress/stream"]["get"]["parameters"]}
    assert multi >= {"jobIds", "lastEventId"}
    assert "/api/jobs/{jobId}/progress/stream" in paths
    assert "200" in paths["/api/jobs/{jobId}"]["get"]["responses"]
