"""The OpenAPI document at ``/openapi.json``: valid, complete, and true to the bodies sent.

Rules: the document is fetched from the app (Quart's test client, virtual time) under several
settings, since its security requirements follow the server's; it is checked with
openapi-spec-validator, and real response bodies with openapi-schema-validator against the
document's own schemas.
"""

from __future__ import annotations

import re
import typing
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate
from progress_sync import JOB_ID_PATTERN, JobStatus
from progress_sync.server._models import NOT_BLANK, JobStatusName
from progress_sync.server.testing import open_in_process_server
from quart_schema.openapi import QUART_SCHEMA_HIDDEN_ATTRIBUTE

PRODUCER = "p" * 20
SECRET = "s" * 32
SETTINGS = {
    "open": {},
    "producer token": {"producer_token": PRODUCER},
    "subscribe secret": {"subscribe_secret": SECRET},
    "both": {"producer_token": PRODUCER, "subscribe_secret": SECRET},
}
HIDDEN = {"static", "openapi", "swagger_ui", "web.web_page"}
"""Endpoints left out of the document: the web page, its files, and the document itself."""

# The statuses of each operation with no credentials configured.
RESPONSES = {
    "createJob": {201, 400, 409, 413, 503},
    "listJobs": {200, 400, 503},
    "getJob": {200, 304, 400, 404, 503},
    "cancelJob": {202, 400, 404, 409, 413, 503},
    "streamJob": {200, 204, 400, 503},
    "streamJobs": {200, 204, 400, 503},
    "reportProgress": {202, 400, 404, 409, 413, 503},
    "reportBatch": {200, 400, 413, 503},
    "completeJob": {200, 400, 404, 409, 413, 503},
    "failJob": {200, 400, 404, 409, 413, 503},
    "newSubscribeToken": {200, 400, 404, 503},
    "heartbeatJob": {200, 400, 404, 409, 503},
    "healthz": {200, 503},
    "metrics": {200},
}
PRODUCE = {
    "createJob",
    "cancelJob",
    "reportProgress",
    "reportBatch",
    "completeJob",
    "failJob",
    "newSubscribeToken",
    "heartbeatJob",
}


async def fetch_document(**settings: Any) -> tuple[dict[str, Any], Any]:
    async with open_in_process_server(**settings) as server:
        response = await server.client().get("/openapi.json")
        assert response.status_code == 200
        return await response.get_json(), server.app


def operations(document: dict[str, Any]) -> dict[str, tuple[str, str, dict[str, Any]]]:
    return {
        operation["operationId"]: (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
async def test_the_document_is_valid_openapi(autojump_clock, settings):
    document, _ = await fetch_document(**settings)
    validate(document)
    assert document["openapi"].startswith("3.1")


@pytest.mark.parametrize("settings", SETTINGS.values(), ids=SETTINGS.keys())
async def test_every_route_the_app_serves_is_documented_with_its_responses(
    autojump_clock, settings
):
    document, app = await fetch_document(**settings)
    hidden = set()
    for rule in app.url_map.iter_rules():
        if getattr(app.view_functions[rule.endpoint], QUART_SCHEMA_HIDDEN_ATTRIBUTE, False):
            hidden.add(rule.endpoint)
            continue
        path = re.sub(r"<(?:[^:>]*:)?job_id>", "{jobId}", rule.rule)
        assert path in document["paths"], rule.rule
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            operation = document["paths"][path][method.lower()]
            assert operation["responses"], (method, path)
            assert operation["summary"], (method, path)
            assert operation["tags"], (method, path)
    assert hidden == HIDDEN
    assert set(operations(document)) == set(RESPONSES)


async def test_each_operation_documents_its_success_and_error_statuses(autojump_clock):
    document, _ = await fetch_document()
    for operation_id, (path, _, operation) in operations(document).items():
        responses = operation["responses"]
        assert {int(status) for status in responses} == RESPONSES[operation_id], operation_id
        for status, response in responses.items():
            assert response["description"], (path, status)
            content = response.get("content", {})
            if int(status) >= 400 and operation_id != "healthz":
                schema = content["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
            if int(status) in (204, 304):
                assert not content, (path, status)
        assert "security" not in operation, operation_id
    create = operations(document)["createJob"][2]["responses"]
    assert "Retry-After" in create["503"]["headers"]
    assert "Location" in create["201"]["headers"]


async def test_the_security_requirements_follow_the_servers_settings(autojump_clock):
    document, _ = await fetch_document(**SETTINGS["both"])
    schemes = document["components"]["securitySchemes"]
    assert schemes["producerToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["producerToken"]["description"],
    }
    assert (schemes["subscribeToken"]["in"], schemes["subscribeToken"]["name"]) == (
        "query",
        "token",
    )
    found = operations(document)
    for operation_id in PRODUCE:
        operation = found[operation_id][2]
        assert operation["security"] == [{"producerToken": []}], operation_id
        assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]
    for operation_id in ("getJob", "streamJob"):
        operation = found[operation_id][2]
        assert operation["security"] == [{"subscribeToken": []}, {"producerToken": []}]
        assert {"401", "403"} <= set(operation["responses"])
    for operation_id in ("listJobs", "streamJobs"):
        assert found[operation_id][2]["security"] == [{"producerToken": []}]
    for operation_id in ("healthz", "metrics"):
        assert "security" not in found[operation_id][2]
    subscribe_only, _ = await fetch_document(**SETTINGS["subscribe secret"])
    list_jobs = operations(subscribe_only)["listJobs"][2]
    assert "security" not in list_jobs
    assert "403" in list_jobs["responses"]


async def test_path_parameters_are_named_and_checked_as_in_the_api(autojump_clock):
    document, _ = await fetch_document()
    assert not any("job_id" in path for path in document["paths"])
    for path, item in document["paths"].items():
        for operation in item.values():
            for parameter in operation["parameters"]:
                if parameter["in"] != "path":
                    continue
                assert parameter["name"] == "jobId"
                assert "{jobId}" in path
                assert parameter["schema"]["pattern"] == f"^{JOB_ID_PATTERN.pattern}$"
    stream = document["paths"]["/api/jobs/{jobId}/progress/stream"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
    assert {p["name"] for p in stream["parameters"]} == {
        "jobId",
        "Last-Event-ID",
        "lastEventId",
        "minIntervalMs",
    }
    multi = document["paths"]["/api/progress/stream"]["get"]
    assert next(p for p in multi["parameters"] if p["name"] == "jobIds")["required"] is True
    batch = document["paths"]["/api/progress"]["post"]["requestBody"]["content"]
    assert set(batch) == {"application/json", "application/x-ndjson"}


async def test_descriptions_are_commonmark_and_titles_read_well(autojump_clock):
    document, _ = await fetch_document()
    text = repr(document)
    assert "``" not in text
    assert "Attributes:" not in text
    schemas = document["components"]["schemas"]
    assert schemas["JobSnapshot"]["properties"]["jobId"]["title"] == "Job id"
    assert schemas["CreateJobRequest"]["properties"]["jobId"]["description"]
    assert schemas["CreateJobRequest"]["properties"]["kind"]["enum"] == ["demo", None]
    for name in ("JobSnapshot", "CreateJobResponse", "ErrorResponse", "JobErrorEvent"):
        assert schemas[name]["description"], name


def test_the_documented_states_are_the_pipelines():
    assert set(typing.get_args(JobStatusName)) == {status.value for status in JobStatus}


def check(document: dict[str, Any], name: str, body: Any) -> None:
    """Validate ``body`` against the document's component schema ``name``."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    OAS31Validator(schema).validate(body)


async def test_the_bodies_sent_match_the_documented_schemas(autojump_clock):
    async with open_in_process_server(subscribe_secret=SECRET) as server:
        client = server.client()
        document = await (await client.get("/openapi.json")).get_json()
        created = await client.post("/api/jobs", json={"jobId": "job-1", "stage": "start"})
        assert created.status_code == 201
        body = await created.get_json()
        check(document, "CreateJobResponse", body)
        token = body["subscribeToken"]
        snapshot = await client.get(f"/api/jobs/job-1?token={token}")
        check(document, "JobSnapshot", await snapshot.get_json())
        check(document, "ErrorResponse", await (await client.get("/api/jobs/job-1")).get_json())
        missing = await client.post("/api/jobs/nobody/complete", json={})
        assert missing.status_code == 404
        check(document, "ErrorResponse", await missing.get_json())
        done = await client.post("/api/jobs/job-1/complete", json={"result": {"rows": 3}})
        check(document, "JobSnapshot", await done.get_json())
        check(document, "HealthResponse", await (await client.get("/healthz")).get_json())


async def test_bodies_keep_their_keys_exactly(autojump_clock):
    async with open_in_process_server() as server:
        client = server.client()
        created = await client.post("/api/jobs", json={"jobId": "job-1"})
        assert list(await created.get_json()) == ["jobId", "status", "statusUrl", "streamUrl"]
        assert created.headers["Location"] == "/api/jobs/job-1"
        listed = await (await client.get("/api/jobs")).get_json()
        assert list(listed) == ["jobs", "total", "offset", "limit", "nextOffset"]
        assert listed["nextOffset"] is None
        assert list(listed["jobs"][0])[:3] == ["jobId", "status", "percent"]


async def test_only_the_document_and_swagger_ui_are_served(autojump_clock):
    async with open_in_process_server() as server:
        client = server.client()
        docs = await client.get("/docs")
        assert docs.status_code == 200
        assert "/openapi.json" in (await docs.get_data(as_text=True))
        for path in ("/redocs", "/scalar"):
            assert (await client.get(path)).status_code == 404, path


def test_the_not_blank_pattern_is_pythons_whitespace():
    pattern = re.compile(NOT_BLANK)
    for code in range(0x10000):
        assert (pattern.search(chr(code)) is None) == chr(code).isspace(), hex(code)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"kind": "demo", "params": {"durationS": 1}}, True),
        ({"jobId": "ext-1", "status": "queued", "stage": "waiting", "message": "m"}, True),
        ({"kind": None, "stage": "s"}, True),
        ({"kind": "demo", "status": None}, False),
        ({"kind": "demo", "message": "m"}, False),
        ({"params": {}}, False),
        ({"kind": None, "params": {"durationS": 1}}, False),
    ],
)
async def test_the_create_job_schema_says_what_the_server_refuses(autojump_clock, body, valid):
    async with open_in_process_server() as server:
        client = server.client()
        document = await (await client.get("/openapi.json")).get_json()
        response = await client.post("/api/jobs", json=body)
    schema = {"$ref": "#/components/schemas/CreateJobRequest", **document}
    assert OAS31Validator(schema).is_valid(body) is valid
    assert response.status_code == (201 if valid else 400)


def _shape(schema: dict) -> dict:
    """A JSON Schema without its words (titles, descriptions): what it accepts."""
    if isinstance(schema, dict):
        return {
            key: _shape(value)
            for key, value in schema.items()
            if key not in ("title", "description")
        }
    if isinstance(schema, list):
        return [_shape(item) for item in schema]
    return schema


def test_the_documented_ingest_bodies_are_the_structs_that_validate_them():
    # The msgspec Structs decode and validate the ingest bodies (server/_ingest_body.py); the
    # document's schemas come from the pydantic models: they must accept the same objects.
    import msgspec
    from progress_sync.server._ingest_body import BatchUpdateBody, ProgressBody
    from progress_sync.server._models import BatchUpdate, ProgressRequest

    def struct_schema(struct: type) -> dict:
        schema = msgspec.json.schema(struct)
        return schema["$defs"][struct.__name__]

    assert _shape(struct_schema(BatchUpdateBody)) == _shape(
        BatchUpdate.model_json_schema(by_alias=True)
    )
    # POST /api/jobs/{jobId}/progress: the URL names the job; a jobId in the body must
    # match it, and the document leaves it out.
    single = struct_schema(ProgressBody)
    del single["properties"]["jobId"]
    assert _shape(single) == _shape(ProgressRequest.model_json_schema(by_alias=True))
