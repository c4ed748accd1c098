"""The SSE streams: one job's, and several jobs' on one connection.

Both are async generators of byte chunks that Quart writes out one by one. They start no
task: each waits on the store's conflating subscription inside a cancel scope that ends at the
heartbeat interval or when the server shuts down (see ``StreamHandle``). A client that goes
away cancels the request, which closes the generator and with it the subscription. A client
that stops reading leaves the generator parked at its ``yield`` while its subscription keeps
only the latest snapshot per job, so its memory stays bounded; ``ConnectionGuard`` drops it
after ``send_timeout``.

The rules come from the WHATWG HTML standard, section 9.2 "Server-sent events":
``retry:`` first (9.2.6), ids that let a reconnecting client resume (9.2.4), ``:`` comment
lines as heartbeats against idle proxies (9.2.7).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass

import trio
from progress_sync import (
    ExportStore,
    JobGoneError,
    JobNotFoundError,
    JobSnapshot,
    MultiSubscription,
    RegistrationTimeoutError,
    StoreUnavailableError,
    Subscription,
)

from .._metrics import Metrics
from ._admission import StreamHandle, StreamHub, spread_retry_ms
from ._framing import (
    HEARTBEAT,
    JOB_ERROR_EVENT,
    STORE_RETRY_INTERVAL,
    format_event,
    format_retry,
    reconnect_event,
    snapshot_event,
)
from ._pace import Pacer
from ._resume import format_seq_vector


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamContext:
    """What every stream of a server shares.

    Attributes:
        store: the export store the streams read.
        hub: the server's open streams (shutdown).
        metrics: the server's metrics.
        retry_ms: the ``retry:`` sent at stream start, in milliseconds.
        heartbeat_interval: seconds of silence before a heartbeat comment.
        registration_timeout: seconds a single-job stream waits for its job to be registered.
        shutdown_retry_spread_ms: width of the ``retry:`` window sent at shutdown, in ms.
    """

    store: ExportStore
    hub: StreamHub
    metrics: Metrics
    retry_ms: int
    heartbeat_interval: float
    registration_timeout: float
    shutdown_retry_spread_ms: int


def _job_error(job_id: str, error: str, detail: str, event_id: str) -> bytes:
    data = json.dumps({"jobId": job_id, "error": error, "detail": detail})
    return format_event(data, event=JOB_ERROR_EVENT, id=event_id)


def _goodbye(ctx: StreamContext, detail: dict[str, object]) -> bytes:
    retry_ms = spread_retry_ms(ctx.retry_ms, ctx.shutdown_retry_spread_ms)
    ctx.metrics.reconnect_sent.inc()
    return reconnect_event(retry_ms, {"reason": "server shutting down", **detail})


def _gone(ctx: StreamContext, exc: JobGoneError, event_id: str) -> bytes:
    ctx.metrics.job_error_sent.inc()
    return _job_error(
        exc.job_id,
        "job gone",
        f"job {exc.job_id!r} is no longer in the store ({exc.reason}); nothing more will come",
        event_id,
    )


def _registration_timed_out(ctx: StreamContext, job_id: str) -> bytes:
    ctx.metrics.job_error_sent.inc()
    # id 0: "nothing of this job seen"; a reconnect with it gets 204 while the job is still
    # unknown, so EventSource stops retrying.
    return _job_error(
        job_id,
        "job not registered",
        f"job {job_id!r} was not registered within {ctx.registration_timeout:g} s; "
        "check the job id",
        "0",
    )


def _last_words_single(ctx: StreamContext, subscription: Subscription) -> bytes:
    """What a stream cut by a shutdown still sends: its pending snapshot, then ``reconnect``."""
    chunks = []
    try:
        snapshot = subscription.receive_nowait()
    except trio.WouldBlock:
        snapshot = subscription.latest
    else:
        chunks.append(snapshot_event(snapshot))
        ctx.metrics.snapshot_sent(snapshot)
    if not snapshot.is_terminal:
        chunks.append(_goodbye(ctx, {"jobId": subscription.job_id}))
    return b"".join(chunks)


async def _follow_job(
    ctx: StreamContext,
    handle: StreamHandle,
    subscription: Subscription,
    last_seen: int | None,
    opened_at: float,
    pacer: Pacer,
) -> AsyncGenerator[bytes | int, None]:
    """Steps 3-4 of ``job_event_stream`` over an open subscription: the chunks to send, and
    after each snapshot event the seq it carried (an ``int``, not sent)."""
    item = await _next_item(subscription, handle, None)
    while True:
        if isinstance(item, JobGoneError):
            # id 0, as for a job never registered: a reconnect gets 204.
            yield _gone(ctx, item, "0")
            return
        if item is not None:
            if item.seq != last_seen and pacer.admit(item, trio.current_time()):
                yield snapshot_event(item)
                ctx.metrics.snapshot_sent(item, since=opened_at)
                last_seen = item.seq
                yield last_seen
            if item.is_terminal:
                return
        wait = pacer.wait(trio.current_time(), ctx.heartbeat_interval)
        item = await _next_item(subscription, handle, wait)
        if item is not None:
            continue
        due = pacer.due(trio.current_time())
        for snapshot in due:  # a held state whose interval has passed
            yield snapshot_event(snapshot)
            ctx.metrics.snapshot_sent(snapshot, since=opened_at)
            last_seen = snapshot.seq
            yield last_seen
        if due:
            continue
        if handle.stopping:
            yield _last_words_single(ctx, subscription)
            return
        yield HEARTBEAT
        ctx.metrics.heartbeats.inc()


async def _follow_jobs(
    ctx: StreamContext,
    handle: StreamHandle,
    multi: MultiSubscription,
    seen: list[int],
    position: dict[str, int],
    opened_at: float,
    pacer: Pacer,
) -> AsyncGenerator[bytes, None]:
    """The body of ``multi_job_event_stream`` over open subscriptions; updates ``seen``."""
    while True:
        try:
            wait = pacer.wait(trio.current_time(), ctx.heartbeat_interval)
            item = await _next_item(multi, handle, wait)
        except trio.EndOfChannel:
            return
        if isinstance(item, JobGoneError):
            pacer.drop(item.job_id)
            seen[position[item.job_id]] = 0
            yield _gone(ctx, item, format_seq_vector(seen))
            continue
        if item is None:
            due = pacer.due(trio.current_time())
            if not due and handle.stopping:
                yield _last_words_multi(ctx, multi, seen, position)
                return
            if not due:
                yield HEARTBEAT
                ctx.metrics.heartbeats.inc()
            for snapshot in due:
                seen[position[snapshot.job_id]] = snapshot.seq
                yield snapshot_event(snapshot, format_seq_vector(seen))
                ctx.metrics.snapshot_sent(snapshot, since=opened_at)
            continue
        index = position[item.job_id]
        if item.seq == seen[index]:
            continue  # the client has this one (it resumed with it)
        if not pacer.admit(item, trio.current_time()):
            continue  # held: sent when its interval has passed, unless a newer one comes
        seen[index] = item.seq
        yield snapshot_event(item, format_seq_vector(seen))
        ctx.metrics.snapshot_sent(item, since=opened_at)


async def _next_item(
    receiver: Subscription | MultiSubscription, handle: StreamHandle, wait: float | None
) -> JobSnapshot | JobGoneError | None:
    """The next snapshot, or the ``JobGoneError`` of a job that left the store, or None when
    ``wait`` seconds passed (or the server is stopping) first; ``wait`` None waits as long
    as it takes.

    Raises:
        trio.EndOfChannel: every job followed has ended.
    """
    try:
        try:
            return receiver.receive_nowait()
        except trio.WouldBlock:
            pass
        if wait is None:
            return await receiver.receive()
        with handle.wait_scope(wait):
            return await receiver.receive()
        return None
    except JobGoneError as exc:
        return exc


async def _wait_for_store(ctx: StreamContext, handle: StreamHandle) -> None:
    """Wait before looking at an unavailable store again (cut short by a shutdown)."""
    with handle.wait_scope(min(ctx.heartbeat_interval, STORE_RETRY_INTERVAL)):
        await trio.sleep_forever()


async def _stream_loop(
    ctx: StreamContext,
    handle: StreamHandle,
    follow: Callable[[], AsyncGenerator[bytes, None]],
    goodbye: dict[str, object],
) -> AsyncGenerator[bytes, None]:
    """The loop of every stream, single- or multi-job: ``follow()`` (subscribe and send events
    until the stream ends); while the store cannot be reached (``StoreUnavailableError``: Redis
    is away), keep the stream open with heartbeats and follow again every
    ``STORE_RETRY_INTERVAL`` seconds; at a shutdown meanwhile, send ``reconnect`` (``goodbye``
    names the jobs) and end."""
    while True:  # once, or again after the store was unavailable
        try:
            chunks = follow()
            async with aclosing(chunks):
                async for chunk in chunks:
                    yield chunk
            return
        except StoreUnavailableError:
            pass
        yield HEARTBEAT
        ctx.metrics.heartbeats.inc()
        await _wait_for_store(ctx, handle)
        if handle.stopping:
            yield _goodbye(ctx, goodbye)
            return


async def job_event_stream(
    ctx: StreamContext, job_id: str, *, last_seen: int | None = None, min_interval: float = 0.0
) -> AsyncIterator[bytes]:
    """Yield the SSE chunks of one job's stream, from ``retry:`` to its last event.

    1. ``retry:`` at once, so the status line and headers reach the client at once (Hypercorn
       sends them with the first body chunk).
    2. Wait for the job to be registered, with heartbeats; if it is not registered within
       ``registration_timeout`` seconds, send ``job-error`` (id ``0``) and end. If the job
       leaves the store while followed (deleted, or expired; on any server process), send
       ``job-error`` (``error: "job gone"``, id ``0``) and end.
    3. The current snapshot, unless its ``seq`` is ``last_seen`` (the client has it), then
       each change, conflated (a slow client gets the latest state, never a backlog), as
       ``job-progress`` events with ``id`` = seq.
    4. The terminal event (``job-completed``, ``job-failed`` or ``job-cancelled``), then end.
       At shutdown, a stream whose job has not ended sends its pending snapshot, then
       ``reconnect`` with a spread ``retry:``, and ends.

    A heartbeat comment goes out whenever nothing was sent for ``heartbeat_interval`` seconds.
    While the store cannot be reached (``StoreUnavailableError``: Redis is away) the stream
    stays open, sends heartbeats and looks again every ``STORE_RETRY_INTERVAL`` seconds; an
    open subscription simply waits, and resumes from the current snapshot (the store resyncs
    it) when the store is back.

    Args:
        ctx: what the server's streams share.
        job_id: the job to follow.
        last_seen: the ``seq`` the client has already (from ``Last-Event-ID``), or None.
        min_interval: seconds between two ``job-progress`` events (``minIntervalMs``; see
            ``Pacer``); 0 sends every change. Terminal events and ``job-error`` are never
            held.
    """
    opened_at = time.time()
    metrics = ctx.metrics
    store = ctx.store
    with ctx.hub.track() as handle:
        yield format_retry(ctx.retry_ms)
        deadline = trio.current_time() + ctx.registration_timeout

        async def follow_the_job() -> AsyncGenerator[bytes, None]:
            nonlocal last_seen
            while True:
                remaining = deadline - trio.current_time()
                registered = False
                with handle.wait_scope():
                    try:
                        wait = min(ctx.heartbeat_interval, remaining)
                        await store.wait_registered(job_id, wait)
                        registered = True
                    except RegistrationTimeoutError:
                        pass
                if registered:
                    break
                if handle.stopping:
                    yield _goodbye(ctx, {"jobId": job_id})
                    return
                if remaining <= ctx.heartbeat_interval:
                    yield _registration_timed_out(ctx, job_id)
                    return
                yield HEARTBEAT
                metrics.heartbeats.inc()
            async with store.subscribe(job_id) as subscription:
                follow = _follow_job(
                    ctx, handle, subscription, last_seen, opened_at, Pacer(min_interval)
                )
                async with aclosing(follow):
                    async for chunk in follow:
                        if isinstance(chunk, int):
                            last_seen = chunk  # sent: a resync after an outage skips it
                        else:
                            yield chunk

        stream = _stream_loop(ctx, handle, follow_the_job, {"jobId": job_id})
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk


def _last_words_multi(
    ctx: StreamContext,
    multi: MultiSubscription,
    seen: list[int],
    position: dict[str, int],
) -> bytes:
    """What a multi-job stream cut by a shutdown still sends: pending snapshots, ``reconnect``."""
    chunks = []
    while True:
        try:
            snapshot = multi.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        index = position[snapshot.job_id]
        if snapshot.seq == seen[index]:
            continue
        seen[index] = snapshot.seq
        chunks.append(snapshot_event(snapshot, format_seq_vector(seen)))
        ctx.metrics.snapshot_sent(snapshot)
    if not multi.ended:
        chunks.append(_goodbye(ctx, {"jobIds": [s.job_id for s in multi.subscriptions]}))
    return b"".join(chunks)


async def multi_job_event_stream(
    ctx: StreamContext,
    job_ids: Sequence[str],
    *,
    last_seen: Sequence[int] | None = None,
    min_interval: float = 0.0,
) -> AsyncIterator[bytes]:
    """Yield the SSE chunks of one stream that follows several jobs.

    Each job's events are those of ``job_event_stream`` (its data carries ``jobId``); the
    ``id`` of every event lists the seq the client now has of each job, in ``job_ids`` order
    (``5,0,12``), so one ``Last-Event-ID`` resumes them all. Jobs not registered when the
    stream opens get one ``job-error`` event each (seq ``0``) instead of a wait, and so does a
    job that leaves the store while followed (``error: "job gone"``). The stream
    ends when every job has sent its terminal event; at shutdown it sends what is pending,
    then ``reconnect`` with a spread ``retry:``. While the store cannot be reached it sends
    heartbeats and subscribes again, as ``job_event_stream`` does.

    Args:
        ctx: what the server's streams share.
        job_ids: the jobs, without duplicates.
        last_seen: the seqs the client has already (from ``Last-Event-ID``), or None.
        min_interval: seconds between two ``job-progress`` events of one job; see
            ``job_event_stream``.
    """
    opened_at = time.time()
    metrics = ctx.metrics
    seen = list(last_seen) if last_seen is not None else [0] * len(job_ids)
    position = {job_id: index for index, job_id in enumerate(job_ids)}
    told_unknown: set[str] = set()
    with ctx.hub.track() as handle:
        yield format_retry(ctx.retry_ms)

        async def follow_the_jobs() -> AsyncGenerator[bytes, None]:
            async with AsyncExitStack() as stack:
                subscriptions = []
                for index, job_id in enumerate(job_ids):
                    try:
                        subscription = await stack.enter_async_context(ctx.store.subscribe(job_id))
                    except JobNotFoundError:
                        if job_id in told_unknown:
                            continue
                        told_unknown.add(job_id)
                        seen[index] = 0
                        metrics.job_error_sent.inc()
                        yield _job_error(
                            job_id,
                            "job not found",
                            f"job {job_id!r} is not registered; check the job id",
                            format_seq_vector(seen),
                        )
                    else:
                        subscriptions.append(subscription)
                if not subscriptions:
                    return
                multi = MultiSubscription(subscriptions)
                follow = _follow_jobs(
                    ctx, handle, multi, seen, position, opened_at, Pacer(min_interval)
                )
                async with aclosing(follow):
                    async for chunk in follow:
                        yield chunk

        stream = _stream_loop(ctx, handle, follow_the_jobs, {"jobIds": list(job_ids)})
        async with aclosing(stream):
            async for chunk in stream:
                yield chunk
