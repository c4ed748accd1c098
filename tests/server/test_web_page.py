"""The web page in a real browser: Debian's Chromium driven by Playwright's sync API.

Rules of this module:
- The tests are plain sync functions: Playwright's sync API runs an asyncio loop of its own and
  would block trio's, so each test's server runs in a thread (``tests/_server_thread.py``),
  on a loopback port.
- No sleeps: every wait is one of Playwright's auto-waiting assertions (``expect``), which polls an
  observable condition until it holds or its timeout passes. The page's timings (SSE timeout, poll
  interval, SSE retry) are shortened through its URL. "Nothing happens after the job ended" is
  checked with Playwright's fake clock: the page's timers are run ten minutes ahead at once.
- Screenshots go to ``test-artifacts/`` (git-ignored). ``PROGRESS_SYNC_UPDATE_SCREENSHOT=1`` also
  refreshes the README's copy, ``tests/screenshots/web-page.png``.
- Chromium is Debian's (``apt-get install -y chromium``; Playwright's own browser download does
  not work everywhere); a missing Chromium or Playwright skips, or fails under
  ``PROGRESS_SYNC_REQUIRE_EXTERNAL=1``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from _external import missing
from _server_thread import serve_in_thread
from progress_sync.server import ServerConfig

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
README_SCREENSHOT = Path(__file__).resolve().parents[1] / "screenshots" / "web-page.png"
STREAM_URL = re.compile(r".*/progress/stream(\?.*)?$")
"""Both stream routes: one job's and the multi-job stream (``?jobIds=a,b``)."""
WAIT_MS = 15_000
"""How long an ``expect`` waits for its condition, in milliseconds (generous: 2 shared cores)."""

# Event-source bookkeeping injected before the page's scripts: lets a test check that every
# EventSource the page opened is closed.
TRACK_EVENT_SOURCES = """
(() => {
  const Native = window.EventSource;
  window.__eventSources = [];
  window.EventSource = class extends Native {
    constructor(...args) {
      super(...args);
      window.__eventSources.push(this);
    }
  };
})();
"""

try:  # imported here so that a missing Playwright skips (or fails) with a message
    from playwright.sync_api import Browser, Page, Request, expect, sync_playwright
except ImportError:  # pragma: no cover - depends on the environment
    sync_playwright = None  # type: ignore[assignment]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's headless Chromium, shared by this module's tests."""
    if sync_playwright is None:
        missing("Playwright for Python", "pip install -e '.[dev]'")
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"Chromium at {CHROMIUM}", "apt-get update && apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        expect.set_options(timeout=WAIT_MS)
        yield browser
        browser.close()


class PageUnderTest:
    """A page plus what it did: every request it sent and every uncaught script error."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.requests: list[Request] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def requests_for(self, job_id: str) -> list[Request]:
        """The requests whose URL names ``job_id``."""
        return [r for r in self.requests if job_id in r.url]


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., PageUnderTest]]:
    """Open a page in a fresh browser context; asserts at the end that no script error occurred."""
    opened: list[tuple[Any, PageUnderTest]] = []

    def open_(url: str, *, clock: bool = False, **context_options: Any) -> PageUnderTest:
        context = browser.new_context(
            **{"viewport": {"width": 1000, "height": 900}, **context_options}
        )
        context.add_init_script(TRACK_EVENT_SOURCES)
        page = context.new_page()
        if clock:
            page.clock.install()
        under_test = PageUnderTest(page)
        opened.append((context, under_test))
        page.goto(url)
        expect(page.get_by_role("heading", name="Start a demo job")).to_be_visible()
        return under_test

    yield open_
    for context, under_test in opened:
        context.close()
        assert under_test.errors == [], f"script errors on the page: {under_test.errors}"


@pytest.fixture
def start_server(progress_server_config: ServerConfig) -> Iterator[Callable[..., str]]:
    """Start a server (in a thread) with ``progress_server_config`` changed by keywords;
    returns its URL."""
    with ExitStack() as stack:

        def start(**changes: Any) -> str:
            return stack.enter_context(serve_in_thread(replace(progress_server_config, **changes)))

        yield start


def start_job(
    page: Page, duration_s: float, *, rate: float = 25, fail_at: float | None = None
) -> tuple[str, Any]:
    """Start a demo job from the form; returns its id and its entry in the job list."""
    page.get_by_label("Duration").fill(str(duration_s))
    page.get_by_label("Update rate").fill(str(rate))
    page.get_by_label("Fail at").fill("" if fail_at is None else str(fail_at))
    with page.expect_response(
        lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST"
    ) as answer:
        page.get_by_role("button", name="Start job").click()
    assert answer.value.status == 201, answer.value.text()
    job_id = answer.value.json()["jobId"]
    job = page.locator(f'.job[data-job-id="{job_id}"]')
    expect(job).to_be_visible()
    return job_id, job


def status_of(job: Any) -> Any:
    return job.locator('[data-role="status"]')


def transport_of(job: Any) -> Any:
    return job.locator('[data-role="transport"]')


def test_job_started_from_the_page_reaches_100_percent_and_completed(start_server, open_page):
    base_url = start_server()
    tab = open_page(base_url + "/")
    job_id, job = start_job(tab.page, 1.5, rate=40)

    expect(status_of(job)).to_have_text("completed")
    bar = job.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", "100")
    expect(bar).to_have_attribute("aria-valuemin", "0")
    expect(bar).to_have_attribute("aria-valuemax", "100")
    expect(job.locator('[data-role="percent"]')).to_have_text("100%")
    expect(job.locator('[data-role="stage"]')).to_have_text("mux")
    expect(transport_of(job)).to_have_text("Final · via SSE")
    expect(job.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    urls = [r.url for r in tab.requests_for(job_id)]
    assert urls == [f"{base_url}/api/progress/stream?jobIds={job_id}"], "followed by one stream"


def test_failing_job_shows_failed_and_its_message(start_server, open_page):
    tab = open_page(start_server() + "/")
    _, job = start_job(tab.page, 1, rate=40, fail_at=50)

    expect(status_of(job)).to_have_text("failed")
    expect(job.locator('[data-role="error"]')).to_have_text(
        re.compile(r"simulated failure at 50\.0% during visuals")
    )
    expect(job.locator('[data-role="error"]')).to_be_visible()
    bar = job.get_by_role("progressbar")
    # The failed state carries the report the error talks about: the bar stops at 50%.
    expect(bar).to_have_attribute("aria-valuenow", "50")
    expect(job.locator('[data-role="stage"]')).to_have_text("visuals")
    expect(tab.page.locator("#announcer")).to_have_text(re.compile("failed: simulated failure"))


def test_refused_streams_fall_back_to_polling_and_still_reach_100_percent(start_server, open_page):
    base_url = start_server(refuse_streams=True)
    tab = open_page(base_url + "/?pollIntervalMs=200")
    job_id, job = start_job(tab.page, 2.5, rate=20)

    expect(transport_of(job)).to_have_text("Polling")
    expect(job).to_have_attribute("data-transport", "polling")
    expect(status_of(job)).to_have_text("completed")
    expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(transport_of(job)).to_have_text("Final · via polling")
    stream_answers = [
        r.response().status for r in tab.requests_for(job_id) if "/progress/stream" in r.url
    ]
    assert stream_answers[:1] == [503]
    polls = [r for r in tab.requests_for(job_id) if r.url.endswith(f"/api/jobs/{job_id}")]
    assert len(polls) >= 3, "progress came from polls"


def test_silent_stream_falls_back_to_polling_then_goes_back_to_sse(start_server, open_page):
    tab = open_page(start_server() + "/?sseTimeoutMs=500&pollIntervalMs=200&sseRetryMs=700")
    held = []  # stream requests left unanswered: the connection stays open and silent
    tab.page.route(STREAM_URL, lambda route: held.append(route))
    job_id, job = start_job(tab.page, 30, rate=20)

    expect(transport_of(job)).to_have_text("Polling")
    expect(job.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", "0")
    assert held, "the page tried the stream first"
    assert any(r.url.endswith(f"/api/jobs/{job_id}") for r in tab.requests), "it polled"
    # The page closed those streams when it fell back to polling; let the next one through.
    tab.page.unroute(STREAM_URL)

    expect(transport_of(job)).to_have_text("Live (SSE)")
    job.get_by_role("button", name=re.compile("Cancel")).click()
    expect(status_of(job)).to_have_text("cancelled")
    expect(transport_of(job)).to_have_text("Final · via SSE")


def test_cancel_from_the_page_with_the_keyboard_ends_the_job_cancelled(start_server, open_page):
    base_url = start_server()
    tab = open_page(base_url + "/")
    job_id, job = start_job(tab.page, 60)
    expect(status_of(job)).to_have_text("running")

    cancel = job.get_by_role("button", name=f"Cancel job {job_id[:8]}")
    cancel.focus()
    tab.page.keyboard.press("Enter")

    expect(status_of(job)).to_have_text("cancelled")
    expect(cancel).to_be_hidden()
    expect(job).to_be_focused()
    snapshot = httpx.get(f"{base_url}/api/jobs/{job_id}", timeout=10).json()
    assert snapshot["status"] == "cancelled"


@pytest.mark.parametrize("transport", ["sse", "polling"])
def test_no_request_for_a_job_once_it_ended(start_server, open_page, transport):
    base_url = start_server(refuse_streams=transport == "polling")
    # Short poll and SSE retry intervals: a page that kept following would show it at once.
    tab = open_page(base_url + "/?pollIntervalMs=100&sseRetryMs=300&sseTimeoutMs=500", clock=True)
    job_id, job = start_job(tab.page, 1, rate=20)
    expect(status_of(job)).to_have_text("completed")
    made = len(tab.requests_for(job_id))
    assert made >= (1 if transport == "sse" else 3)

    assert_quiet_after(tab, job_id, made)
    assert tab.page.evaluate("window.__eventSources.length") >= 1


def test_a_job_the_server_does_not_know_ends_unknown_and_quiet(start_server, open_page):
    base_url = start_server(refuse_streams=True)
    tab = open_page(base_url + "/?pollIntervalMs=100&sseRetryMs=300", clock=True)
    # The server "forgets" every job: polls get 404 (as after a restart of an in-memory server).
    forgotten = {"error": "job not found", "detail": "no such job", "field": "jobId"}
    tab.page.route(
        re.compile(r".*/api/jobs/[^/]+$"), lambda route: route.fulfill(status=404, json=forgotten)
    )
    job_id, job = start_job(tab.page, 30)

    expect(status_of(job)).to_have_text("unknown")
    expect(job.locator('[data-role="error"]')).to_have_text(re.compile("does not know this job"))
    expect(transport_of(job)).to_have_text("Final")
    expect(job.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    assert_quiet_after(tab, job_id, len(tab.requests_for(job_id)))
    httpx.post(f"{base_url}/api/jobs/{job_id}/cancel", timeout=10)


def assert_quiet_after(tab: PageUnderTest, job_id: str, made: int) -> None:
    """Run the page's timers ten minutes ahead; assert no request for ``job_id`` after ``made``
    requests, and that every EventSource the page opened is closed."""
    tab.page.clock.run_for(10 * 60 * 1000)
    # A request of our own, which the browser sends after any request those timers made.
    with tab.page.expect_request_finished(lambda r: r.url.endswith("/healthz")):
        tab.page.evaluate("fetch('/healthz')")
    assert tab.requests_for(job_id)[made:] == []
    assert tab.page.evaluate("window.__eventSources.every(s => s.readyState === 2)")


def test_keyboard_phone_sized_screen_and_accessibility(start_server, open_page):
    from axe_playwright_python.sync_playwright import Axe

    tab = open_page(
        start_server() + "/",
        viewport={"width": 375, "height": 667},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = tab.page
    # The form in tab order, started with the keyboard alone.
    page.locator("body").focus()
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id"))
    assert order == ["duration", "rate", "fail-at", "start"]
    page.get_by_label("Duration").fill("1")
    page.get_by_label("Fail at").fill("70")
    page.get_by_label("Duration").press("Enter")
    job = page.locator(".job").first
    expect(status_of(job)).to_have_text("failed")
    page.get_by_label("Fail at").fill("")
    page.get_by_label("Duration").press("Enter")
    expect(status_of(page.locator(".job").first)).to_have_text("completed")

    # A bad value gets a readable message, names the field and puts the focus on it.
    page.get_by_label("Duration").fill("0")
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_role("alert")).to_have_text(re.compile("^Duration: "))
    expect(page.get_by_label("Duration")).to_be_focused()
    expect(page.get_by_label("Duration")).to_have_attribute("aria-invalid", "true")

    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"the page scrolls sideways on a phone: {width}"
    for bar in page.get_by_role("progressbar").all():
        assert bar.get_attribute("aria-labelledby")
        assert re.fullmatch(r"\d+(\.\d)?%, \w+", bar.get_attribute("aria-valuetext"))
    page.screenshot(path=ARTIFACTS / "web-page-phone.png", full_page=True)
    results = Axe().run(page)
    assert results.violations_count == 0, results.generate_report()


def stream_requests(tab: PageUnderTest) -> list[Request]:
    """The page's requests for the multi-job stream."""
    return [r for r in tab.requests if "/api/progress/stream" in r.url]


def stream_query(request: Request) -> dict[str, str]:
    """The query of a stream request, decoded: ``{"jobIds": "a,b", "lastEventId": "5,7"}``."""
    return {name: values[0] for name, values in parse_qs(urlsplit(request.url).query).items()}


def register(base_url: str, job_id: str, **body: Any) -> None:
    """Register an external job (``running``) over the ingest API."""
    response = httpx.post(f"{base_url}/api/jobs", json={"jobId": job_id, **body}, timeout=10)
    assert response.status_code == 201, response.text


def post(base_url: str, path: str, body: dict[str, Any] | None = None) -> None:
    response = httpx.post(f"{base_url}{path}", json=body or {}, timeout=10)
    assert response.status_code in (200, 202), response.text


def test_jobs_on_the_server_appear_on_load_and_share_one_stream(start_server, open_page):
    base_url = start_server()
    register(base_url, "ext-done", stage="rows")
    post(base_url, "/api/jobs/ext-done/complete", {"result": {"rows": 3}})
    register(base_url, "ext-broken", stage="rows")
    post(base_url, "/api/jobs/ext-broken/fail", {"error": "database gone"})
    running = ["ext-a", "ext-b", "ext-c"]
    for job_id in running:
        register(base_url, job_id, stage="rows")
    post(base_url, "/api/jobs/ext-a/progress", {"percent": 30, "stage": "rows"})

    tab = open_page(base_url + "/")
    page = tab.page
    job = {job_id: page.locator(f'.job[data-job-id="{job_id}"]') for job_id in running}
    done = page.locator('.job[data-job-id="ext-done"]')
    broken = page.locator('.job[data-job-id="ext-broken"]')
    expect(page.locator(".job")).to_have_count(5)
    # The finished ones keep their final state and are not followed.
    expect(status_of(done)).to_have_text("completed")
    expect(transport_of(done)).to_have_text("Final")
    expect(status_of(broken)).to_have_text("failed")
    expect(broken.locator('[data-role="error"]')).to_have_text("database gone")
    # The running ones are live, all on ONE multi-job stream, none on a stream of its own.
    for job_id in running:
        expect(transport_of(job[job_id])).to_have_text("Live (SSE)")
    expect(job["ext-a"].get_by_role("progressbar")).to_have_attribute("aria-valuenow", "30")
    assert [set(stream_query(r)["jobIds"].split(",")) for r in stream_requests(tab)] == [
        set(running)
    ]
    assert [r.url for r in tab.requests if "/progress/stream" in r.url] == [
        r.url for r in stream_requests(tab)
    ], "no single-job streams"
    assert tab.requests_for("ext-done") == tab.requests_for("ext-broken") == []

    post(base_url, "/api/jobs/ext-a/progress", {"percent": 42.5, "stage": "rows"})
    expect(job["ext-a"].get_by_role("progressbar")).to_have_attribute("aria-valuenow", "42.5")

    # A job that ends leaves the stream: it is reopened with the others, resuming where it was.
    with page.expect_request(lambda r: "/api/progress/stream" in r.url) as reopened:
        post(base_url, "/api/jobs/ext-b/complete")
    expect(status_of(job["ext-b"])).to_have_text("completed")
    expect(transport_of(job["ext-b"])).to_have_text("Final · via SSE")
    query = stream_query(reopened.value)
    ids = query["jobIds"].split(",")
    assert sorted(ids) == ["ext-a", "ext-c"], query
    seqs = dict(zip(ids, map(int, query["lastEventId"].split(",")), strict=True))
    assert all(seq > 0 for seq in seqs.values()), query
    post(base_url, "/api/jobs/ext-c/progress", {"percent": 77, "stage": "rows"})
    expect(job["ext-c"].get_by_role("progressbar")).to_have_attribute("aria-valuenow", "77")
    expect(transport_of(job["ext-a"])).to_have_text("Live (SSE)")

    made = len(tab.requests_for("ext-b"))
    post(base_url, "/api/jobs/ext-a/complete")
    post(base_url, "/api/jobs/ext-c/cancel")
    expect(status_of(job["ext-a"])).to_have_text("completed")
    expect(status_of(job["ext-c"])).to_have_text("cancelled")
    page.wait_for_function("window.__eventSources.every(s => s.readyState === 2)")
    assert tab.requests_for("ext-b")[made:] == [], "no request for a job after it ended"
    # Reopened once for ext-b; once more for ext-c alone unless both ends fell in one debounce.
    assert len(stream_requests(tab)) in (2, 3), stream_requests(tab)


def test_more_jobs_than_the_server_allows_per_stream_are_split(start_server, open_page):
    base_url = start_server(max_stream_jobs=2)
    running = ["split-a", "split-b", "split-c"]
    for job_id in running:
        register(base_url, job_id)
    tab = open_page(base_url + "/")
    for job_id in running:
        expect(transport_of(tab.page.locator(f'.job[data-job-id="{job_id}"]'))).to_have_text(
            "Live (SSE)"
        )
    groups = [stream_query(r)["jobIds"].split(",") for r in stream_requests(tab)]
    assert sorted(map(len, groups)) == [1, 2], groups
    assert sorted(job_id for group in groups for job_id in group) == running
    for job_id in running:
        post(base_url, f"/api/jobs/{job_id}/cancel")


def test_unchanged_polls_get_304_not_modified(start_server, open_page):
    base_url = start_server(refuse_streams=True)
    register(base_url, "polled", stage="rows")
    tab = open_page(base_url + "/?pollIntervalMs=100")
    job = tab.page.locator('.job[data-job-id="polled"]')
    expect(transport_of(job)).to_have_text("Polling")

    with tab.page.expect_response(
        lambda r: r.url.endswith("/api/jobs/polled") and r.status == 304
    ) as unchanged:
        pass
    first = next(
        r.response()
        for r in tab.requests
        if r.url.endswith("/api/jobs/polled") and r.response() is not None
    )
    assert first.status == 200
    etag = first.header_value("etag")
    assert etag
    assert unchanged.value.request.header_value("if-none-match") == etag

    # A change gets a 200 with the new state (and a new ETag), then 304s again.
    post(base_url, "/api/jobs/polled/progress", {"percent": 55, "stage": "rows"})
    expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "55")
    post(base_url, "/api/jobs/polled/complete")
    expect(status_of(job)).to_have_text("completed")
    expect(transport_of(job)).to_have_text("Final · via polling")
    statuses = [r.response().status for r in tab.requests_for("polled") if r.response()]
    assert statuses.count(304) >= 1
    assert statuses.count(200) >= 3, statuses


def test_a_reconnect_event_shows_reconnecting_then_live_again(start_server, open_page):
    tab = open_page(start_server() + "/")
    page = tab.page
    state: dict[str, Any] = {"first": True, "hold": True, "held": []}

    def handle(route: Any) -> None:
        if state["first"]:
            # What a server that shuts down sends: then the connection ends.
            state["first"] = False
            job_id = parse_qs(urlsplit(route.request.url).query)["jobIds"][0]
            snapshot = json.dumps(
                {"jobId": job_id, "status": "running", "percent": 5, "stage": "", "seq": 1}
            )
            goodbye = json.dumps(
                {"reason": "server shutting down", "jobIds": [job_id], "retryMs": 300}
            )
            route.fulfill(
                status=200,
                headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                body=f"id: 1\nevent: job-progress\ndata: {snapshot}\n\n"
                f"retry: 300\nevent: reconnect\ndata: {goodbye}\n\n",
            )
        elif state["hold"]:
            state["held"].append(route)
        else:
            route.continue_()

    page.route(STREAM_URL, handle)
    _, job = start_job(page, 30)
    expect(transport_of(job)).to_have_text("Reconnecting…")
    expect(transport_of(job)).to_have_attribute(
        "title", "Why: the server is shutting down; reconnecting in 0.3 s"
    )
    # EventSource comes back by itself after `retry:`, resuming with Last-Event-ID.
    state["hold"] = False
    for route in state["held"]:
        assert route.request.header_value("last-event-id") == "1"
        route.continue_()
    expect(transport_of(job)).to_have_text("Live (SSE)")
    expect(job.get_by_role("progressbar")).not_to_have_attribute("aria-valuenow", "5")
    job.get_by_role("button", name=re.compile("Cancel")).click()
    expect(status_of(job)).to_have_text("cancelled")
    assert len(stream_requests(tab)) == 2, "one reconnection, by the browser"


def test_a_204_stream_answer_makes_the_page_poll_without_a_reconnect_loop(start_server, open_page):
    tab = open_page(start_server() + "/?pollIntervalMs=100&sseRetryMs=60000")
    tab.page.route(STREAM_URL, lambda route: route.fulfill(status=204))
    _, job = start_job(tab.page, 1, rate=20)
    expect(transport_of(job)).to_have_text("Polling")
    expect(status_of(job)).to_have_text("completed")
    expect(transport_of(job)).to_have_text("Final · via polling")
    assert len(stream_requests(tab)) == 1


def test_screenshot_of_jobs_in_different_states(start_server, open_page):
    # Three jobs at a time on the server (the fourth waits queued), two jobs per stream, one
    # stream on the page: two running jobs share the stream, the others are polled.
    base_url = start_server(max_concurrent_jobs=3, max_stream_jobs=2)
    tab = open_page(base_url + "/?maxStreams=1&pollIntervalMs=300")
    page = tab.page
    _, completed = start_job(page, 1, rate=30)
    expect(status_of(completed)).to_have_text("completed")
    _, failed = start_job(page, 1.2, rate=30, fail_at=45)
    expect(status_of(failed)).to_have_text("failed")
    _, cancelled = start_job(page, 12)
    at_least_10 = re.compile(r"^([1-9]\d)(\.\d)?$")
    expect(cancelled.get_by_role("progressbar")).to_have_attribute("aria-valuenow", at_least_10)
    cancelled.get_by_role("button", name=re.compile("Cancel")).click()
    expect(status_of(cancelled)).to_have_text("cancelled")
    live_id, live = start_job(page, 12)
    live2_id, live2 = start_job(page, 14)
    _, polled = start_job(page, 10)
    _, queued = start_job(page, 20)
    expect(transport_of(live)).to_have_text("Live (SSE)")
    expect(transport_of(live2)).to_have_text("Live (SSE)")
    expect(transport_of(polled)).to_have_text("Polling")
    expect(status_of(queued)).to_have_text("queued")
    for job in (live, live2, polled):
        expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", at_least_10)
    expect(transport_of(polled)).to_have_text("Polling")
    expect(status_of(queued)).to_have_text("queued")
    assert stream_query(stream_requests(tab)[-1])["jobIds"].split(",") == [live_id, live2_id]
    for job in (live, live2, polled):
        expect(job.locator('[data-role="eta"]')).to_have_text(re.compile(r"^about \d+ s left$"))

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-page.png"
    page.screenshot(path=shot, full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("PROGRESS_SYNC_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(shot, README_SCREENSHOT)


def test_a_running_job_shows_about_how_long_is_left_and_what_its_message_counts(
    start_server, open_page
):
    tab = open_page(start_server() + "/")
    _, job = start_job(tab.page, 8, rate=25)
    eta = job.locator('[data-role="eta"]')
    expect(eta).to_have_text(re.compile(r"^about \d+ s left$"))
    expect(eta).to_have_attribute("title", re.compile(r"% per second"))
    expect(job.get_by_text("Message from the job")).to_be_visible()
    expect(job.locator('[data-role="message"]')).to_have_text(re.compile(r"^frame \d+ of 200$"))
    ARTIFACTS.mkdir(exist_ok=True)
    job.screenshot(path=str(ARTIFACTS / "web-page-time-left.png"))
    expect(status_of(job)).to_have_text("completed")
    expect(eta).to_have_text("\u2013")  # an en dash: nothing to say


def test_a_job_whose_producer_went_silent_shows_failed_with_the_lease_reason(
    start_server, open_page
):
    base_url = start_server()
    with httpx.Client(base_url=base_url) as http:
        answer = http.post("/api/jobs", json={"jobId": "silent-worker", "heartbeatTimeoutS": 1})
        assert answer.status_code == 201, answer.text
        answer = http.post("/api/jobs/silent-worker/progress", json={"percent": 30, "stage": "x"})
        assert answer.status_code == 202
    tab = open_page(base_url + "/")
    job = tab.page.locator('.job[data-job-id="silent-worker"]')
    expect(status_of(job)).to_have_text("failed")
    expect(job.locator('[data-role="error"]')).to_have_text(
        re.compile(r"no progress report or heartbeat for 1 s \(its heartbeatTimeoutS\)")
    )
    expect(job.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "30")
    expect(job.locator('[data-role="stage"]')).to_have_text("x")


def test_a_stream_of_several_jobs_asks_for_a_pace(start_server, open_page):
    tab = open_page(start_server() + "/")
    first, _ = start_job(tab.page, 6)
    second, job = start_job(tab.page, 6)
    expect(status_of(job)).to_have_text("running")
    tab.page.wait_for_function(
        "ids => window.__eventSources.some(s => s.readyState !== 2 && ids.every(id => "
        "s.url.includes(id)) && s.url.includes('minIntervalMs=500'))",
        arg=[first, second],
    )


def test_the_page_keeps_the_higher_percent_until_a_job_starts_over(start_server, open_page):
    base_url = start_server()
    with httpx.Client(base_url=base_url) as http:
        http.post("/api/jobs", json={"jobId": "retried"})
        http.post("/api/jobs/retried/progress", json={"percent": 80, "stage": "first"})
        tab = open_page(base_url + "/")
        job = tab.page.locator('.job[data-job-id="retried"]')
        bar = job.get_by_role("progressbar")
        expect(bar).to_have_attribute("aria-valuenow", "80")
        http.post("/api/jobs/retried/progress", json={"percent": 40, "stage": "lower"})
        expect(job.locator('[data-role="stage"]')).to_have_text("lower")
        expect(bar).to_have_attribute("aria-valuenow", "80")  # no reset: not a new run
        http.post("/api/jobs/retried/progress", json={"percent": 5, "stage": "b", "reset": True})
        expect(status_of(job)).to_have_text("running · attempt 2")
        expect(bar).to_have_attribute("aria-valuenow", "5")
        http.post("/api/jobs/retried/complete")
        expect(status_of(job)).to_have_text("completed · attempt 2")
