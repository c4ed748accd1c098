"""The Redis export store: job snapshots shared by several server processes and machines.

Built on coredis (https://coredis.readthedocs.io), which runs on anyio and so under trio.
The store rules are enforced by Lua scripts inside Redis (see ``_redis_scripts``); changes are
published on one pub/sub channel, and each process keeps ONE subscription to it, fanned out to
its local subscribers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import coredis
import coredis.exceptions
import trio
from coredis.retry import ExponentialBackoffRetryPolicy, NoRetryPolicy

from . import _redis_scripts as scripts
from ._errors import (
    JobExistsError,
    JobFinishedError,
    JobNotFoundError,
    RegistrationTimeoutError,
    StoreUnavailableError,
)
from ._memory_store import DEFAULT_RETENTION
from ._rate import RateState, rate_lua_arguments
from ._redis_scripts import DEFAULT_IDLE_TIMEOUT, DEFAULT_REDIS_PREFIX
from ._snapshot import (
    LEASE_EXPIRED_ERROR,
    JobSnapshot,
    ProgressUpdate,
    check_heartbeat_timeout,
    format_seconds,
    round_percent,
)
from ._status import JobStatus
from ._store import (
    BatchResult,
    ExportStore,
    StoreStatistics,
    check_registration,
    check_terminal_state,
    check_update,
)
from ._subscription import Subscription

logger = logging.getLogger(__name__)

GONE_CHECK_INTERVAL = 5.0
"""Seconds between two checks that the jobs this process follows are still in Redis: a job
whose hash Redis expired (its TTL) or someone deleted without the store's scripts publishes
nothing, so each process looks, and ends those jobs' streams with ``job-error``. Jobs removed
by the store's own scripts (``delete``, expiry purges) are told at once on the channel."""

RECONNECT_DELAYS = (0.1, 2.0)
"""First and longest wait, in seconds, between two attempts to re-subscribe after the pub/sub
connection to Redis was lost (doubling in between)."""

_CONNECTION_ERRORS = (coredis.exceptions.ConnectionError, TimeoutError, StoreUnavailableError)
_RESYNC_CHUNK = 500
_EXPIRE_CHUNK = 100


def _connection_failure(exc: BaseException) -> BaseException | None:
    """``exc`` if it (or every exception in its group) says Redis could not be reached."""
    if isinstance(exc, _CONNECTION_ERRORS):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        match, rest = exc.split(_CONNECTION_ERRORS)
        if match is not None and rest is None:
            leaf: BaseException = match
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            return leaf
    return None


def _redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def _decode(flat: Sequence[Any]) -> JobSnapshot:
    """A snapshot from a job hash as ``HGETALL`` gives it inside Lua: ``[field, value, ...]``."""
    h = dict(zip(flat[::2], flat[1::2], strict=True))
    result = h.get("result")
    lease = h.get("heartbeatTimeoutS")
    status = JobStatus(h["status"])
    percent = float(h["percent"])
    rate = eta = None
    if not status.is_terminal:
        state = RateState(
            anchor_at=None if "rAt" not in h else float(h["rAt"]),
            anchor_percent=float(h.get("rPct", 0.0)),
            rate=None if "rate" not in h else float(h["rate"]),
            span=float(h.get("rSpan", 0.0)),
            stalled=h.get("stalled") == "1",
        )
        rate, eta = state.published(percent)
        if "eta" in h:
            eta = float(h["eta"])
    return JobSnapshot(
        job_id=h["id"],
        status=status,
        percent=percent,
        stage=h["stage"],
        message=h.get("message"),
        seq=int(h["seq"]),
        created_at=float(h["createdAt"]),
        updated_at=float(h["updatedAt"]),
        reported_at=float(h["reportedAt"]),
        kind=h.get("kind"),
        error=h.get("error"),
        result=None if result is None else json.loads(result),
        heartbeat_timeout=None if lease is None else float(lease),
        rate=rate,
        eta_seconds=eta,
        attempt=int(h.get("attempt", 1)),
    )


@dataclass(eq=False, slots=True)
class _LocalJob:
    """What this process follows of one job: its local subscribers and the newest snapshot."""

    interested: int = 0
    latest: JobSnapshot | None = None
    subscribers: set[Subscription] = field(default_factory=set)


class RedisStore(ExportStore):
    """An ``ExportStore`` in Redis, shared by every process that opens it with the same prefix.

    Make one with ``open_redis_store`` (or ``open_export_store``), which owns the pub/sub
    listener task. The rules are those of ``ExportStore`` (and of ``MemoryStore``), enforced
    atomically by Lua scripts inside Redis, so they hold whichever process writes:
    ``apply_progress`` is one script call (one round trip) for the whole batch.

    Every write publishes the changed snapshots in the same atomic step; each process listens
    with one pub/sub subscription and offers each snapshot to its local subscribers (a
    snapshot not newer, by ``seq``, than what a subscriber has is dropped). Writes made by this
    process are also offered locally before the call returns, so ``finish`` has told this
    process's subscribers, and published to every other process, when it returns.

    When Redis cannot be reached every operation raises ``StoreUnavailableError``, the store
    reports ``available=False`` in ``statistics()``, and the listener reconnects with
    backoff; once it is subscribed again it re-reads every job it has local subscribers for, so
    streams resync to the current snapshot.

    Terminal jobs expire ``retention`` seconds after their terminal state (a Redis key TTL);
    queued and running jobs expire after ``idle_timeout`` seconds without a change.

    Not thread-safe: call it from the trio run that opened it.

    Args:
        client: an entered coredis client with ``decode_responses=True``.
        url: the Redis URL, for messages (its password is not shown).
        prefix: the key prefix (see ``open_redis_store``).
        retention: seconds a job stays after its terminal state.
        idle_timeout: seconds a queued or running job stays without any change.
        clock: the wall clock, seconds since the Unix epoch.

    Raises:
        ValueError: ``retention`` or ``idle_timeout`` is negative or not finite, or ``prefix``
            is empty.
    """

    def __init__(
        self,
        client: coredis.Redis[str],
        *,
        url: str,
        prefix: str = DEFAULT_REDIS_PREFIX,
        retention: float = DEFAULT_RETENTION,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        for name, value in (("retention", retention), ("idle_timeout", idle_timeout)):
            if not (isinstance(value, int | float) and 0 <= value < math.inf):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, not {value!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty string, not {prefix!r}")
        self.url = _redacted(url)
        self.prefix = prefix
        self.retention = float(retention)
        self.idle_timeout = float(idle_timeout)
        self.channel = prefix + "changes"
        self._client = client
        self._clock = clock
        self._register = client.register_script(scripts.REGISTER)
        self._apply = client.register_script(scripts.APPLY_PROGRESS)
        self._finish = client.register_script(scripts.FINISH)
        self._list = client.register_script(scripts.LIST_JOBS)
        self._snapshots = client.register_script(scripts.SNAPSHOTS)
        self._heartbeat = client.register_script(scripts.HEARTBEAT)
        self._delete = client.register_script(scripts.DELETE)
        self._existing = client.register_script(scripts.EXISTING)
        self._expire_leases = client.register_script(scripts.EXPIRE_LEASES)
        self._local: dict[str, _LocalJob] = {}
        self._registration_waiters: dict[str, set[trio.Event]] = {}
        self._listening = False
        self._available = True
        self._jobs = 0
        self._subscribers = 0
        self._writes = 0
        self._updates_applied = 0
        self._ignored_terminal = 0
        self._ignored_stale = 0
        self._unknown_job_updates = 0
        self._notifications = 0
        self._unavailable_errors = 0
        self._resyncs = 0
        self._leases_expired = 0
        self._lower_percent_kept = 0
        self._rate_args = rate_lua_arguments()

    # -- the ExportStore interface --------------------------------------------------------

    async def register(
        self,
        job_id: str,
        *,
        status: JobStatus = JobStatus.QUEUED,
        stage: str = "",
        message: str | None = None,
        kind: str | None = None,
        heartbeat_timeout: float | None = None,
    ) -> JobSnapshot:
        status = check_registration(job_id, status, stage, message, kind)
        lease = check_heartbeat_timeout(heartbeat_timeout)
        args = [
            self.prefix,
            repr(self._clock()),
            str(self._ms(self.idle_timeout)),
            job_id,
            JobStatus(status).value,
            stage,
            *self._optional(message),
            *self._optional(kind),
            uuid.uuid4().hex,
            "" if lease is None else format_seconds(lease),
        ]
        with self._boundary(f"registering job {job_id!r}"):
            reply: list[Any] = await self._register(args=args)
        if reply[0] == "exists":
            raise JobExistsError(job_id)
        self._writes += 1
        self._jobs = int(reply[2])
        snapshot = _decode(reply[1])
        self._deliver(snapshot)
        return snapshot

    async def apply_progress(self, updates: Sequence[ProgressUpdate]) -> BatchResult:
        for update in updates:
            check_update(update)
        if not updates:
            await trio.lowlevel.checkpoint()
            self._writes += 1
            return BatchResult()
        args: list[str] = [
            self.prefix,
            repr(self._clock()),
            str(self._ms(self.idle_timeout)),
            *self._rate_args,
        ]
        for update in updates:
            args += (
                update.job_id,
                repr(round_percent(float(update.percent))),
                update.stage,
                *self._optional(update.message),
                repr(float(update.reported_at)),
                "1" if update.job_id in self._local else "0",
                "" if update.eta_seconds is None else repr(round(float(update.eta_seconds), 1)),
                "1" if update.reset else "0",
            )
        with self._boundary(f"writing a batch of {len(updates)} progress updates"):
            reply: list[Any] = await self._apply(args=args)
        applied, ignored_terminal, ignored_stale, unknown, wanted, jobs, lower_kept = reply
        for flat in wanted:
            self._deliver(_decode(flat))
        self._writes += 1
        self._jobs = int(jobs)
        self._updates_applied += applied
        self._ignored_terminal += ignored_terminal
        self._ignored_stale += ignored_stale
        self._lower_percent_kept += lower_kept
        self._unknown_job_updates += len(unknown)
        return BatchResult(applied, ignored_terminal, ignored_stale, tuple(unknown))

    async def finish(
        self,
        job_id: str,
        status: JobStatus,
        *,
        error: str | None = None,
        result: Any = None,
        last_progress: ProgressUpdate | None = None,
    ) -> JobSnapshot:
        status = check_terminal_state(status, error, result, last_progress)
        result_json = None
        if result is not None:
            result_json = json.dumps(result, allow_nan=False, separators=(",", ":"))
        last: list[str] = ["0", "", "", "0", "", ""]
        if last_progress is not None:
            last = [
                "1",
                repr(round_percent(float(last_progress.percent))),
                last_progress.stage,
                *self._optional(last_progress.message),
                repr(float(last_progress.reported_at)),
            ]
        args = [
            self.prefix,
            repr(self._clock()),
            str(self._ms(self.retention)),
            job_id,
            JobStatus(status).value,
            *self._optional(error),
            *self._optional(result_json),
            *last,
            uuid.uuid4().hex,
            "1" if last_progress is not None and last_progress.reset else "0",
        ]
        with self._boundary(f"writing the terminal state of job {job_id!r}"):
            reply: list[Any] = await self._finish(args=args)
        if reply[0] == "notfound":
            raise JobNotFoundError(job_id)
        snapshot = _decode(reply[1])
        if reply[0] == "terminal":
            self._ignored_terminal += 1
        else:
            self._writes += 1
        self._deliver(snapshot)
        return snapshot

    async def heartbeat(self, job_id: str) -> JobSnapshot:
        args = [self.prefix, repr(self._clock()), str(self._ms(self.idle_timeout)), job_id]
        with self._boundary(f"renewing the lease of job {job_id!r}"):
            reply: list[Any] = await self._heartbeat(args=args)
        if reply[0] == "notfound":
            raise JobNotFoundError(job_id)
        snapshot = _decode(reply[1])
        if reply[0] == "terminal":
            raise JobFinishedError(job_id, snapshot.status.value)
        return snapshot

    async def expire_leases(self) -> list[JobSnapshot]:
        ended: list[JobSnapshot] = []
        while True:
            args = [
                self.prefix,
                repr(self._clock()),
                str(self._ms(self.retention)),
                LEASE_EXPIRED_ERROR,
                str(_EXPIRE_CHUNK),
            ]
            with self._boundary("ending jobs whose lease expired"):
                reply: list[Any] = await self._expire_leases(args=args)
            for flat in reply:
                snapshot = _decode(flat)
                self._deliver(snapshot)
                ended.append(snapshot)
            self._writes += len(reply)
            self._leases_expired += len(reply)
            if len(reply) < _EXPIRE_CHUNK:
                return ended

    async def delete(self, job_id: str) -> None:
        with self._boundary(f"deleting job {job_id!r}"):
            deleted: int = await self._delete(args=[self.prefix, job_id])
        if not deleted:
            raise JobNotFoundError(job_id)
        self._writes += 1
        self._deliver_gone(job_id, "deleted")

    async def get(self, job_id: str) -> JobSnapshot:
        flat = await self._read([job_id], f"reading job {job_id!r}")
        if not flat[0]:
            raise JobNotFoundError(job_id)
        return _decode(flat[0])

    async def get_many(self, job_ids: Iterable[str]) -> dict[str, JobSnapshot]:
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return {}
        flat = await self._read(ids, f"reading {len(ids)} jobs")
        return {job_id: _decode(fields) for job_id, fields in zip(ids, flat, strict=True) if fields}

    async def list_jobs(
        self, *, status: JobStatus | None = None, offset: int = 0, limit: int = 100
    ) -> tuple[list[JobSnapshot], int]:
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        args = [
            self.prefix,
            repr(self._clock()),
            "" if status is None else JobStatus(status).value,
            str(int(offset)),
            str(int(limit)),
        ]
        with self._boundary("listing jobs"):
            reply: list[Any] = await self._list(args=args)
            page, total, jobs = reply
        self._jobs = int(jobs)
        return [_decode(flat) for flat in page], int(total)

    @asynccontextmanager
    async def subscribe(self, job_id: str) -> AsyncIterator[Subscription]:
        # Join the fan-out BEFORE reading the snapshot: every change published after the read
        # reaches this process's listener after this point, so it is kept in ``local.latest``
        # and nothing can fall between the read and the subscription.
        local = self._local.setdefault(job_id, _LocalJob())
        local.interested += 1
        try:
            snapshot = await self.get(job_id)
            if local.latest is None or local.latest.seq < snapshot.seq:
                local.latest = snapshot
            snapshot = local.latest

            def leave() -> None:
                local.subscribers.discard(subscription)
                self._subscribers -= 1

            subscription = Subscription(job_id, snapshot, leave)
            local.subscribers.add(subscription)
            self._subscribers += 1
            try:
                yield subscription
            finally:
                subscription.close()
        finally:
            local.interested -= 1
            if local.interested == 0 and self._local.get(job_id) is local:
                del self._local[job_id]

    async def wait_registered(self, job_id: str, timeout: float) -> JobSnapshot:  # noqa: ASYNC109
        deadline = trio.current_time() + timeout
        while True:
            # As in ``subscribe``: listen for the registration before looking for the job.
            waiter = trio.Event()
            waiters = self._registration_waiters.setdefault(job_id, set())
            waiters.add(waiter)
            try:
                try:
                    return await self.get(job_id)
                except JobNotFoundError:
                    pass
                with trio.move_on_at(deadline):
                    await waiter.wait()
            finally:
                waiters.discard(waiter)
                if not waiters and self._registration_waiters.get(job_id) is waiters:
                    del self._registration_waiters[job_id]
            if not waiter.is_set():
                raise RegistrationTimeoutError(job_id, timeout)

    def statistics(self) -> StoreStatistics:
        """Return the counters of this process's store (``jobs`` as of its latest write or list)."""
        return StoreStatistics(
            jobs=self._jobs,
            subscribers=self._subscribers,
            writes=self._writes,
            updates_applied=self._updates_applied,
            ignored_terminal=self._ignored_terminal,
            ignored_stale=self._ignored_stale,
            unknown_job_updates=self._unknown_job_updates,
            notifications=self._notifications,
            available=self._available and self._listening,
            unavailable_errors=self._unavailable_errors,
            resyncs=self._resyncs,
            leases_expired=self._leases_expired,
            lower_percent_kept=self._lower_percent_kept,
        )

    # -- fan-out -------------------------------------------------------------------------

    def _deliver(self, snapshot: JobSnapshot) -> None:
        """Offer a snapshot to this process's subscribers of its job, unless it is not newer."""
        waiters = self._registration_waiters.pop(snapshot.job_id, None)
        if waiters:
            for waiter in waiters:
                waiter.set()
        local = self._local.get(snapshot.job_id)
        if local is None or (local.latest is not None and local.latest.seq >= snapshot.seq):
            return
        local.latest = snapshot
        for subscriber in local.subscribers:
            subscriber.offer(snapshot)
        self._notifications += len(local.subscribers)

    def _deliver_gone(self, job_id: str, reason: str) -> None:
        """Tell this process's subscribers of ``job_id`` that it left the store."""
        local = self._local.pop(job_id, None)
        if local is None:
            return
        for subscriber in local.subscribers:
            subscriber.gone(reason)

    def _on_message(self, data: str) -> None:
        try:
            snapshots = json.loads(data)
        except ValueError:
            logger.error("ignored a malformed message on %s: %.200r", self.channel, data)
            return
        for flat in snapshots:
            fields = dict(zip(flat[::2], flat[1::2], strict=True))
            job_id = fields["id"]
            if "gone" in fields:
                self._deliver_gone(job_id, fields["gone"])
            elif job_id in self._local or job_id in self._registration_waiters:
                self._deliver(_decode(flat))

    async def _check_followed(self) -> None:
        """End the subscriptions of followed jobs that are no longer in Redis."""
        job_ids = list(self._local)
        for start in range(0, len(job_ids), _RESYNC_CHUNK):
            chunk = job_ids[start : start + _RESYNC_CHUNK]
            with self._boundary("checking followed jobs"):
                held: list[int] = await self._existing(args=[self.prefix, *chunk])
            for job_id, exists in zip(chunk, held, strict=True):
                if not exists:
                    self._deliver_gone(job_id, "expired from the store")

    async def _watch_followed(self) -> None:
        """Run ``_check_followed`` every ``GONE_CHECK_INTERVAL`` seconds, for ever."""
        while True:
            await trio.sleep(GONE_CHECK_INTERVAL)
            # Unavailable: the listener reconnects and resyncs; look again next time.
            with contextlib.suppress(StoreUnavailableError):
                await self._check_followed()

    async def _resync(self) -> None:
        """Re-read every job followed here and offer it: changes published while the
        listener was not subscribed are not lost, only conflated."""
        for waiters in self._registration_waiters.values():
            for waiter in waiters:
                waiter.set()
        self._registration_waiters.clear()
        job_ids = list(self._local)
        for start in range(0, len(job_ids), _RESYNC_CHUNK):
            chunk = job_ids[start : start + _RESYNC_CHUNK]
            for job_id, flat in zip(
                chunk, await self._read(chunk, "re-reading followed jobs"), strict=True
            ):
                if flat:
                    self._deliver(_decode(flat))
                else:
                    self._deliver_gone(job_id, "expired from the store")
        self._resyncs += 1

    async def _listen(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep one pub/sub subscription to the changes channel, reconnecting with backoff."""
        first = True
        delay, longest = RECONNECT_DELAYS
        while True:
            try:
                async with self._client.pubsub(
                    channels=[self.channel],
                    ignore_subscribe_messages=True,
                    retry_policy=NoRetryPolicy(),
                ) as pubsub:
                    await self._resync()
                    self._listening = self._available = True
                    if first:
                        first = False
                        task_status.started()
                    else:
                        logger.warning("Redis at %s is back; streams resynced", self.url)
                    delay = RECONNECT_DELAYS[0]
                    async for message in pubsub:
                        if message["type"] == "message":
                            self._on_message(str(message["data"]))  # str: decode_responses
            except BaseException as exc:
                cause = _connection_failure(exc)
                if cause is None:
                    raise
                if first:
                    raise StoreUnavailableError(
                        f"cannot subscribe to Redis at {self.url}: {cause}; is Redis running "
                        "there? (check the store URL)"
                    ) from exc
                if self._listening:
                    logger.warning("lost the connection to Redis at %s: %s", self.url, cause)
                self._available = False
            # Not listening until subscribed again (and resynced): changes may be missed now.
            self._listening = False
            await trio.sleep(delay)
            delay = min(delay * 2, longest)

    # -- helpers -------------------------------------------------------------------------

    async def _read(self, job_ids: Sequence[str], what: str) -> list[Any]:
        with self._boundary(what):
            return list(await self._snapshots(args=[self.prefix, *job_ids]))

    @contextmanager
    def _boundary(self, what: str) -> Iterator[None]:
        """Translate coredis's connection errors into ``StoreUnavailableError``."""
        try:
            yield
        except BaseException as exc:
            cause = _connection_failure(exc)
            if cause is None:
                raise
            self._available = False
            self._unavailable_errors += 1
            raise StoreUnavailableError(
                f"Redis at {self.url} could not be reached while {what}: {cause}"
            ) from exc
        if self._listening:
            self._available = True

    @staticmethod
    def _optional(value: str | None) -> tuple[str, str]:
        return ("0", "") if value is None else ("1", value)

    @staticmethod
    def _ms(seconds: float) -> int:
        return math.ceil(seconds * 1000)


@asynccontextmanager
async def open_redis_store(
    url: str,
    *,
    prefix: str = DEFAULT_REDIS_PREFIX,
    retention: float = DEFAULT_RETENTION,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    connect_timeout: float = 2.0,
    stream_timeout: float = 5.0,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[RedisStore]:
    """Connect to Redis and open a ``RedisStore`` whose pub/sub listener this block owns.

    ``async with open_redis_store("redis://127.0.0.1:6379/0") as store:``. Entering checks
    that Redis answers and subscribes to the changes channel; leaving closes the subscription
    and the connections.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
            ``unix:///path/to/socket?db=N`` (coredis ``Redis.from_url``).
        prefix: the key prefix (default ``progress-sync:``); processes that share jobs use the
            same prefix, and several deployments can share a Redis with different ones.
        retention: seconds a job stays after its terminal state (default one hour).
        idle_timeout: seconds a queued or running job stays without any change (default one
            day).
        connect_timeout: seconds to wait for a connection to Redis.
        stream_timeout: seconds to wait for a reply from Redis.
        clock: the wall clock for ``createdAt``/``updatedAt`` and expiry, seconds since the
            Unix epoch (``time.time`` by default; tests may pass a fake). The key TTLs that
            Redis applies use Redis's own clock.

    Raises:
        ValueError: the URL is not a Redis URL, or a setting is out of range.
        StoreUnavailableError: Redis could not be reached at ``url``.
    """
    scheme = urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"a Redis store URL starts with redis://, rediss:// or unix://, not {url!r} "
            "(example: redis://127.0.0.1:6379/0)"
        )
    client: coredis.Redis[str] = coredis.Redis.from_url(
        url,
        decode_responses=True,
        connect_timeout=connect_timeout,
        stream_timeout=stream_timeout,
        retry_policy=ExponentialBackoffRetryPolicy(
            (coredis.exceptions.ConnectionError,), retries=2, base_delay=0.05, max_delay=0.5
        ),
    )
    store = RedisStore(
        client,
        url=url,
        prefix=prefix,
        retention=retention,
        idle_timeout=idle_timeout,
        clock=clock,
    )
    started = False
    try:
        async with client, trio.open_nursery() as nursery:
            with store._boundary("connecting (is Redis running there? check the store URL)"):
                await client.ping()
            await nursery.start(store._listen)
            nursery.start_soon(store._watch_followed)
            started = True
            try:
                yield store
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # Before the store is handed out, the only expected error is an unreachable Redis:
        # raise it as itself, not wrapped in the groups of the nurseries it went through.
        if started:
            raise
        match, rest = group.split(StoreUnavailableError)
        if match is None or rest is not None:
            raise
        leaf: BaseException = match
        while isinstance(leaf, BaseExceptionGroup):
            leaf = leaf.exceptions[0]
        raise leaf from leaf.__cause__
