"""Authentication: the producer bearer token and per-job subscribe tokens, on a real server.

Expired tokens are made by signing with a clock shifted into the past (the same secret), so
no test waits for a token to expire.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import replace

import click
import pytest
from click.testing import CliRunner
from httpx_sse import aconnect_sse
from progress_sync.server import ServerConfig
from progress_sync.server._auth import Auth, SubscribeTokens, bearer_matches
from progress_sync.server._cli import main, read_secret
from progress_sync.server._errors import ApiError
from progress_sync.server.testing import start_progress_server

PRODUCER_TOKEN = "producer-token-0123456789"
SECRET = "subscribe-secret-abcdefghijklmnop"


@pytest.fixture
async def secured(nursery, progress_server_config):
    """A server with a producer token and subscribe tokens (one hour)."""
    config = replace(
        progress_server_config,
        producer_token=PRODUCER_TOKEN,
        subscribe_secret=SECRET,
        subscribe_token_ttl=3600.0,
    )
    server = await start_progress_server(nursery, config)
    yield server
    server.stop.set()


def producer_headers(token: str = PRODUCER_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create(server, job_id: str) -> dict:
    async with server.client() as client:
        response = await client.post(
            "/api/jobs", json={"jobId": job_id}, headers=producer_headers()
        )
    assert response.status_code == 201, response.text
    return response.json()


def assert_no_secret(response) -> None:
    for secret in (PRODUCER_TOKEN, SECRET):
        assert secret not in response.text
        assert secret not in str(response.headers)


# --- producer token --------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/jobs", {"jobId": "p"}),
        ("POST", "/api/jobs/p/progress", {"percent": 1}),
        ("POST", "/api/progress", [{"jobId": "p", "percent": 1}]),
        ("POST", "/api/jobs/p/complete", {}),
        ("POST", "/api/jobs/p/fail", {"error": "x"}),
        ("POST", "/api/jobs/p/cancel", {}),
    ],
)
@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "needs the producer token"),
        ({"Authorization": "Bearer wrong-token"}, "does not hold the producer token"),
        ({"Authorization": f"Basic {PRODUCER_TOKEN}"}, "does not hold the producer token"),
        ({"Authorization": f"Bearer {PRODUCER_TOKEN}x"}, "does not hold the producer token"),
    ],
)
async def test_producer_endpoints_refuse_a_missing_or_wrong_token(
    secured, method, path, body, headers, detail
):
    async with secured.client() as client:
        response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response.json()["field"] == "Authorization"
    assert detail in response.json()["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_no_secret(response)
    assert secured.store.statistics().writes == 0


async def test_the_producer_token_opens_every_producer_endpoint(secured):
    created = await create(secured, "p")
    assert created["subscribeToken"]
    assert created["subscribeTokenExpiresIn"] == 3600.0
    async with secured.client(headers=producer_headers()) as client:
        assert (await client.post("/api/jobs/p/progress", json={"percent": 5})).status_code == 202
        batch = await client.post("/api/progress", json=[{"jobId": "p", "percent": 6}])
        assert batch.json()["accepted"] == 1
        assert (await client.post("/api/jobs/p/complete")).status_code == 200
        assert (await client.get("/api/jobs/p")).json()["status"] == "completed"


async def test_endpoints_are_open_when_no_token_is_configured(progress_server):
    async with progress_server.client() as client:
        created = await client.post("/api/jobs", json={"jobId": "open"})
        assert created.status_code == 201
        assert "subscribeToken" not in created.json()
        assert (await client.get("/api/jobs/open")).status_code == 200


# --- subscribe tokens ------------------------------------------------------------------------


async def test_reading_a_job_needs_its_subscribe_token(secured):
    token = (await create(secured, "r"))["subscribeToken"]
    async with secured.client() as client:
        missing = await client.get("/api/jobs/r")
        good = await client.get("/api/jobs/r", params={"token": token})
        by_producer = await client.get("/api/jobs/r", headers=producer_headers())
        wrong_producer = await client.get("/api/jobs/r", headers=producer_headers("nope"))
    assert missing.status_code == 401
    assert missing.json()["field"] == "token"
    assert "needs its subscribe token" in missing.json()["detail"]
    assert good.status_code == 200
    assert good.json()["jobId"] == "r"
    assert by_producer.status_code == 200
    assert wrong_producer.status_code == 401
    for response in (missing, wrong_producer):
        assert_no_secret(response)
        assert token not in response.text


async def test_the_stream_opens_with_the_token_in_the_query(secured):
    token = (await create(secured, "s"))["subscribeToken"]
    async with secured.client(headers=producer_headers()) as client:
        await client.post("/api/jobs/s/complete")
    events = []
    async with (
        secured.client() as client,
        aconnect_sse(client, "GET", f"/api/jobs/s/progress/stream?token={token}") as source,
    ):
        assert source.response.status_code == 200
        async for event in source.aiter_sse():
            if event.data:
                events.append(event.event)
    assert events == ["job-completed"]
    async with secured.client() as client:
        refused = await client.get("/api/jobs/s/progress/stream")
    assert refused.status_code == 401
    assert refused.headers["content-type"].startswith("application/json")


async def test_one_jobs_token_never_opens_another(secured):
    token_a = (await create(secured, "job-a"))["subscribeToken"]
    await create(secured, "job-b")
    async with secured.client() as client:
        poll = await client.get("/api/jobs/job-b", params={"token": token_a})
        stream = await client.get("/api/jobs/job-b/progress/stream", params={"token": token_a})
        unknown = await client.get("/api/jobs/job-c", params={"token": token_a})
    for response in (poll, stream, unknown):
        assert response.status_code == 403
        assert response.json()["error"] == "forbidden"
        assert "for another job" in response.json()["detail"]
        assert token_a not in response.text


async def test_an_expired_token_is_a_401_with_a_json_reason(secured):
    await create(secured, "old")
    two_hours_ago = SubscribeTokens(SECRET, ttl=3600.0, clock=lambda: time.time() - 7200)
    expired = two_hours_ago.issue("old")
    async with secured.client() as client:
        poll = await client.get("/api/jobs/old", params={"token": expired})
        stream = await client.get("/api/jobs/old/progress/stream", params={"token": expired})
    for response in (poll, stream):
        assert response.status_code == 401
        body = response.json()
        assert body["error"] == "token expired"
        assert body["field"] == "token"
        # Signed 7,200 s ago (whole seconds) with a 3,600 s lifetime.
        assert re.search(r"expired 360[01] s ago \(tokens last 3600 s\)", body["detail"])
        assert expired not in response.text
        assert_no_secret(response)


@pytest.mark.parametrize(
    "token",
    [
        "not-a-token",
        "",
        SubscribeTokens("another-secret-0123456789", ttl=60).issue("t"),
    ],
)
async def test_a_forged_or_malformed_token_is_a_401(secured, token):
    await create(secured, "t")
    async with secured.client() as client:
        response = await client.get("/api/jobs/t", params={"token": token})
    assert response.status_code == 401
    if token:
        assert response.json()["error"] == "invalid token"
        assert "not valid for this server" in response.json()["detail"]


async def test_a_fresh_token_can_be_issued_to_the_producer(secured):
    await create(secured, "refresh")
    async with secured.client() as client:
        refused = await client.post("/api/jobs/refresh/subscribe-token")
        fresh = await client.post("/api/jobs/refresh/subscribe-token", headers=producer_headers())
        poll = await client.get(
            "/api/jobs/refresh", params={"token": fresh.json()["subscribeToken"]}
        )
        missing = await client.post("/api/jobs/ghost/subscribe-token", headers=producer_headers())
    assert refused.status_code == 401
    assert fresh.status_code == 200
    assert poll.status_code == 200
    assert missing.status_code == 404


async def test_a_fresh_token_needs_subscribe_tokens_on(progress_server):
    async with progress_server.client() as client:
        await client.post("/api/jobs", json={"jobId": "x"})
        response = await client.post("/api/jobs/x/subscribe-token")
    assert response.status_code == 400
    assert "no subscribe secret" in response.json()["detail"]


async def test_listing_routes_without_a_job_id_need_the_producer_token():
    with_producer = Auth(ServerConfig(producer_token="t" * 20, subscribe_secret=SECRET))
    with pytest.raises(ApiError, match="reading more than one job needs the producer token"):
        with_producer.authenticate("GET", None, None, None)
    with_producer.authenticate("GET", None, "Bearer " + "t" * 20, None)
    without = Auth(ServerConfig(subscribe_secret=SECRET))
    with pytest.raises(ApiError, match="and none is configured") as refused:
        without.authenticate("GET", None, None, None)
    assert refused.value.status == 403


def test_bearer_matching():
    assert bearer_matches("Bearer abc", "abc")
    assert bearer_matches("bearer  abc ", "abc")
    assert not bearer_matches("Bearer abcd", "abc")
    assert not bearer_matches("Token abc", "abc")
    assert not bearer_matches(None, "abc")
    assert bearer_matches("Bearer übergeheim", "übergeheim")


# --- secrets stay secret ---------------------------------------------------------------------


def test_the_config_repr_never_shows_secrets():
    config = ServerConfig(producer_token=PRODUCER_TOKEN, subscribe_secret=SECRET)
    assert PRODUCER_TOKEN not in repr(config)
    assert SECRET not in repr(config)
    assert config.subscribe_tokens


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"subscribe_secret": "short"}, "at least 16 characters"),
        ({"producer_token": "  "}, "producer_token must be a non-empty string"),
        ({"subscribe_token_ttl": 0}, "subscribe_token_ttl must be a positive number"),
        ({"max_batch_updates": 0}, "max_batch_updates must be a whole number >= 1"),
        ({"max_body_bytes": -1}, "max_body_bytes must be a whole number >= 1"),
    ],
)
def test_bad_auth_settings_are_refused_without_echoing_them(changes, message):
    with pytest.raises(ValueError, match=message) as refused:
        ServerConfig(**changes)
    assert "'short'" not in str(refused.value)


def test_secrets_come_from_a_file_stripped(tmp_path):
    path = tmp_path / "token"
    path.write_text(PRODUCER_TOKEN + "\n")
    assert read_secret(None, str(path), "producer-token") == PRODUCER_TOKEN
    assert read_secret("direct", None, "producer-token") == "direct"
    assert read_secret(None, None, "producer-token") is None
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(click.UsageError, match=r"--producer-token-file .* is empty"):
        read_secret(None, str(empty), "producer-token")
    with pytest.raises(click.UsageError, match="give --producer-token or --producer-token-file"):
        read_secret("a", str(path), "producer-token")
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(click.UsageError, match="cannot read it"):
        read_secret(None, str(binary), "producer-token")


def test_a_short_secret_from_the_environment_is_refused_without_echoing_it():
    result = CliRunner().invoke(
        main, ["serve", "--port", "0"], env={"PROGRESS_SYNC_SUBSCRIBE_SECRET": "tooshort-secret"}
    )
    assert result.exit_code == 2
    assert "subscribe_secret must be a string of at least 16 characters" in result.output
    assert "tooshort-secret" not in result.output


@pytest.fixture
def debug_logs(caplog):
    """Every log record from DEBUG up; listed before the server fixture, so it sees its start."""
    caplog.set_level(logging.DEBUG)
    return caplog


async def test_no_log_line_holds_a_secret_or_token(debug_logs, secured):
    caplog = debug_logs
    token = (await create(secured, "logged"))["subscribeToken"]
    async with secured.client() as client:
        await client.get("/api/jobs/logged", params={"token": token})
        await client.get("/api/jobs/logged", params={"token": token + "x"})
        await client.post("/api/jobs/logged/progress", json={"percent": 1})
        await client.post(
            "/api/jobs/logged/complete", headers={"Authorization": "Bearer guessed-token"}
        )
    # The server's loggers only: the test's own httpx client logs its URLs, tokens and all.
    text = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(("httpx", "httpcore"))
    )
    assert "Running on" in text
    for secret in (PRODUCER_TOKEN, SECRET, token, "guessed-token"):
        assert secret not in text
