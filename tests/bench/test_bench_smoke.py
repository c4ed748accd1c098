"""Smoke test of the benchmark: a tiny ``--quick`` run writes its files with sane figures.

No timing is asserted (performance is measured by running the bench, never in the suite); the
run takes a few seconds of real time because it starts real server processes on 127.0.0.1.
Without the ``bench`` extra the sse-starlette reference is skipped, and the results say so.
"""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from progress_sync.bench import bench_command
from progress_sync.bench._run import REFERENCE_MISSING, reference_available

TINY = [
    "--quick",
    "--jobs", "3",
    "--rate", "20",
    "--subscribers", "1",
    "--duration", "0.6",
    "--flush-interval", "0.1",
    "--connections", "6",
]  # fmt: skip


@pytest.mark.slow
def test_quick_bench_writes_json_markdown_and_plot_with_sane_figures(tmp_path):
    result = CliRunner().invoke(
        bench_command, [*TINY, "--output-dir", str(tmp_path), "--tag", "smoke"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "smoke.json").read_text())
    assert (tmp_path / "smoke.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "smoke.md").read_text()
    assert "| inprocess | 3 | 20 | 1 | batched |" in table
    assert "## Targets" in table

    runs = {(r["level"], r["system"]): r for r in report["runs"]}
    expected = {("inprocess", "batched"), ("inprocess", "direct"), ("http", "batched"),
                ("http", "direct")}  # fmt: skip
    if reference_available():
        expected.add(("http", "sse-starlette"))
    else:
        assert REFERENCE_MISSING in report["notes"]
        assert REFERENCE_MISSING in table
    assert set(runs) == expected
    for run in runs.values():
        assert run["error"] is None
        assert run["notes"] == []  # every subscriber caught up with its job's latest report
        assert run["reports"] > 0
        assert 0 < run["reports_per_s"] <= 1.01 * run["offered_per_s"]
        assert run["producer_us_per_report"] > 0
        assert run["store_writes"] > 0
        assert run["events"] > 0
        assert run["cpu_s"] > 0  # the side that did the work spent CPU on it
        assert run["latency"]["count"] > 0
        assert 0 <= run["latency"]["p50"] <= run["latency"]["p99"] <= run["latency"]["max"]
        assert run["staleness"]["count"] > 0
        assert run["peak_rss_mb"] > 0
        assert run["terminal_expected"] == 3
        assert run["terminal_lost"] == 0
        assert run["coalescing_ratio"] >= 1
    assert runs["inprocess", "batched"]["cpu_s"] > 0
    assert sum(runs["http", system]["cpu_s"] for system in ("batched", "direct")) > 0
    # Direct sync writes every report on its own; the buffer writes once per flush.
    assert runs["inprocess", "direct"]["store_writes"] == runs["inprocess", "direct"]["reports"]
    assert (
        runs["inprocess", "batched"]["store_writes"] < runs["inprocess", "direct"]["store_writes"]
    )

    ingest = report["ingest"]
    assert ingest["raw_per_s"] > 0
    assert ingest["report_nowait_per_s"] > 0
    assert 0 < ingest["ratio"] == ingest["report_nowait_per_s"] / ingest["raw_per_s"]

    stream = {s["system"]: s for s in report["stream"]}
    assert set(stream) == {"batched", "raw-asgi"}
    for s in stream.values():
        assert s["error"] is None
        assert s["connected"] == 6
        assert s["events"] > 0
        assert s["terminal_lost"] == 0
        assert s["events_per_cpu_s"] is None or s["events_per_cpu_s"] > 0

    names = {t["name"] for t in report["targets"]}
    assert any(name.startswith("in-process ingest") for name in names)
    assert "terminal events lost, every scenario and system" in names
    lost = next(t for t in report["targets"] if t["name"].startswith("terminal events lost"))
    assert lost["met"] is True
    assert math.isfinite(lost["value"])
