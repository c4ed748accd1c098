"""What the rate, ETA and monotonic rule cost in the Redis store's apply script.

Side by side in one run: the ``APPLY_PROGRESS`` script of an older commit (by default
``158ceca``, before issue 14's rate/ETA/monotonic policy) and the current one, each on its own
key prefix, alternating batch by batch (100 jobs, one update each) against one Redis. Prints
the median and p90 time per batch and the ratio. Needs a git checkout (for the old script) and
a Redis; it writes under ``progress-sync-bench:<random>:`` in the URL's database and deletes
its keys afterwards.

Run: ``python -m progress_sync.bench.redis_apply_cost [redis://127.0.0.1:6379/7] [commit]``.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import coredis
import trio
from progress_sync import _redis_scripts as current_scripts
from progress_sync._rate import rate_lua_arguments

JOBS = 100
ROUNDS = 300


def _old_scripts(commit: str) -> Any:
    """The module ``pipeline/_redis_scripts.py`` of ``commit``, loaded from ``git show``."""
    root = Path(__file__).resolve().parent.parent
    source = subprocess.run(
        ["git", "show", f"{commit}:pipeline/_redis_scripts.py"],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    namespace: dict[str, Any] = {"__name__": "old_redis_scripts"}
    exec(compile(source, f"{commit}:pipeline/_redis_scripts.py", "exec"), namespace)
    return SimpleNamespace(**namespace)


async def measure(url: str, commit: str) -> dict[str, list[float]]:
    """Seconds per apply batch, by version (``before``, ``now``)."""
    versions = {"before": _old_scripts(commit), "now": current_scripts}
    new_arguments = rate_lua_arguments()
    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    times: dict[str, list[float]] = {name: [] for name in versions}
    prefixes = {name: f"progress-sync-bench:{uuid.uuid4().hex[:8]}:" for name in versions}
    async with client:
        try:
            applies = {}
            for name, scripts in versions.items():
                register = client.register_script(scripts.REGISTER)
                for job in range(JOBS):
                    args = [prefixes[name], repr(time.time()), "86400000", f"j{job}", "running"]
                    await register(args=[*args, "", "0", "", "0", "", "token", ""])
                applies[name] = client.register_script(scripts.APPLY_PROGRESS)
            for round_ in range(ROUNDS):
                for name in ("before", "now") if round_ % 2 else ("now", "before"):
                    now = time.time()
                    args = [prefixes[name], repr(now), "86400000"]
                    if name == "now":
                        args += new_arguments
                    for job in range(JOBS):
                        percent = repr(round(round_ * 100 / ROUNDS, 2))
                        args += [f"j{job}", percent, "w", "0", "", repr(now + round_ / 2), "0"]
                        if name == "now":
                            args += ["", "0"]
                    started = time.perf_counter()
                    await applies[name](args=args)
                    times[name].append(time.perf_counter() - started)
        finally:
            for prefix in prefixes.values():
                keys = [key async for key in client.scan_iter(match=prefix + "*", count=1000)]
                if keys:
                    await client.delete(keys)
    return times


def main() -> None:
    url = sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/7"
    commit = sys.argv[2] if len(sys.argv) > 2 else "158ceca"
    times = trio.run(measure, url, commit)
    for name, values in times.items():
        values.sort()
        print(
            f"{name}: median {statistics.median(values) * 1e3:.3f} ms, "
            f"p90 {values[int(len(values) * 0.9)] * 1e3:.3f} ms per batch of {JOBS} updates"
        )
    ratio = statistics.median(times["now"]) / statistics.median(times["before"])
    print(f"now / before (medians): {ratio:.2f}")


if __name__ == "__main__":
    main()
