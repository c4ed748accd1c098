"""Bad requests get JSON 4xx naming the field and the reason, and leave other jobs intact."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from progress_sync.server.testing import start_progress_server


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "field", "detail"),
    [
        ({"kind": "render"}, "kind", "unknown job kind 'render'; known kinds: demo"),
        ({"kind": "demo", "params": {"durationS": -1}}, "params.durationS", "greater than 0"),
        ({"kind": "demo", "params": {"updatesPerS": "fast"}}, "params.updatesPerS", "valid number"),
        ({"kind": "demo", "params": {"failAtPercent": 150}}, "params.failAtPercent", "100"),
        ({"kind": "demo", "params": {"typo": 1}}, "params.typo", "Extra inputs are not permitted"),
        ({"kind": "demo", "params": []}, "params", "valid dictionary"),
        # Without kind the job is external (see test_ingest.py), and takes no params.
        ({"params": {}}, "params", "only jobs with a kind take params"),
        ({"kind": "demo", "jobId": "bad id!"}, "jobId", "must be 1-128 letters"),
        ({"kind": "demo", "extra": 1}, "extra", "Extra inputs are not permitted"),
        ([1, 2], "body", ""),
    ],
)
async def test_bad_job_requests_get_400_with_the_field(progress_server, body, field, detail):
    async with progress_server.client() as client:
        response = await client.post("/api/jobs", json=body)
    assert response.status_code == 400
    error = response.json()
    assert error["field"] == field
    assert detail in error["detail"]
    assert error["error"] == "invalid request"
    assert progress_server.store.statistics().jobs == 0


async def test_malformed_json_gets_400(progress_server):
    async with progress_server.client() as client:
        response = await client.post(
            "/api/jobs", content=b"{not json", headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json()["field"] == "body"


async def test_duplicate_job_id_gets_409_and_leaves_the_job_intact(progress_server):
    async with progress_server.client() as client:
        body = {"kind": "demo", "jobId": "export-1", "params": {"durationS": 30}}
        assert (await client.post("/api/jobs", json=body)).status_code == 201
        before = await progress_server.store.get("export-1")
        again = await client.post("/api/jobs", json=body)
        assert again.status_code == 409
        assert again.json() == {
            "error": "job exists",
            "code": "job_exists",
            "detail": "job 'export-1' is registered already; choose another id",
            "field": "jobId",
        }
        assert (await progress_server.store.get("export-1")).created_at == before.created_at
        await client.post("/api/jobs/export-1/cancel")


async def test_bad_job_ids_in_paths_get_400(progress_server):
    async with progress_server.client() as client:
        for path in ("/api/jobs/-x", "/api/jobs/-x/progress/stream", "/api/jobs/a%20b"):
            response = await client.get(path)
            assert response.status_code == 400, path
            assert response.json()["field"] == "jobId"
        cancel = await client.post("/api/jobs/ghost/cancel")
        assert cancel.status_code == 404


async def test_unknown_routes_and_methods_get_json(progress_server):
    async with progress_server.client() as client:
        missing = await client.get("/api/nothing")
        assert missing.status_code == 404
        assert missing.json()["error"] == "not found"
        wrong = await client.delete("/api/jobs")
        assert wrong.status_code == 405
        assert "POST" in wrong.headers["allow"]


@pytest.mark.slow
async def test_healthz_and_openapi(progress_server):
    async with progress_server.client() as client:
        health = (await client.get("/healthz")).json()
        assert health["status"] == "ok"
        assert health["syncMode"] == "batched"
        spec = (await client.get("/openapi.json")).json()
        assert "/api/jobs" in spec["paths"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"kind": "\xff"}', "body: is not UTF-8 text (invalid start byte at byte 10)"),
        (b'{"kind": ' + b"[" * 5000 + b"]" * 5000 + b"}", "body: is JSON nested too deeply"),
        (b'{"kind": "demo",}', "body: is not valid JSON: Expecting property name"),
        (b"", "body: is not valid JSON: Expecting value: line 1 column 1"),
    ],
)
@pytest.mark.parametrize("path", ["/api/jobs", "/api/progress"])
async def test_malformed_bodies_get_400_with_the_reason_never_500(
    progress_server, path, body, reason
):
    async with progress_server.client() as client:
        response = await client.post(
            path, content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    error = response.json()
    assert error["field"] == "body"
    if path == "/api/jobs" or body:
        assert error["detail"].startswith(reason)


async def test_response_bodies_keep_jobid_first(progress_server):
    async with progress_server.client() as client:
        created = await client.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.1}}
        )
        assert created.text.startswith('{"jobId":')
        snapshot = await client.get(f"/api/jobs/{created.json()['jobId']}")
        assert snapshot.text.startswith('{"jobId":')


@pytest.mark.slow
async def test_a_full_job_queue_gets_503_with_retry_after(nursery, progress_server_config):
    config = replace(progress_server_config, max_concurrent_jobs=1, max_queued_jobs=1)
    server = await start_progress_server(nursery, config)
    async with server.client() as client:
        body = {"kind": "demo", "params": {"durationS": 30}}
        assert (await client.post("/api/jobs", json=body)).status_code == 201
        assert (await client.post("/api/jobs", json=body)).status_code == 201
        full = await client.post("/api/jobs", json=body)
        assert full.status_code == 503
        assert full.headers["retry-after"] == "5"
        assert full.json()["error"] == "queue full"
    assert server.store.statistics().jobs == 2


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/jobs/ext/progress", {"percent": 7, "stage": "\ud800"}, "stage"),
        ("/api/jobs/ext/progress", {"percent": 7, "stage": "x", "message": "\udc00"}, "message"),
        ("/api/jobs/ext/fail", {"error": "\udc00"}, "error"),
        ("/api/jobs/ext/cancel", {"reason": "\udc00"}, "reason"),
        ("/api/jobs", {"jobId": "other", "stage": "\ud800"}, "stage"),
    ],
)
async def test_lone_surrogates_are_refused_and_harm_no_other_job(
    progress_server, path, body, field
):
    async with progress_server.client() as client:
        assert (await client.post("/api/jobs", json={"jobId": "ext"})).status_code == 201
        # JSON escapes carry the lone surrogate (httpx could not encode it as UTF-8).
        response = await client.post(
            path, content=json.dumps(body), headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        assert response.json()["field"] == field
        detail = response.json()["detail"]
        assert "lone surrogate" in detail or "unicode string" in detail  # ours, or pydantic's
        # The job is intact and still moves.
        assert (await client.post("/api/jobs/ext/progress", json={"percent": 9})).status_code == 202
        assert (await client.get("/api/jobs/ext")).status_code == 200
        await progress_server.store.get("ext")


async def test_cancel_takes_an_optional_reason(progress_server):
    async with progress_server.client() as client:
        created = await client.post("/api/jobs", json={"kind": "demo", "params": {"durationS": 30}})
        job_id = created.json()["jobId"]
        cancelled = await client.post(f"/api/jobs/{job_id}/cancel", json={"reason": "user asked"})
        assert cancelled.status_code == 202
        assert cancelled.json()["error"] == "user asked"
        other = await client.post("/api/jobs", json={"kind": "demo", "params": {"durationS": 30}})
        bad = await client.post(f"/api/jobs/{other.json()['jobId']}/cancel", json={"why": "x"})
        assert bad.status_code == 400
        assert bad.json()["field"] == "why"
        await client.post(f"/api/jobs/{other.json()['jobId']}/cancel")


async def test_a_repeated_jobids_parameter_says_to_use_commas(progress_server):
    async with progress_server.client() as client:
        response = await client.get("/api/progress/stream?jobIds=a&jobIds=b")
    assert response.status_code == 400
    assert response.json()["field"] == "jobIds"
    assert "separated by commas: jobIds=a,b,c" in response.json()["detail"]


async def test_a_304_and_a_204_carry_no_content_length_or_content_type(progress_server):
    # RFC 9110, section 8.6: no Content-Length on a 204; section 15.4.5: a 304 carries only
    # the metadata that guides caches (ETag, Cache-Control, ...), not the body's.
    async with progress_server.client() as client:
        await client.post("/api/jobs", json={"jobId": "etag-job"})
        first = await client.get("/api/jobs/etag-job")
        again = await client.get(
            "/api/jobs/etag-job", headers={"If-None-Match": first.headers["etag"]}
        )
        done = await client.post("/api/jobs/etag-job/complete", json={})
        seen_end = await client.get(
            "/api/jobs/etag-job/progress/stream",
            headers={"Last-Event-ID": str(done.json()["seq"])},
        )
    assert again.status_code == 304
    assert again.headers["etag"] == first.headers["etag"]
    assert seen_end.status_code == 204, seen_end.text
    for response in (again, seen_end):
        assert "content-length" not in response.headers
        assert "content-type" not in response.headers
        assert response.content == b""
