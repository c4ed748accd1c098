"""The wire contract (progress_sync._contract): one table that server and client both read.

Rules: the server's error bodies carry the table's code and status; the client maps an answer
back by its code alone (changing the words of ``error`` or ``detail`` changes nothing); every
route the server mounts is one of the contract's paths.
"""

from __future__ import annotations

import httpx
import pytest
from progress_sync import (
    AuthenticationError,
    InvalidUpdateError,
    JobExistsError,
    JobFinishedError,
    JobNotFoundError,
    ServerRejectedError,
    ServerUnavailableError,
)
from progress_sync._contract import (
    ERRORS,
    ERRORS_BY_CODE,
    JOB_PATH,
    JOB_STREAM_PATH,
    PIPELINE_ERRORS,
    error_body,
    error_for_answer,
    path,
    path_pattern,
    quart_rule,
)
from progress_sync.client._common import raise_for_answer


def test_codes_are_unique_and_name_their_status():
    assert len(ERRORS_BY_CODE) == len(ERRORS)
    for error in ERRORS:
        assert error.code.isidentifier(), error
        assert error.code.islower(), error
        assert 400 <= error.status < 600, error


@pytest.mark.parametrize(
    "exc",
    [
        JobNotFoundError("a"),
        JobExistsError("a"),
        JobFinishedError("a", "cancelled"),
        InvalidUpdateError("percent", "must be from 0 to 100, not 101.0"),
    ],
    ids=lambda exc: type(exc).__name__,
)
def test_the_client_raises_again_what_the_server_answered(exc):
    row = next(row for row in PIPELINE_ERRORS if isinstance(exc, row.exception))
    body = row.answer(exc)
    assert body["code"] == row.error.code
    # The words do not matter: only the code does.
    body = {**body, "error": "something else", "detail": body["detail"]}
    again = error_for_answer(row.error.status, body, reason="", text="", job_id="a")
    assert type(again) is type(exc)
    assert str(again) == str(exc)
    if isinstance(exc, JobFinishedError):
        assert again.status == "cancelled"


def test_wording_without_a_code_is_no_pipeline_error():
    # An answer that says "job not found" in words but carries no code of ours (a proxy's
    # page, another service) is not taken for the pipeline's error.
    body = {"error": "job not found", "detail": "no job with id 'a'", "field": "jobId"}
    answer = error_for_answer(404, body, reason="Not Found", text="", job_id="a")
    assert type(answer) is ServerRejectedError


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, error_body(ERRORS_BY_CODE["unauthorized"], "no token"), AuthenticationError),
        (503, error_body(ERRORS_BY_CODE["store_unavailable"], "away"), ServerUnavailableError),
        (502, {}, ServerUnavailableError),
        (503, error_body(ERRORS_BY_CODE["streams_refused"], "poll"), ServerRejectedError),
        (404, error_body(ERRORS_BY_CODE["job_not_found"], "gone", "jobId"), JobNotFoundError),
    ],
)
def test_raise_for_answer_goes_by_code(status, body, expected):
    response = httpx.Response(status, json=body)
    with pytest.raises(expected):
        raise_for_answer(response, "a")


def test_paths_fill_in_and_become_rules():
    assert path(JOB_STREAM_PATH, jobId="a:b c") == "/api/jobs/a:b%20c/progress/stream"
    assert quart_rule(JOB_PATH) == "/api/jobs/<job_id>"
    assert path_pattern(JOB_STREAM_PATH).fullmatch("/api/jobs/x/progress/stream")
    assert not path_pattern(JOB_STREAM_PATH).fullmatch("/api/jobs/x/y/progress/stream")


async def test_every_error_body_carries_its_code(progress_server):
    async with progress_server.client() as client:
        answers = [
            await client.get("/api/jobs/ghost"),
            await client.post("/api/jobs", json={"kind": "nope"}),
            await client.get("/no/such/route"),
            await client.delete("/api/jobs"),
        ]
    for response in answers:
        body = response.json()
        code = ERRORS_BY_CODE[body["code"]]
        assert (code.status, code.error) == (response.status_code, body["error"]), body


async def test_every_route_of_the_server_is_a_contract_path():
    import progress_sync._contract as contract
    from progress_sync import MemoryStore
    from progress_sync.server import ServerConfig, create_app, open_services

    templates = {
        quart_rule(value)
        for name, value in vars(contract).items()
        if name.endswith("_PATH") and isinstance(value, str)
    }
    async with open_services(ServerConfig(), MemoryStore()) as services:
        app = create_app(services)
    rules = {rule.rule for rule in app.url_map.iter_rules()}
    # quart-schema's document and UI, and the web page's static files
    assert rules - templates == {"/openapi.json", "/docs", "/static/<path:filename>"}
    assert templates - rules == set()


def test_the_snapshot_json_and_its_documented_model_have_the_same_keys():
    # JobSnapshot.to_dict is the snapshot's JSON (encoded once per snapshot, on the hot
    # path); the pydantic model documents it in /openapi.json and must not drift from it.
    from progress_sync import JobSnapshot, JobStatus
    from progress_sync.server._models import JobSnapshotBody as SnapshotModel

    snapshot = JobSnapshot(
        job_id="a",
        status=JobStatus.RUNNING,
        percent=1.0,
        stage="s",
        message=None,
        seq=1,
        created_at=0.0,
        updated_at=0.0,
        reported_at=0.0,
    )
    body = snapshot.to_dict()
    assert set(body) == {field.alias for field in SnapshotModel.model_fields.values()}
    assert SnapshotModel.model_validate(body).model_dump(by_alias=True) == body
