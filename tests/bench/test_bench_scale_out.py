"""bench/ on Redis with several workers: the options, the server command line, the scale-out.

No timing is asserted: the figures are measured by running the bench. The smoke run at the end
starts real server processes (1 and 2 workers) on 127.0.0.1 against the shared Redis.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time

import click
import coredis
import pytest
from _redis import require_shared_redis
from click.testing import CliRunner
from progress_sync.bench import Plan, System, Workload, bench_command
from progress_sync.bench._cli import build_plan
from progress_sync.bench._http_load import store_kind
from progress_sync.bench._processes import (
    delete_store_prefix,
    progress_sync_argv,
    unique_store_prefix,
)
from progress_sync.bench._recorder import PeakRss, cpu_seconds, tree_cpu_seconds
from progress_sync.bench._results import RunResult
from progress_sync.bench._run import _steps
from progress_sync.bench._scale_out import scale_out
from progress_sync.bench._workload import Level

REDIS = "redis://127.0.0.1:6379/7"  # the suite's database (tests/_redis.py), own prefixes


def _plan(**options):
    defaults = dict(
        quick=False,
        levels=(),
        jobs=(3,),
        rates=(20.0,),
        subscribers=(1,),
        duration=0.5,
        flush_interval=0.1,
        connections=None,
        rounds=None,
        reference=True,
    )
    return build_plan(**{**defaults, **options})


def _after(argv, option):
    return argv[argv.index(option) + 1]


def test_serve_argv_passes_the_store_its_prefix_and_the_workers():
    argv = progress_sync_argv(
        System.BATCHED, flush_interval=0.5, store=REDIS, store_prefix="p:", workers=2
    )
    assert _after(argv, "--store") == REDIS
    assert _after(argv, "--store-prefix") == "p:"
    assert _after(argv, "--workers") == "2"
    assert _after(argv, "--sync-mode") == "batched"
    assert store_kind(argv) == "redis"


def test_serve_argv_stays_in_memory_and_one_process_by_default():
    argv = progress_sync_argv(System.DIRECT, flush_interval=0.5)
    assert "--store" not in argv
    assert "--store-prefix" not in argv
    assert "--workers" not in argv
    assert store_kind(argv) == "memory"


def test_serve_argv_refuses_several_workers_on_the_in_memory_store():
    with pytest.raises(ValueError, match=r"workers=2 needs a Redis store"):
        progress_sync_argv(System.BATCHED, flush_interval=0.5, workers=2)


def test_serve_argv_refuses_a_store_without_its_own_prefix():
    with pytest.raises(ValueError, match=r"a store needs its own store_prefix"):
        progress_sync_argv(System.BATCHED, flush_interval=0.5, store=REDIS)


def test_each_run_gets_its_own_key_prefix():
    first, second = unique_store_prefix(), unique_store_prefix()
    assert first != second
    assert first.startswith("progress-sync-bench:")
    assert first.endswith(":")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 2}, r"workers=2 needs a Redis store \(--store redis://"),
        ({"scale_out": True}, r"scale-out needs a Redis store \(--store redis://"),
        ({"store": "memory"}, r"store must be a Redis URL such as redis://"),
        (
            {"scale_out": True, "store": REDIS, "levels": ("inprocess",)},
            r"--scale-out runs the HTTP level only",
        ),
    ],
)
def test_plan_options_that_need_a_redis_store_are_refused(options, message):
    with pytest.raises(click.UsageError, match=message):
        _plan(**options)


def test_plan_refuses_zero_workers():
    with pytest.raises(ValueError, match=r"workers must be a whole number >= 1, not 0"):
        Plan(workers=0)


def test_command_line_refuses_several_workers_without_redis_before_starting_anything():
    result = CliRunner().invoke(bench_command, ["--level", "http", "--workers", "2"])
    assert result.exit_code == 2
    assert "workers=2 needs a Redis store" in result.output


def test_scale_out_plan_alternates_one_and_two_workers_batched_on_redis():
    plan = _plan(store=REDIS, scale_out=True, rounds=2)
    assert plan.inprocess == ()
    assert plan.stream is None
    assert plan.scale_out_workers == 2
    steps = _steps(plan, [System.BATCHED, System.DIRECT])
    assert [(s.system, s.workers, s.store, s.round) for s in steps] == [
        (System.BATCHED, 1, "redis", 0),
        (System.BATCHED, 2, "redis", 0),
        (System.BATCHED, 2, "redis", 1),
        (System.BATCHED, 1, "redis", 1),
    ]
    assert steps[1].label.endswith("batched · redis · 2 workers · round 1")


def test_workers_option_runs_every_system_of_ours_with_that_many_workers():
    plan = _plan(store=REDIS, workers=3, levels=("http",))
    steps = _steps(plan, [System.BATCHED, System.DIRECT, System.SSE_STARLETTE])
    assert [(s.system, s.workers, s.store) for s in steps] == [
        (System.BATCHED, 3, "redis"),
        (System.DIRECT, 3, "redis"),
        (System.SSE_STARLETTE, 1, "memory"),  # the reference is one process, as it always is
    ]


def _run(workers, reports_per_s, events_per_s, cpu_per_1k, store="redis"):
    return RunResult(
        level=Level.HTTP,
        system=System.BATCHED,
        workload=Workload(),
        reports_per_s=reports_per_s,
        events_per_s=events_per_s,
        cpu_s_per_1k_reports=cpu_per_1k,
        store=store,
        workers=workers,
    )


def test_scale_out_ratios_are_medians_of_n_workers_over_one_worker():
    runs = [
        _run(1, 1000, 100, 0.10),
        _run(2, 1800, 190, 0.12),
        _run(2, 2000, 210, 0.10),
        _run(1, 1000, 100, 0.10),
        _run(1, 5000, 500, 1.0, store="memory"),  # not on Redis: left out
    ]
    (comparison,) = scale_out(runs)
    assert comparison.workers == 2
    assert comparison.reports_per_s == pytest.approx(1.9)
    assert comparison.events_per_s == pytest.approx(2.0)
    assert comparison.cpu_per_report == pytest.approx(1.1)
    assert "2 workers ÷ 1 worker" in comparison.describe()
    assert "reports/s 1.90x (1,900 ÷ 1,000)" in comparison.describe()
    assert scale_out(runs[:1]) == []


def test_server_cpu_and_memory_include_the_child_processes():
    busy_then_idle = "import time; sum(range(10**7)); time.sleep(30)"
    with subprocess.Popen([sys.executable, "-c", busy_then_idle]) as child:
        try:
            alone, tree = PeakRss(), PeakRss(children=True)
            alone.sample()
            tree.sample()
            assert tree.peak_bytes > alone.peak_bytes > 0
            deadline = time.monotonic() + 10
            while (child_cpu := tree_cpu_seconds(child.pid)) < 0.05:
                assert time.monotonic() < deadline, "the child never spent CPU"
                time.sleep(0.01)
            own = cpu_seconds()
            # the tree's CPU holds the child's: more than this process's own by that much
            assert tree_cpu_seconds(os.getpid()) >= own + child_cpu
        finally:
            child.kill()


@pytest.mark.redis
async def test_a_runs_keys_are_deleted_after_it():
    url = require_shared_redis()
    prefix = unique_store_prefix()
    client = coredis.Redis.from_url(url, decode_responses=True)
    async with client:
        await client.set(prefix + "a", "1")
        await client.set(prefix + "b", "2")
        await client.set(prefix.rstrip(":") + "-other", "3")
        assert await delete_store_prefix(url, prefix) == 2
        assert await client.exists([prefix + "a", prefix + "b"]) == 0
        assert await client.delete([prefix.rstrip(":") + "-other"]) == 1


@pytest.mark.redis
@pytest.mark.slow
def test_scale_out_smoke_run_on_redis(tmp_path):
    url = require_shared_redis()
    result = CliRunner().invoke(
        bench_command,
        [
            "--scale-out",
            "--store",
            url,
            "--jobs",
            "3",
            "--rate",
            "20",
            "--subscribers",
            "1",
            "--duration",
            "0.6",
            "--flush-interval",
            "0.1",
            "--output-dir",
            str(tmp_path),
            "--tag",
            "smoke",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "smoke.json").read_text())
    runs = report["runs"]
    assert sorted((r["system"], r["store"], r["workers"]) for r in runs) == [
        ("batched", "redis", 1),
        ("batched", "redis", 2),
    ]
    for run in runs:
        assert run["error"] is None
        assert run["reports"] > 0
        assert run["events"] > 0
        assert run["cpu_s"] > 0  # the server processes did the work
        assert run["peak_rss_mb"] > 0
        assert run["terminal_lost"] == 0
    two = next(r for r in runs if r["workers"] == 2)
    one = next(r for r in runs if r["workers"] == 1)
    # Parent and 2 workers against one process: the sum holds more memory.
    assert two["peak_rss_mb"] > one["peak_rss_mb"]
    assert two["coalescing_ratio"] is None
    assert two["store_writes_per_s"] is None
    assert math.isfinite(one["store_writes_per_s"])
    assert any(
        note.startswith("scale-out 3 jobs x 20 Hz x 1 subs, 2 workers") for note in report["notes"]
    )
    assert "scale-out 3 jobs" in (tmp_path / "smoke.md").read_text()
