"""Run a plan: every scenario through every system, alternating, with progress on the terminal."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

import trio
from progress_sync import SyncMode
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from ._http_load import run_http
from ._inprocess import measure_ingest, run_inprocess
from ._processes import (
    delete_store_prefix,
    module_argv,
    open_server_process,
    progress_sync_argv,
    unique_store_prefix,
)
from ._report import this_machine
from ._results import BenchReport, IngestResult, RunResult, StreamResult
from ._scale_out import scale_out
from ._stream import run_stream
from ._targets import evaluate
from ._workload import Level, Plan, StreamWorkload, System, Workload

logger = logging.getLogger(__name__)

REFERENCE_MODULES = ("sse_starlette", "uvicorn", "starlette")
REFERENCE_MISSING = (
    "sse-starlette reference skipped: sse-starlette and uvicorn are not installed "
    "(pip install 'progress-sync[bench]' adds them)"
)

CLEANUP_TIMEOUT = 10.0
"""Seconds the deletion of a run's Redis keys may take."""

ShowProgress = Callable[[float], None]
"""Called with the fraction of the current step done, 0 to 1."""


def reference_available() -> bool:
    """True when the sse-starlette reference can run (the ``bench`` extra is installed)."""
    return all(importlib.util.find_spec(name) is not None for name in REFERENCE_MODULES)


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for e in error.exceptions for leaf in _leaves(e)]
    return [error]


def _describe(error: BaseException) -> str:
    """The distinct messages of ``error`` (an exception group's leaves, once each)."""
    messages = dict.fromkeys(f"{type(e).__name__}: {e}" for e in _leaves(error))
    return "; ".join(messages)


_T = TypeVar("_T")


def _ordered(systems: list[_T], index: int) -> list[_T]:
    """A B C for even ``index``, C B A for odd: drift on a noisy machine hits all alike."""
    return systems if index % 2 == 0 else systems[::-1]


@dataclass(frozen=True)
class _Step:
    label: str
    system: System
    run: Callable[[ShowProgress], Awaitable[object]]
    level: Level | None = None
    workload: Workload | None = None
    stream_workload: StreamWorkload | None = None
    round: int = 0
    workers: int = 1
    store: str = "memory"

    def failed(self, error: str) -> RunResult | StreamResult | None:
        """The result that records this step's failure."""
        if self.level is not None and self.workload is not None:
            return RunResult(
                level=self.level,
                system=self.system,
                workload=self.workload,
                round=self.round,
                offered_per_s=self.workload.offered_rate,
                error=error,
                workers=self.workers,
                store=self.store,
            )
        if self.stream_workload is not None:
            return StreamResult(system=self.system, workload=self.stream_workload, error=error)
        return None


async def _http_run(
    workload: Workload,
    system: System,
    round: int,
    show: ShowProgress,
    *,
    store: str | None = None,
    workers: int = 1,
) -> RunResult:
    """One HTTP run. Our servers use ``store`` (None: in memory) and ``workers``; on Redis
    each run gets its own key prefix, whose keys are deleted after the run."""
    prefix = None
    if system is System.SSE_STARLETTE:
        argv = module_argv("progress_sync.bench._starlette_ref")
        store, workers = None, 1
    else:
        prefix = unique_store_prefix() if store else None
        argv = progress_sync_argv(
            system,
            flush_interval=workload.flush_interval,
            store=store,
            store_prefix=prefix,
            workers=workers,
        )
    try:
        async with open_server_process(argv, workers=workers) as server:
            return await run_http(server, workload, system, round=round, progress=show)
    finally:
        if store is not None and prefix is not None:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT):
                deleted = await delete_store_prefix(store, prefix)
                logger.info("deleted %d Redis keys under %s", deleted, prefix)


def _steps(plan: Plan, http_systems: list[System]) -> list[_Step]:  # noqa: C901  # one loop a level, in run order
    steps: list[_Step] = []
    if plan.inprocess:
        steps.append(
            _Step(
                "ingest: report_nowait vs raw send_nowait",
                System.BATCHED,
                lambda _: measure_ingest(rounds=plan.ingest_rounds),
            )
        )
    for r in range(plan.rounds):
        for i, workload in enumerate(plan.inprocess):
            for system in _ordered([System.BATCHED, System.DIRECT], i + r):
                mode = SyncMode(system.value)

                def inprocess(
                    show: ShowProgress, w: Workload = workload, m: SyncMode = mode, rr: int = r
                ) -> Awaitable[RunResult]:
                    return run_inprocess(w, m, round=rr, progress=show)

                label = f"inprocess {workload.label} · {system.value}"
                steps.append(_Step(label, system, inprocess, Level.INPROCESS, workload, round=r))
    store_kind = "redis" if plan.store else "memory"
    for r in range(plan.rounds):
        for i, workload in enumerate(plan.http):
            if plan.scale_out:
                # Batched on Redis, 1 worker and N, alternating (1 N, N 1, ...).
                counts = _ordered([1, plan.scale_out_workers], i + r)
                runs = [(System.BATCHED, n) for n in counts]
            else:
                # sse-starlette has no persistent producer connection: ws runs are ours only
                systems = [
                    s
                    for s in http_systems
                    if workload.producer == "post" or s is not System.SSE_STARLETTE
                ]
                runs = [(s, plan.workers) for s in _ordered(systems, i + r)]
            for system, workers in runs:
                ours = system is not System.SSE_STARLETTE

                def http(
                    show: ShowProgress,
                    w: Workload = workload,
                    s: System = system,
                    rr: int = r,
                    n: int = workers,
                ) -> Awaitable[RunResult]:
                    return _http_run(w, s, rr, show, store=plan.store, workers=n)

                label = f"http {workload.label} · {system.value}"
                if ours and plan.store:
                    label += f" · {store_kind}"
                if ours and (plan.scale_out or workers > 1):
                    label += f" · {workers} worker{'s' if workers > 1 else ''}"
                steps.append(
                    _Step(
                        label,
                        system,
                        http,
                        Level.HTTP,
                        workload,
                        round=r,
                        workers=workers if ours else 1,
                        store=store_kind if ours else "memory",
                    )
                )
    if plan.stream is not None:
        for system in (System.BATCHED, System.RAW_ASGI):

            def stream(
                show: ShowProgress, s: System = system, w: StreamWorkload = plan.stream
            ) -> Awaitable[StreamResult]:
                return run_stream(s, w, progress=show)

            label = f"stream {plan.stream.label} · {system.value}"
            steps.append(_Step(label, system, stream, stream_workload=plan.stream))
    if plan.rounds > 1:
        steps = [
            _Step(
                f"{s.label} · round {s.round + 1}",
                s.system,
                s.run,
                s.level,
                s.workload,
                s.stream_workload,
                s.round,
                s.workers,
                s.store,
            )
            if s.level is not None
            else s
            for s in steps
        ]
    return steps


async def run_plan(plan: Plan, *, console: Console, command: str) -> BenchReport:
    """Run every scenario of ``plan`` and return what was measured (see ``BenchReport``).

    A step that fails is recorded with its error, and the others still run.
    """
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    machine = this_machine()
    notes: list[str] = []
    http_systems = [System.BATCHED, System.DIRECT]
    if plan.http and plan.reference and not plan.scale_out:
        if reference_available():
            http_systems.append(System.SSE_STARLETTE)
        else:
            notes.append(REFERENCE_MISSING)
            console.print(f"[yellow]{REFERENCE_MISSING}[/]")
    steps = _steps(plan, http_systems)
    runs: list[RunResult] = []
    ingest: IngestResult | None = None
    stream: list[StreamResult] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        overall = progress.add_task("[bold]bench[/]", total=len(steps))
        current = progress.add_task("", total=1.0)
        for step in steps:
            progress.update(current, description=f"  {step.label}", completed=0.0)

            def show(fraction: float) -> None:
                progress.update(current, completed=min(1.0, max(0.0, fraction)))

            try:
                outcome = await step.run(show)
            except Exception as exc:  # recorded in the report; the other steps still run
                logger.debug("%s failed", step.label, exc_info=True)
                error = _describe(exc)
                progress.console.print(f"[bold]{step.label}[/]: [red]{error}[/]")
                outcome = step.failed(error)
                if outcome is None:
                    notes.append(f"{step.label} failed: {error}")
            else:
                progress.console.print(_one_line(step.label, outcome))
            progress.advance(overall)
            if isinstance(outcome, IngestResult):
                ingest = outcome
            elif isinstance(outcome, RunResult):
                runs.append(outcome)
            elif isinstance(outcome, StreamResult):
                stream.append(outcome)
        progress.update(current, visible=False)
    notes += [comparison.describe() for comparison in scale_out(runs)]
    return BenchReport(
        started_at=started_at,
        command=command,
        machine=machine,
        runs=tuple(runs),
        ingest=ingest,
        stream=tuple(stream),
        # The targets compare single-process servers.
        targets=evaluate([r for r in runs if r.workers == 1], ingest, stream),
        notes=tuple(notes),
    )


def _one_line(label: str, outcome: object) -> str:
    if isinstance(outcome, IngestResult):
        return (
            f"[bold]{label}[/]: raw {outcome.raw_per_s:,.0f}/s, report_nowait "
            f"{outcome.report_nowait_per_s:,.0f}/s ({outcome.ratio:.0%})"
        )
    if isinstance(outcome, StreamResult):
        return (
            f"[bold]{label}[/]: {outcome.events_per_s:,.0f} events/s, "
            f"{outcome.events_per_cpu_s:,.0f} events/CPU-s, lost {outcome.terminal_lost}"
        )
    assert isinstance(outcome, RunResult)
    text = (
        f"[bold]{label}[/]: {outcome.reports_per_s:,.0f} reports/s, "
        f"{outcome.cpu_s_per_1k_reports:.4f} CPU-s/1k, {outcome.events_per_s:,.0f} events/s, "
        f"{outcome.store_writes_per_s:,.1f} writes/s, p99 {outcome.latency.p99:.0f} ms, "
        f"lost {outcome.terminal_lost}"
    )
    if outcome.notes:
        text += f" [yellow]({'; '.join(outcome.notes)})[/]"
    return text
