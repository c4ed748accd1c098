"""progress-sync's load benchmark: batched against direct sync on the same workload, side by side.

Run it with ``python -m progress_sync.bench`` or ``progress-sync bench`` (``--quick`` for a
run under a minute); ``bench/README.md`` says what each figure means. The core and the server
never import this package (``progress-sync bench`` imports it only when it runs).
"""

from ._cli import bench_command as bench_command
from ._results import BenchReport as BenchReport
from ._results import IngestResult as IngestResult
from ._results import Percentiles as Percentiles
from ._results import RunResult as RunResult
from ._results import StreamResult as StreamResult
from ._results import Target as Target
from ._workload import Level as Level
from ._workload import Plan as Plan
from ._workload import StreamWorkload as StreamWorkload
from ._workload import System as System
from ._workload import Workload as Workload
from ._workload import default_plan as default_plan
from ._workload import quick_plan as quick_plan

__all__ = [
    "BenchReport",
    "IngestResult",
    "Level",
    "Percentiles",
    "Plan",
    "RunResult",
    "StreamResult",
    "StreamWorkload",
    "System",
    "Target",
    "Workload",
    "bench_command",
    "default_plan",
    "quick_plan",
]
