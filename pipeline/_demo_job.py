"""The built-in ``demo`` job kind: a simulated video export with weighted stages."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pydantic
import trio
from pydantic.alias_generators import to_camel

from ._errors import InvalidUpdateError
from ._runner import JobKind, JobReporter

DEMO_STAGES: tuple[tuple[str, float], ...] = (
    ("script", 10.0),
    ("voiceover", 20.0),
    ("visuals", 30.0),
    ("render", 30.0),
    ("mux", 10.0),
)
"""The demo's stages and their weights in percent of the whole job (they add up to 100)."""


DEMO_FPS = 25
"""Frames per second of the demo's simulated video: its message counts frames done
(``frame 312 of 1250``), a number of its own rather than a second percent."""


class DemoJobError(RuntimeError):
    """Raised by a demo job told to fail (``failAtPercent``), as a real job would fail."""


class DemoParams(pydantic.BaseModel):
    """Parameters of a ``demo`` job, in camelCase as clients send them.

    Attributes:
        duration_s: ``durationS``, how long the job runs, in seconds (0 < x <= 3600, default 5).
        updates_per_s: ``updatesPerS``, progress reports per second (0 < x <= 1000, default 25).
        fail_at_percent: ``failAtPercent``, fail when progress reaches this percent (0-100),
            or never (default).
    """

    model_config = pydantic.ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    duration_s: float = pydantic.Field(default=5.0, gt=0, le=3600, allow_inf_nan=False)
    updates_per_s: float = pydantic.Field(default=25.0, gt=0, le=1000, allow_inf_nan=False)
    fail_at_percent: float | None = pydantic.Field(default=None, ge=0, le=100, allow_inf_nan=False)


def parse_demo_params(raw: Mapping[str, Any]) -> DemoParams:
    """Check a ``demo`` job's ``params`` object.

    Raises:
        InvalidUpdateError: naming the first bad field as ``params.<field>`` and the reason.
    """
    try:
        # Clients' JSON: camelCase names and exact JSON types only ("5" is not a number).
        return DemoParams.model_validate(raw, strict=True, by_alias=True, by_name=False)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "params"
        raise InvalidUpdateError(f"params.{where}", first["msg"]) from None


def demo_stage(percent: float) -> tuple[str, float]:
    """Return the stage at ``percent`` (0-100) and the progress within it, in percent."""
    start = 0.0
    for name, weight in DEMO_STAGES:
        if percent < start + weight or name == DEMO_STAGES[-1][0]:
            return name, min(100.0, (percent - start) / weight * 100.0)
        start += weight
    raise AssertionError("unreachable")


async def run_demo(reporter: JobReporter, params: DemoParams) -> dict[str, Any]:
    """Simulate a video export: report progress ``updatesPerS`` times a second for ``durationS``.

    Returns:
        ``{"output": "<jobId>.mp4", "durationS": ..., "updates": ...}``.

    Raises:
        DemoJobError: when progress reaches ``failAtPercent``.
    """
    total = max(1, round(params.duration_s * params.updates_per_s))
    interval = params.duration_s / total
    frames = max(1, round(params.duration_s * DEMO_FPS))
    started = trio.current_time()
    for step in range(1, total + 1):
        await trio.sleep_until(started + step * interval)
        percent = step * 100.0 / total
        stage, _ = demo_stage(percent)
        frame = min(frames, math.floor(frames * step / total))
        # Reported before failing, as a real job reports where it is before it breaks: the
        # failed state then shows this report (the terminal write folds the pending report).
        reporter.report(percent, stage, f"frame {frame} of {frames}")
        if params.fail_at_percent is not None and percent >= params.fail_at_percent:
            raise DemoJobError(f"simulated failure at {percent:.1f}% during {stage}")
    return {"output": f"{reporter.job_id}.mp4", "durationS": params.duration_s, "updates": total}


DEMO_KIND = JobKind(name="demo", run=run_demo, parse_params=parse_demo_params)
"""The ``demo`` job kind, for ``open_job_runner(kinds={"demo": DEMO_KIND})``."""
