"""``progress-sync bench`` and ``python -m progress_sync.bench``: the command line (click)."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import shlex
import sys
from functools import partial
from pathlib import Path

import click

from ._workload import PRODUCERS, Level, Plan, StreamWorkload, default_plan, grid, quick_plan

NEEDED = ("psutil", "matplotlib", "h11")
"""Modules the bench needs beyond the server's own dependencies."""

DEFAULT_OUTPUT = Path("bench/results")


def build_plan(
    *,
    quick: bool,
    levels: tuple[str, ...],
    jobs: tuple[int, ...],
    rates: tuple[float, ...],
    subscribers: tuple[int, ...],
    duration: float | None,
    flush_interval: float | None,
    connections: int | None,
    rounds: int | None,
    reference: bool,
    store: str | None = None,
    workers: int = 1,
    scale_out: bool = False,
    producers: tuple[str, ...] = (),
) -> Plan:
    """The plan for these command-line options (see ``bench_command``).

    Raises:
        click.UsageError: an option needs another (several workers, or ``--scale-out``,
            without a Redis ``--store``); the message says which.
    """
    if scale_out and levels and set(levels) != {Level.HTTP.value}:
        raise click.UsageError(
            "--scale-out runs the HTTP level only: leave out --level or give --level http"
        )
    if scale_out:
        levels = (Level.HTTP.value,)
    base = quick_plan() if quick else default_plan()
    inprocess, http, stream = base.inprocess, base.http, base.stream
    if jobs or rates or subscribers:
        custom = tuple(
            grid(
                jobs or (100,),
                rates or (100.0,),
                subscribers or (2,),
                duration=duration or (inprocess or http)[0].duration,
                flush_interval=flush_interval or 0.5,
            )
        )
        inprocess = custom
        http = tuple(
            dataclasses.replace(w, producer=p) for w in custom for p in producers or ("post",)
        )
    else:
        changes: dict[str, float] = {}
        if duration is not None:
            changes["duration"] = duration
        if flush_interval is not None:
            changes["flush_interval"] = flush_interval
        # mypy checks **changes against every field of Workload; changes holds two floats
        inprocess = tuple(dataclasses.replace(w, **changes) for w in inprocess)  # type: ignore[arg-type]
        http = tuple(dataclasses.replace(w, **changes) for w in http)  # type: ignore[arg-type]
        if producers:
            http = tuple(w for w in http if w.producer in producers)
    if stream is not None:
        wanted = connections or stream.connections
        stream = StreamWorkload(
            connections=wanted,
            jobs=max(1, min(stream.jobs, wanted // 100)) if connections else stream.jobs,
            duration=duration or stream.duration,
            flush_interval=flush_interval or stream.flush_interval,
        )
    selected = set(levels) if levels else {level.value for level in Level}
    try:
        return Plan(
            inprocess=inprocess if Level.INPROCESS.value in selected else (),
            http=http if Level.HTTP.value in selected else (),
            stream=stream if Level.STREAM.value in selected else None,
            rounds=rounds or base.rounds,
            ingest_rounds=base.ingest_rounds,
            reference=reference,
            store=store,
            workers=workers,
            scale_out=scale_out,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc


def require(modules: tuple[str, ...]) -> None:
    """Check that ``modules`` can be imported.

    Raises:
        click.ClickException: naming the missing ones and the install command.
    """
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    if missing:
        raise click.ClickException(
            f"the bench needs {', '.join(missing)}: pip install 'progress-sync[bench]' "
            "(in a checkout: pip install -e '.[bench]')"
        )


def _command_line(ctx: click.Context) -> str:
    words: list[str] = []
    for param in ctx.command.params:
        if ctx.get_parameter_source(param.name or "") is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[param.name or ""]
        flag = param.opts[0] if isinstance(param, click.Option) else param.name
        if isinstance(param, click.Option) and param.is_flag:
            words.append(flag if value else (param.secondary_opts or [flag])[0])
        elif isinstance(value, tuple):
            words += [part for v in value for part in (flag, str(v))]
        else:
            words += [flag, str(value)]
    return " ".join([ctx.command_path, shlex.join(words)]).strip()


@click.command("bench")
@click.option("--quick", is_flag=True, help="A small plan that finishes in under a minute.")
@click.option(
    "--level",
    "levels",
    multiple=True,
    type=click.Choice([level.value for level in Level]),
    help="Run only this level (repeatable); all three by default.",
)
@click.option(
    "--jobs",
    multiple=True,
    type=click.IntRange(min=1),
    help="Jobs reporting at once (repeatable: a grid).",
)
@click.option(
    "--rate",
    "rates",
    multiple=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Updates per second per job (repeatable).",
)
@click.option(
    "--subscribers",
    multiple=True,
    type=click.IntRange(min=1),
    help="Subscribers per job (repeatable).",
)
@click.option(
    "--producer",
    "producers",
    multiple=True,
    type=click.Choice(PRODUCERS),
    help="HTTP level: how producers send batches, post (POST /api/progress) or ws (the "
    "persistent connection, GET /api/progress/ws); repeatable. With --jobs/--rate/"
    "--subscribers: post unless given; otherwise the default grid's runs of these paths (its "
    "target scenario runs with both).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds each run reports for (the measured window).",
)
@click.option(
    "--flush-interval",
    type=click.FloatRange(min=0, min_open=True),
    help="The update buffer's flush interval in seconds [default: 0.5].",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    help="SSE connections of the stream level [default: 4000; 400 with --quick].",
)
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
    help="Times each scenario runs every system, alternating the order [default: 1].",
)
@click.option(
    "--reference/--no-reference",
    default=True,
    show_default=True,
    help="Run the sse-starlette reference over HTTP (needs the bench extra).",
)
@click.option(
    "--store",
    metavar="URL",
    help="HTTP level: serve on this Redis store (redis://127.0.0.1:6379/0), each run under "
    "its own key prefix, deleted after the run [default: the in-memory store].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="HTTP level: server processes (serve --workers); more than 1 needs --store.",
)
@click.option(
    "--scale-out",
    is_flag=True,
    help="HTTP level only: batched on --store with 1 worker and with --workers (2 unless "
    "given) alternating, and their ratios, instead of the systems comparison.",
)
@click.option(
    "--task-workers",
    type=click.IntRange(min=1),
    help="Instead of the systems comparison: N task-queue worker processes reporting "
    "straight to the Redis --store against the same through the HTTP client, server CPU per "
    "report side by side (--jobs per worker, default 20; --rate, default 100; --duration, "
    "default 5; --rounds, default 2).",
)
@click.option(
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="Where results are written.",
)
@click.option("--tag", help="File name of the results [default: quick with --quick, else latest].")
@click.option("--verbose", is_flag=True, help="Log server starts and stops, and each phase.")
@click.pass_context
def bench_command(
    ctx: click.Context,
    quick: bool,
    levels: tuple[str, ...],
    jobs: tuple[int, ...],
    rates: tuple[float, ...],
    subscribers: tuple[int, ...],
    duration: float | None,
    flush_interval: float | None,
    connections: int | None,
    rounds: int | None,
    reference: bool,
    store: str | None,
    workers: int,
    scale_out: bool,
    producers: tuple[str, ...],
    task_workers: int | None,
    output_dir: Path,
    tag: str | None,
    verbose: bool,
) -> None:
    """Benchmark batched against direct sync on the same workload, side by side.

    In process (producers as trio tasks), over HTTP (the real server in its own process,
    producers and real SSE clients in this one, loopback only), and the stream path at many
    connections against a minimal raw-ASGI broadcaster. Writes TAG.json, TAG.md and TAG.png
    to --output-dir; see bench/README.md for what each figure means.

    Giving --jobs, --rate or --subscribers replaces the grid by their combinations (the
    others default to 100 jobs, 100 Hz, 2 subscribers).
    """
    require(NEEDED)
    if task_workers is not None:
        _task_workers_command(
            ctx,
            store=store,
            workers=task_workers,
            jobs=jobs[0] if jobs else 20,
            rate=rates[0] if rates else 100.0,
            duration=duration or 5.0,
            flush_interval=flush_interval or 0.5,
            rounds=rounds or 2,
            output_dir=output_dir,
            tag=tag or "task-workers",
        )
        return
    plan = build_plan(
        quick=quick,
        levels=levels,
        jobs=jobs,
        rates=rates,
        subscribers=subscribers,
        duration=duration,
        flush_interval=flush_interval,
        connections=connections,
        rounds=rounds,
        reference=reference,
        store=store,
        workers=workers,
        scale_out=scale_out,
        producers=producers,
    )
    import trio
    from rich.console import Console

    from ._report import summary, write
    from ._run import run_plan

    # A no-op under ``progress-sync``, whose --log-level configured logging already.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("bench").setLevel(logging.INFO if verbose else logging.WARNING)
    console = Console(stderr=True)
    report = trio.run(partial(run_plan, plan, console=console, command=_command_line(ctx)))
    default_tag = "scale-out" if scale_out else "quick" if quick else "latest"
    written = write(report, output_dir, tag or default_tag)
    summary(report, Console())
    click.echo("results: " + ", ".join(str(path) for path in written))
    failed = [r for r in report.runs if not r.ok] + [s for s in report.stream if s.error]
    lost = sum(r.terminal_lost for r in report.runs) + sum(s.terminal_lost for s in report.stream)
    if failed or lost:
        click.echo(
            f"{len(failed)} run(s) could not be measured, {lost} terminal event(s) lost",
            err=True,
        )
        sys.exit(1)


def _task_workers_command(
    ctx: click.Context,
    *,
    store: str | None,
    workers: int,
    jobs: int,
    rate: float,
    duration: float,
    flush_interval: float,
    rounds: int,
    output_dir: Path,
    tag: str,
) -> None:
    """``--task-workers N``: the scenario of ``_task_workers``."""
    if store is None or not store.startswith(("redis://", "rediss://", "unix://")):
        raise click.UsageError("--task-workers needs a Redis --store (redis://127.0.0.1:6379/0)")
    import trio

    from ._task_workers import run_task_workers, table, write

    runs = trio.run(
        partial(
            run_task_workers,
            store,
            workers=workers,
            jobs=jobs,
            rate=rate,
            duration=duration,
            flush_interval=flush_interval,
            rounds=rounds,
        )
    )
    command = _command_line(ctx)
    written = write(runs, output_dir, tag, command)
    click.echo(table(runs, command))
    click.echo("results: " + ", ".join(str(path) for path in written))
