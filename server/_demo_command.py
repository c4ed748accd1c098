"""``progress-sync demo``: a server, a few demo jobs, and their streams followed over real HTTP."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass, replace
from functools import partial

import httpx
import trio
from httpx_sse import aconnect_sse
from progress_sync._contract import JOB_STREAM_PATH, JOBS_PATH, path
from progress_sync._rate import format_time_left
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table

from ._config import ServerConfig
from ._serve import is_address_in_use, serve


@dataclass(frozen=True)
class DemoJobSpec:
    """One job the demo starts: a label, ``demo`` params and the status it should end in."""

    label: str
    params: dict[str, float]
    expected: str


DEMO_JOBS: tuple[DemoJobSpec, ...] = (
    DemoJobSpec("short export", {"durationS": 3, "updatesPerS": 25}, "completed"),
    DemoJobSpec("long export", {"durationS": 6, "updatesPerS": 50}, "completed"),
    DemoJobSpec("chatty export", {"durationS": 4, "updatesPerS": 500}, "completed"),
    DemoJobSpec(
        "failing export", {"durationS": 4, "updatesPerS": 25, "failAtPercent": 60}, "failed"
    ),
)
"""The demo's jobs; one of them fails on purpose at 60%."""


TIME_LEFT_LINE_INTERVAL = 2.0
"""Seconds between two ``label: 42.0% · about 3 s left`` lines per job."""


@dataclass
class _Outcome:
    spec: DemoJobSpec
    job_id: str = ""
    events: int = 0
    terminal: str | None = None
    detail: str = ""


async def _follow(
    client: httpx.AsyncClient, outcome: _Outcome, progress: Progress, task: TaskID
) -> None:
    url = path(JOB_STREAM_PATH, jobId=outcome.job_id)
    next_line = trio.current_time()
    async with aconnect_sse(client, "GET", url) as source:
        source.response.raise_for_status()
        async for event in source.aiter_sse():
            if not event.data:  # the retry: field alone carries no event
                continue
            data = json.loads(event.data)
            outcome.events += 1
            if event.event == "job-error":
                outcome.terminal, outcome.detail = "job-error", data.get("detail", "")
                return
            status = data["status"]
            stage = data["stage"] or status
            left = format_time_left(data.get("etaSeconds")) if status == "running" else None
            progress.update(
                task,
                completed=data["percent"],
                stage=f"{stage} ({status})",
                left=left or "",
                message=data.get("message") or "",
            )
            if left is not None and trio.current_time() >= next_line:
                # Also as a line of its own, so a log (not a terminal) shows it too.
                next_line = trio.current_time() + TIME_LEFT_LINE_INTERVAL
                progress.console.print(
                    f"  {outcome.spec.label}: {data['percent']:.1f}% · {left} · "
                    f"{data.get('message') or ''}"
                )
            if event.event in ("job-completed", "job-failed", "job-cancelled"):
                outcome.terminal = data["status"]
                outcome.detail = data.get("error") or json.dumps(data.get("result"))
                return


async def _start_server(nursery: trio.Nursery, config: ServerConfig, stop: trio.Event) -> str:
    try:
        urls = await nursery.start(partial(serve, config, shutdown_trigger=stop.wait))
    except BaseExceptionGroup as group:
        if not is_address_in_use(group):
            raise
        urls = await nursery.start(
            partial(serve, replace(config, port=0), shutdown_trigger=stop.wait)
        )
    return str(urls[0])


async def run_demo(
    config: ServerConfig,
    *,
    console: Console,
    jobs: tuple[DemoJobSpec, ...] = DEMO_JOBS,
    linger: float = 0.0,
) -> int:
    """Serve on the embedded store, start ``jobs``, follow their streams and report.

    Args:
        config: the server's settings; if its port is taken, a free port is used instead.
        console: where to show progress (rich).
        jobs: the jobs to start.
        linger: seconds to keep serving after the jobs end (to try ``curl`` or a browser).

    Returns:
        0 when every stream got its terminal event and each job ended as expected, else 1.
    """
    outcomes = [_Outcome(spec) for spec in jobs]
    # Ctrl-C (or SIGTERM) stops the demo cleanly: the server shuts down and the summary is
    # still printed, rather than a KeyboardInterrupt traceback.
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            stop = trio.Event()
            base_url = await _start_server(nursery, config, stop)
            console.print(f"[bold]progress-sync[/] serving on {base_url} ({config.sync_mode} mode)")
            try:
                async with trio.open_nursery() as work:

                    async def stop_on_signal() -> None:
                        async for _ in signals:
                            console.print("interrupted: stopping the demo")
                            work.cancel_scope.cancel()
                            return

                    work.start_soon(stop_on_signal)
                    await _run_jobs(base_url, outcomes, console, linger)
                    work.cancel_scope.cancel()
            finally:
                stop.set()
    return _summarise(console, outcomes)


async def _run_jobs(
    base_url: str, outcomes: list[_Outcome], console: Console, linger: float
) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as client:
        for outcome in outcomes:
            body = {"kind": "demo", "params": outcome.spec.params}
            response = await client.post(JOBS_PATH, json=body)
            response.raise_for_status()
            outcome.job_id = response.json()["jobId"]
            # soft_wrap: a long URL stays on one line, so it can be copied and pasted.
            console.print(
                f"  {outcome.spec.label}: curl -N {base_url}{response.json()['streamUrl']}",
                soft_wrap=True,
            )
        columns = (
            TextColumn("{task.description:<15}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[stage]:<20}"),
            TextColumn("{task.fields[left]:<18}"),
            TextColumn("{task.fields[message]}"),
        )
        with Progress(*columns, console=console) as progress:
            async with trio.open_nursery() as followers:
                for outcome in outcomes:
                    task = progress.add_task(
                        outcome.spec.label, total=100, stage="", left="", message=""
                    )
                    followers.start_soon(_follow, client, outcome, progress, task)
    if linger > 0:
        console.print(f"serving for {linger:g} s more on {base_url}; Ctrl-C stops")
        await trio.sleep(linger)


def _summarise(console: Console, outcomes: list[_Outcome]) -> int:
    table = Table(title="demo jobs")
    for column in ("job", "jobId", "events", "ended", "expected", "result or error"):
        table.add_column(column)
    ok = True
    for outcome in outcomes:
        good = outcome.terminal == outcome.spec.expected
        ok = ok and good
        table.add_row(
            outcome.spec.label,
            outcome.job_id,
            str(outcome.events),
            f"[{'green' if good else 'red'}]{outcome.terminal or 'no terminal event'}[/]",
            outcome.spec.expected,
            outcome.detail,
        )
    console.print(table)
    console.print(
        "[green]every stream got its terminal event[/]"
        if ok
        else "[red]some streams did not end as expected[/]"
    )
    return 0 if ok else 1
