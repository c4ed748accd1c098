"""Results as files (JSON, a Markdown table, a PNG plot with matplotlib) and the summary."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from ._results import BenchReport, Machine, RunResult, StreamResult, Target
from ._workload import Level, System

SYSTEM_COLOURS = {
    System.BATCHED: "tab:blue",
    System.DIRECT: "tab:red",
    System.SSE_STARLETTE: "tab:green",
    System.RAW_ASGI: "tab:grey",
}


def this_machine() -> Machine:
    """Describe the machine the figures come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    return Machine(
        hostname=platform.node(),
        platform=platform.platform(),
        python=platform.python_version(),
        cpu=cpu,
        cores=os.cpu_count() or 0,
        memory_gib=round(psutil.virtual_memory().total / 2**30, 1),
        load_average=(round(load[0], 2), round(load[1], 2), round(load[2], 2)),
    )


def _f(value: float, digits: int = 1, *, thousands: bool = True) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:,.{digits}f}" if thousands else f"{value:.{digits}f}"


def _run_row(run: RunResult) -> list[str]:
    w = run.workload
    if not run.ok:
        return [
            run.level.value,
            f"{w.jobs}",
            f"{w.rate:g}",
            f"{w.subscribers}",
            run.system_label,
            f"not measured: {run.error}",
            *[""] * 10,
        ]
    client = (
        f"{run.client_cpu_s / run.window_s:.0%}"
        if math.isfinite(run.client_cpu_s) and run.window_s
        else "-"
    )
    return [
        run.level.value,
        f"{w.jobs}",
        f"{w.rate:g}",
        f"{w.subscribers}",
        run.system_label + (" ⚠" if run.notes else ""),
        f"{_f(run.reports_per_s, 0)} / {_f(run.offered_per_s, 0)}",
        _f(run.producer_us_per_report, 2),
        _f(run.store_writes_per_s, 1),
        _f(run.events_per_s, 0),
        _f(run.cpu_s_per_1k_reports, 4),
        client,
        _f(run.peak_rss_mb, 0),
        " / ".join(_f(v, 0) for v in (run.latency.p50, run.latency.p95, run.latency.p99))
        + f" / {_f(run.latency.max, 0)}",
        " / ".join(_f(v, 0) for v in (run.staleness.p50, run.staleness.p99, run.staleness.max)),
        f"{run.terminal_lost} / {run.terminal_expected}",
        _f(run.coalescing_ratio, 1),
    ]


RUN_COLUMNS = [
    "level",
    "jobs",
    "Hz/job",
    "subs/job",
    "system",
    "reports/s sustained / offered",
    "producer µs/report",
    "store writes/s",
    "events/s",
    "CPU s / 1k reports",
    "client CPU",
    "peak RSS MiB",
    "latency ms p50 / p95 / p99 / max",
    "staleness ms p50 / p99 / max",
    "terminal lost",
    "coalescing",
]


def _stream_row(result: StreamResult) -> list[str]:
    if result.error is not None:
        return [result.system.value, f"not measured: {result.error}", "", "", "", "", "", ""]
    return [
        result.system.value,
        f"{result.connected:,} / {result.workload.connections:,}",
        _f(result.events_per_s, 0),
        _f(result.cpu_s, 2),
        _f(result.events_per_cpu_s, 0),
        _f(result.peak_rss_mb, 0),
        _f(result.connect_s, 1),
        f"{result.terminal_lost}",
    ]


STREAM_COLUMNS = [
    "server",
    "connections",
    "events/s",
    "server CPU s",
    "events per CPU-s",
    "peak RSS MiB",
    "connect s",
    "terminal lost",
]


def _target_row(target: Target) -> list[str]:
    verdict = {True: "met", False: "**missed**", None: "not measured"}[target.met]
    value = _f(target.value, 2)
    return [target.name, target.goal, value, verdict, target.detail]


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def markdown(report: BenchReport) -> str:
    """The report as Markdown: machine, targets, then one table per level."""
    m = report.machine
    lines = [
        f"# progress-sync bench, {report.started_at}",
        "",
        f"Command: `{report.command}`",
        "",
        f"Machine: {m.cpu}, {m.cores} cores, {m.memory_gib} GiB, {m.platform}, Python "
        f"{m.python}; load average at start {m.load_average[0]} / {m.load_average[1]} / "
        f"{m.load_average[2]}.",
        "",
        "## Targets",
        "",
        *_table(
            ["target", "goal", "measured", "verdict", "from"],
            [_target_row(t) for t in report.targets],
        ),
    ]
    if report.ingest is not None:
        i = report.ingest
        lines += [
            "",
            f"## In-process ingest (best of {i.rounds} rounds of {i.batch:,} calls, interleaved)",
            "",
            *_table(
                [
                    "raw send_nowait calls/s",
                    "report_nowait (batched) calls/s",
                    "report_nowait (direct) calls/s",
                    "batched / raw",
                ],
                [
                    [
                        _f(i.raw_per_s, 0),
                        _f(i.report_nowait_per_s, 0),
                        _f(i.direct_per_s, 0),
                        f"{i.ratio:.0%}",
                    ]
                ],
            ),
        ]
    runs = [r for r in report.runs]
    if runs:
        lines += ["", "## Scenarios", "", *_table(RUN_COLUMNS, [_run_row(r) for r in runs])]
        noted = [r for r in runs if r.notes]
        if noted:
            lines += [""] + [
                f"- ⚠ {r.level.value} {r.workload.label} {r.system_label}: {'; '.join(r.notes)}"
                for r in noted
            ]
    if report.stream:
        w = report.stream[0].workload
        lines += [
            "",
            f"## Stream path at {w.connections:,} connections "
            f"(one event per {w.flush_interval:g} s each, {w.duration:g} s measured)",
            "",
            *_table(STREAM_COLUMNS, [_stream_row(s) for s in report.stream]),
        ]
    if report.notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in report.notes]]
    return "\n".join(lines) + "\n"


def plot(report: BenchReport, path: Path) -> bool:
    """Plot CPU per 1,000 reports and p99 latency against the update rate, every system on
    the same axes, one column per level. Returns False when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [
        lv
        for lv in (Level.INPROCESS, Level.HTTP)
        if any(r.level is lv and r.ok for r in report.runs)
    ]
    if not levels:
        return False
    figure, axes = plt.subplots(
        2, len(levels), figsize=(6.5 * len(levels), 8), squeeze=False, constrained_layout=True
    )
    styles = ["-", "--", ":", "-."]
    markers = ["o", "s", "^", "D", "v", "P"]
    for column, level in enumerate(levels):
        # One worker and POST producers only: the points of a system are medians over like
        # runs (the ws producer runs are in the tables).
        runs = [
            r
            for r in report.runs
            if r.level is level and r.ok and r.workers == 1 and r.workload.producer == "post"
        ]
        shapes = sorted({(r.workload.jobs, r.workload.subscribers) for r in runs})
        for system in System:
            for k, (jobs, subs) in enumerate(shapes):
                points: dict[float, list[RunResult]] = {}
                for r in runs:
                    if r.system is system and (r.workload.jobs, r.workload.subscribers) == (
                        jobs,
                        subs,
                    ):
                        points.setdefault(r.workload.rate, []).append(r)
                if not points:
                    continue
                rates = sorted(points)

                def median(values: list[float]) -> float:
                    values = sorted(v for v in values if math.isfinite(v))
                    return values[len(values) // 2] if values else math.nan

                cpu = [median([r.cpu_s_per_1k_reports for r in points[x]]) for x in rates]
                p99 = [median([r.latency.p99 for r in points[x]]) for x in rates]
                style = dict(
                    color=SYSTEM_COLOURS[system],
                    linestyle=styles[k % len(styles)],
                    marker=markers[k % len(markers)],
                    label=f"{system.value} · {jobs} jobs x {subs} subs",
                )
                axes[0][column].plot(rates, cpu, **style)
                axes[1][column].plot(rates, p99, **style)
        where = "in process" if level is Level.INPROCESS else "over HTTP (server process)"
        axes[0][column].set_title(f"CPU per 1,000 reports, {where}")
        axes[0][column].set_ylabel("CPU seconds per 1,000 reports")
        axes[1][column].set_title(
            "p99 report-to-client latency, "
            + ("in process" if level is Level.INPROCESS else "over HTTP")
        )
        axes[1][column].set_ylabel("ms")
        for row in (0, 1):
            ax = axes[row][column]
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("updates per second per job")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=6.5, ncols=2 if len(shapes) > 3 else 1)
    figure.suptitle(f"progress-sync bench, {report.started_at}")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def write(report: BenchReport, directory: Path, tag: str) -> list[Path]:
    """Write ``TAG.json``, ``TAG.md`` and ``TAG.png`` in ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path = directory / f"{tag}.json"
    json_path.write_text(json.dumps(report.to_json(), indent=2, ensure_ascii=False) + "\n")
    md_path = directory / f"{tag}.md"
    md_path.write_text(markdown(report))
    written = [json_path, md_path]
    png_path = directory / f"{tag}.png"
    if plot(report, png_path):
        written.append(png_path)
    return written


def summary(report: BenchReport, console: Console) -> None:
    """Print the key figures and the targets."""
    if report.runs:
        table = Table(title="scenarios", show_lines=False)
        for column in (
            "level",
            "workload",
            "system",
            "reports/s",
            "CPU s/1k",
            "events/s",
            "writes/s",
            "p99 ms",
            "stale p99 ms",
            "lost",
        ):
            table.add_column(column, overflow="fold")
        for r in report.runs:
            if not r.ok:
                table.add_row(r.level.value, r.workload.label, r.system_label, f"[red]{r.error}[/]")
                continue
            table.add_row(
                r.level.value,
                r.workload.label,
                r.system_label + (" ⚠" if r.notes else ""),
                _f(r.reports_per_s, 0),
                _f(r.cpu_s_per_1k_reports, 4),
                _f(r.events_per_s, 0),
                _f(r.store_writes_per_s, 1),
                _f(r.latency.p99, 0),
                _f(r.staleness.p99, 0),
                f"[{'red' if r.terminal_lost else 'green'}]{r.terminal_lost}[/]",
            )
        console.print(table)
    if report.stream:
        table = Table(title="stream path")
        for column in STREAM_COLUMNS:
            table.add_column(column)
        for s in report.stream:
            table.add_row(*_stream_row(s))
        console.print(table)
    if report.targets:
        table = Table(title="targets (ratios from this run)")
        for column in ("target", "goal", "measured", "verdict"):
            table.add_column(column, overflow="fold")
        for t in report.targets:
            colour = {True: "green", False: "red", None: "yellow"}[t.met]
            verdict = {True: "met", False: "missed", None: "not measured"}[t.met]
            table.add_row(
                t.name, t.goal, f"{_f(t.value, 2)}  ({t.detail})", f"[{colour}]{verdict}[/]"
            )
        console.print(table)
    for note in report.notes:
        console.print(f"[yellow]note:[/] {note}")
