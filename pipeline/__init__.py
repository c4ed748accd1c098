"""progress-sync's pipeline: producers → buffered update queue → export store → subscribers.

Never imports ``progress_sync.server``. The public names are re-exported here; the modules that
hold them are private.

The data path of one progress report, and the module of each step::

    report      JobReporter.report / ThreadReporter / client.report_nowait  _threads, client/
                  the fields checked once (check_progress, check_job_id)     _snapshot
       ↓
    channel     UpdateBuffer.report_nowait: a bounded trio memory channel;  _buffer
                  full → the latest report per job is kept (coalesced)
       ↓        (or DirectSync: one store write per report, no channel)    _direct, _modes
    drain       the buffer's flush task: every flush_interval, the latest   _buffer
                  report per job as one batch; retried while the store is away
       ↓
    store       ExportStore.apply_progress → JobSnapshot (seq + 1)          _store, _snapshot,
                  MemoryStore in process, RedisStore (Lua scripts) shared    _memory_store,
                                                                             _redis_store
       ↓
    subscriber  store.subscribe(job_id) → Subscription: the latest          _subscription
                  snapshot, conflated (MultiSubscription for several jobs)
       ↓
    SSE         the server's stream loop writes each snapshot as an event   server/sse/_loop,
                  (``event: job-progress``, ``id: <seq>``, ``data: {...}``)   server/sse/_framing

Around it: the wire contract shared with the clients (paths, error codes) in ``_contract``,
the errors in ``_errors``, jobs the server runs in ``_runner``, leases of external jobs in
``_leases``, the checks of settings in ``_checks``.
"""

from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

from ._buffer import DEFAULT_CAPACITY as DEFAULT_CAPACITY
from ._buffer import DEFAULT_FLUSH_INTERVAL as DEFAULT_FLUSH_INTERVAL
from ._buffer import UpdateBuffer as UpdateBuffer
from ._buffer import open_update_buffer as open_update_buffer
from ._direct import DirectSync as DirectSync
from ._direct import open_direct_sync as open_direct_sync
from ._errors import AuthenticationError as AuthenticationError
from ._errors import BufferClosedError as BufferClosedError  # deprecated: SinkClosedError
from ._errors import InvalidFieldError as InvalidFieldError
from ._errors import InvalidUpdateError as InvalidUpdateError
from ._errors import JobExistsError as JobExistsError
from ._errors import JobFinishedError as JobFinishedError
from ._errors import JobGoneError as JobGoneError
from ._errors import JobNotFoundError as JobNotFoundError
from ._errors import JobQueueFullError as JobQueueFullError
from ._errors import ProgressSyncError as ProgressSyncError
from ._errors import RegistrationTimeoutError as RegistrationTimeoutError
from ._errors import ServerRejectedError as ServerRejectedError
from ._errors import ServerUnavailableError as ServerUnavailableError
from ._errors import SinkClosedError as SinkClosedError
from ._errors import StoreUnavailableError as StoreUnavailableError
from ._errors import UnknownStatusError as UnknownStatusError
from ._errors import WaitTimeoutError as WaitTimeoutError
from ._extras import MissingExtraError as MissingExtraError
from ._leases import DEFAULT_REAP_INTERVAL as DEFAULT_REAP_INTERVAL
from ._leases import open_lease_reaper as open_lease_reaper
from ._leases import run_lease_reaper as run_lease_reaper
from ._memory_store import DEFAULT_RETENTION as DEFAULT_RETENTION
from ._memory_store import MemoryStore as MemoryStore
from ._modes import open_update_sink as open_update_sink
from ._open_store import MEMORY_STORE_URL as MEMORY_STORE_URL
from ._open_store import is_shared_store as is_shared_store
from ._open_store import open_export_store as open_export_store
from ._redis_scripts import DEFAULT_IDLE_TIMEOUT as DEFAULT_IDLE_TIMEOUT
from ._redis_scripts import DEFAULT_REDIS_PREFIX as DEFAULT_REDIS_PREFIX
from ._runner import DEFAULT_MAX_CONCURRENT_JOBS as DEFAULT_MAX_CONCURRENT_JOBS
from ._runner import DEFAULT_MAX_QUEUED_JOBS as DEFAULT_MAX_QUEUED_JOBS
from ._runner import JobKind as JobKind
from ._runner import JobReporter as JobReporter
from ._runner import JobRunner as JobRunner
from ._runner import open_job_runner as open_job_runner
from ._sink import SinkStatistics as SinkStatistics
from ._sink import SyncMode as SyncMode
from ._sink import UpdateSink as UpdateSink
from ._snapshot import JOB_ID_PATTERN as JOB_ID_PATTERN
from ._snapshot import LEASE_EXPIRED_ERROR as LEASE_EXPIRED_ERROR
from ._snapshot import MAX_HEARTBEAT_TIMEOUT as MAX_HEARTBEAT_TIMEOUT
from ._snapshot import MAX_MESSAGE_LENGTH as MAX_MESSAGE_LENGTH
from ._snapshot import MAX_STAGE_LENGTH as MAX_STAGE_LENGTH
from ._snapshot import PERCENT_DECIMALS as PERCENT_DECIMALS
from ._snapshot import JobSnapshot as JobSnapshot
from ._snapshot import ProgressUpdate as ProgressUpdate
from ._snapshot import check_eta_seconds as check_eta_seconds
from ._snapshot import check_heartbeat_timeout as check_heartbeat_timeout
from ._snapshot import check_job_id as check_job_id
from ._snapshot import check_progress as check_progress
from ._snapshot import check_reported_at as check_reported_at
from ._snapshot import check_text as check_text
from ._snapshot import wall_clock as wall_clock
from ._status import TERMINAL_STATUSES as TERMINAL_STATUSES
from ._status import JobStatus as JobStatus
from ._status import parse_status as parse_status
from ._store import BatchResult as BatchResult
from ._store import ExportStore as ExportStore
from ._store import StoreStatistics as StoreStatistics
from ._subscription import MultiSubscription as MultiSubscription
from ._subscription import Subscription as Subscription
from ._threads import ThreadJobReporter as ThreadJobReporter
from ._threads import ThreadReporter as ThreadReporter
from ._threads import ThreadReporterStatistics as ThreadReporterStatistics
from ._threads import open_thread_reporter as open_thread_reporter

if _TYPE_CHECKING:
    from ._demo_job import DEMO_KIND as DEMO_KIND
    from ._demo_job import DemoJobError as DemoJobError
    from ._demo_job import DemoParams as DemoParams
    from ._redis_store import RedisStore as RedisStore
    from ._redis_store import open_redis_store as open_redis_store
    from ._tqdm import ReportingTqdm as ReportingTqdm

_LAZY_MODULES = {
    "RedisStore": "_redis_store",
    "open_redis_store": "_redis_store",
    "DEMO_KIND": "_demo_job",
    "DemoJobError": "_demo_job",
    "DemoParams": "_demo_job",
    "ReportingTqdm": "_tqdm",
}
"""Names imported on first use, and their modules: importing ``progress_sync`` (and so loading
the pytest plugin) imports neither coredis (the ``redis`` extra), pydantic nor tqdm."""

_LAZY_NAMES = frozenset(_LAZY_MODULES)


def __getattr__(name: str) -> _Any:
    if name in _LAZY_MODULES:
        from importlib import import_module

        from ._extras import needs_extra

        module_name = _LAZY_MODULES[name]
        if module_name == "_redis_store":
            with needs_extra("redis", "the Redis store"):
                return getattr(import_module(f".{module_name}", __name__), name)
        return getattr(import_module(f".{module_name}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_IDLE_TIMEOUT",
    "DEFAULT_MAX_CONCURRENT_JOBS",
    "DEFAULT_MAX_QUEUED_JOBS",
    "DEFAULT_REAP_INTERVAL",
    "DEFAULT_REDIS_PREFIX",
    "DEFAULT_RETENTION",
    "DEMO_KIND",
    "JOB_ID_PATTERN",
    "LEASE_EXPIRED_ERROR",
    "MAX_HEARTBEAT_TIMEOUT",
    "MAX_MESSAGE_LENGTH",
    "MEMORY_STORE_URL",
    "MAX_STAGE_LENGTH",
    "PERCENT_DECIMALS",
    "TERMINAL_STATUSES",
    "AuthenticationError",
    "BatchResult",
    "BufferClosedError",
    "DemoJobError",
    "DemoParams",
    "DirectSync",
    "ExportStore",
    "InvalidFieldError",
    "InvalidUpdateError",
    "JobExistsError",
    "JobFinishedError",
    "JobGoneError",
    "JobKind",
    "JobNotFoundError",
    "JobQueueFullError",
    "JobReporter",
    "JobRunner",
    "JobSnapshot",
    "JobStatus",
    "MissingExtraError",
    "MemoryStore",
    "MultiSubscription",
    "ProgressSyncError",
    "ProgressUpdate",
    "RedisStore",
    "RegistrationTimeoutError",
    "ReportingTqdm",
    "ServerRejectedError",
    "ServerUnavailableError",
    "SinkClosedError",
    "SinkStatistics",
    "StoreStatistics",
    "StoreUnavailableError",
    "Subscription",
    "SyncMode",
    "ThreadJobReporter",
    "ThreadReporter",
    "ThreadReporterStatistics",
    "UnknownStatusError",
    "UpdateBuffer",
    "UpdateSink",
    "WaitTimeoutError",
    "check_eta_seconds",
    "check_heartbeat_timeout",
    "check_job_id",
    "check_text",
    "check_progress",
    "check_reported_at",
    "is_shared_store",
    "open_direct_sync",
    "open_export_store",
    "open_job_runner",
    "open_lease_reaper",
    "open_thread_reporter",
    "open_redis_store",
    "open_update_buffer",
    "open_update_sink",
    "wall_clock",
    "parse_status",
    "run_lease_reaper",
]
