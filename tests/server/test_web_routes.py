"""The page's routes and the ``refuse_streams`` testing option, over a real server (no browser)."""

from __future__ import annotations

import tomllib
from dataclasses import replace
from fnmatch import fnmatch

import pytest
import trio
from progress_sync.server import ServerConfig
from progress_sync.server._cli import _config, serve_command
from progress_sync.server._web import STATIC_DIR
from progress_sync.server.testing import ProgressServer, start_progress_server

PAGE_FILES = ("index.html", "app.css", "app.js", "progress-client.js")


async def test_the_page_is_served_at_the_root(progress_server):
    async with progress_server.client() as client:
        response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert '<script type="module" src="/static/app.js"></script>' in response.text
    assert '<link rel="stylesheet" href="/static/app.css">' in response.text
    assert '<meta name="progress-sync-max-stream-jobs" content="100">' in response.text
    assert "{{" not in response.text


async def test_the_page_says_how_many_jobs_a_stream_may_carry(nursery, progress_server_config):
    config = replace(progress_server_config, max_stream_jobs=7)
    server = await start_progress_server(nursery, config)
    async with server.client() as client:
        response = await client.get("/")
        again = await client.get("/", headers={"If-None-Match": response.headers["etag"]})
    await server.aclose()
    assert '<meta name="progress-sync-max-stream-jobs" content="7">' in response.text
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/static/app.js", "text/javascript"),
        ("/static/progress-client.js", "text/javascript"),
        ("/static/app.css", "text/css"),
    ],
)
async def test_the_page_assets_are_served_with_their_types(progress_server, path, content_type):
    async with progress_server.client() as client:
        response = await client.get(path)
        again = await client.get(path, headers={"If-None-Match": response.headers["etag"]})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(content_type)
    assert response.content == (STATIC_DIR / path.removeprefix("/static/")).read_bytes()
    assert again.status_code == 304


async def test_a_missing_asset_is_a_json_404(progress_server):
    async with progress_server.client() as client:
        response = await client.get("/static/nope.js")
    assert response.status_code == 404
    assert response.json()["error"] == "not found"


def test_every_page_file_is_shipped_as_package_data():
    # A file in server/static/ that no package-data glob matches would be missing from the wheel.
    pyproject = tomllib.loads((STATIC_DIR.parent.parent / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["progress_sync.server"]
    files = sorted(p.name for p in STATIC_DIR.iterdir() if p.is_file())
    assert set(PAGE_FILES) <= set(files)
    unshipped = [f for f in files if not any(fnmatch(f"static/{f}", g) for g in globs)]
    assert unshipped == []


@pytest.fixture
async def refusing_server(
    nursery: trio.Nursery, progress_server_config: ServerConfig
) -> ProgressServer:
    config = replace(progress_server_config, refuse_streams=True)
    return await start_progress_server(nursery, config)


@pytest.mark.parametrize(
    "path", ["/api/jobs/{job_id}/progress/stream", "/api/progress/stream?jobIds={job_id}"]
)
async def test_refuse_streams_answers_stream_routes_with_503_json(refusing_server, path):
    async with refusing_server.client() as client:
        created = await client.post("/api/jobs", json={"kind": "demo", "params": {"durationS": 5}})
        job_id = created.json()["jobId"]
        refused = await client.get(path.format(job_id=job_id))
        polled = await client.get(f"/api/jobs/{job_id}")
        await client.post(f"/api/jobs/{job_id}/cancel")
    assert refused.status_code == 503
    assert refused.headers["content-type"].startswith("application/json")
    body = refused.json()
    assert body["error"] == "streams refused"
    assert "--refuse-streams" in body["detail"]
    assert body["field"] is None
    assert polled.status_code == 200
    assert polled.json()["jobId"] == job_id


async def test_streams_are_not_refused_by_default(progress_server):
    async with progress_server.client() as client:
        created = await client.post(
            "/api/jobs", json={"kind": "demo", "params": {"durationS": 0.1}}
        )
        job_id = created.json()["jobId"]
        async with client.stream("GET", f"/api/jobs/{job_id}/progress/stream") as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")


def test_refuse_streams_must_be_a_bool():
    assert ServerConfig().refuse_streams is False
    with pytest.raises(ValueError, match="refuse_streams must be True or False, not 'yes'"):
        ServerConfig(refuse_streams="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize(("args", "expected"), [([], False), (["--refuse-streams"], True)])
def test_refuse_streams_flag(args, expected):
    context = serve_command.make_context("serve", args)
    assert _config(**context.params).refuse_streams is expected
