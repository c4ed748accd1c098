"""A subscriber's view of one job: the latest snapshot, conflated, never a backlog."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import trio

from ._errors import JobGoneError
from ._snapshot import JobSnapshot


class _ConflatingReceiver:
    """What both receivers share: wait on a parking lot until ``receive_nowait`` has a
    snapshot, and iterate until ``trio.EndOfChannel``."""

    _lot: trio.lowlevel.ParkingLot

    def receive_nowait(self) -> JobSnapshot:
        raise NotImplementedError

    async def _wait_and_receive(self) -> JobSnapshot:
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                snapshot = self.receive_nowait()
            except trio.WouldBlock:
                await self._lot.park()
            else:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return snapshot

    async def receive(self) -> JobSnapshot:
        raise NotImplementedError

    def __aiter__(self) -> _ConflatingReceiver:
        return self

    async def __anext__(self) -> JobSnapshot:
        try:
            return await self.receive()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


class Subscription(_ConflatingReceiver):
    """Receives the snapshots of one job through a conflating slot, not a queue.

    The store puts the current snapshot in the slot when the subscription is made, then every
    new snapshot of the job. A snapshot not yet received is replaced by the next one (it is
    *conflated*), so a subscriber that cannot keep up gets only the latest state and its
    memory does not grow with the update rate. Since nothing changes a job after its terminal
    state, the terminal snapshot is always the last one received; iteration ends after it.

    Made by ``ExportStore.subscribe``; use it as ``async with store.subscribe(job_id) as sub:
    async for snapshot in sub: ...``.

    Attributes:
        job_id: the job this subscription follows.
        received: how many snapshots this subscriber has received.
        conflated: how many snapshots were replaced by a newer one before being received.
    """

    def __init__(self, job_id: str, initial: JobSnapshot, on_close: Callable[[], None]) -> None:
        self.job_id = job_id
        self.received = 0
        self.conflated = 0
        self._pending: JobSnapshot | None = initial
        self._latest = initial
        self._lot = trio.lowlevel.ParkingLot()
        self._ended = False
        self._closed = False
        self._gone: str | None = None
        self._on_close = on_close

    @property
    def latest(self) -> JobSnapshot:
        """The newest snapshot offered to this subscriber (received or not)."""
        return self._latest

    def offer(self, snapshot: JobSnapshot) -> None:
        """Put ``snapshot`` in the slot, replacing one not yet received. Called by the store."""
        if self._closed or snapshot.seq <= self._latest.seq:
            return
        if self._pending is not None:
            self.conflated += 1
        self._pending = snapshot
        self._latest = snapshot
        self._lot.unpark_all()

    def gone(self, reason: str) -> None:
        """Say the job left the store (deleted or expired). Called by the store.

        The subscriber gets the snapshot it has pending, if any, then ``JobGoneError`` once,
        then ``trio.EndOfChannel``. Nothing for a job that has ended (its stream is over).
        """
        if self._closed or self._ended or self._gone is not None:
            return
        if self._pending is not None and self._pending.is_terminal:
            return
        self._gone = reason
        self._lot.unpark_all()

    @property
    def has_news(self) -> bool:
        """A snapshot, or the news that the job is gone, waits to be received."""
        return not self._closed and (
            self._pending is not None or (self._gone is not None and not self._ended)
        )

    def receive_nowait(self) -> JobSnapshot:
        """Take the pending snapshot without waiting.

        Raises:
            trio.WouldBlock: no new snapshot since the last one received.
            trio.EndOfChannel: the terminal snapshot (or ``JobGoneError``) was received
                already.
            JobGoneError: the job left the store (once; see ``gone``).
            trio.ClosedResourceError: the subscription was closed.
        """
        if self._closed:
            raise trio.ClosedResourceError("the subscription was closed")
        snapshot = self._pending
        if snapshot is None:
            if self._ended:
                raise trio.EndOfChannel
            if self._gone is not None:
                self._ended = True
                raise JobGoneError(self.job_id, self._gone)
            raise trio.WouldBlock
        self._pending = None
        self.received += 1
        if snapshot.status.is_terminal:
            self._ended = True
        return snapshot

    async def receive(self) -> JobSnapshot:
        """Wait for the next snapshot of the job and return it.

        Returns at once with the pending snapshot if there is one.

        Raises:
            trio.EndOfChannel: the terminal snapshot was received already.
            JobGoneError: the job left the store (deleted or expired).
            trio.ClosedResourceError: the subscription was closed.
        """
        return await self._wait_and_receive()

    def close(self) -> None:
        """Stop receiving and leave the store's subscriber list. Idempotent; never blocks."""
        if not self._closed:
            self._closed = True
            self._pending = None
            self._lot.unpark_all()
            self._on_close()


class MultiSubscription(_ConflatingReceiver):
    """Receives the snapshots of several jobs, each conflated on its own, through one wait.

    Built from subscriptions already open (``store.subscribe(job_id)`` entered for each job);
    it does not own them: close them as usual when done. Every job keeps its own conflating
    slot, so a subscriber that cannot keep up gets the latest state of each job and its
    memory stays bounded by the number of jobs, whatever the update rate. Jobs with a pending
    snapshot are served in turn (round robin), so a chatty job cannot starve a quiet one.

    Args:
        subscriptions: the open subscriptions, at most one per job.

    Raises:
        ValueError: two subscriptions follow the same job.

    Attributes:
        subscriptions: the subscriptions, in the order given.
    """

    def __init__(self, subscriptions: Sequence[Subscription]) -> None:
        job_ids = [s.job_id for s in subscriptions]
        if len(set(job_ids)) != len(job_ids):
            raise ValueError(f"one subscription per job, got {job_ids!r}")
        self.subscriptions = tuple(subscriptions)
        self._lot = trio.lowlevel.ParkingLot()
        for subscription in self.subscriptions:
            # One parking lot for all: an offer to any of them wakes the one waiter here.
            subscription._lot = self._lot
        self._next = 0

    @property
    def ended(self) -> bool:
        """True once the terminal snapshot of every job has been received (or all closed)."""
        return all(s._ended or s._closed for s in self.subscriptions)

    def receive_nowait(self) -> JobSnapshot:
        """Take the next pending snapshot of any job without waiting.

        Raises:
            trio.WouldBlock: no job has a snapshot not yet received.
            trio.EndOfChannel: every job's terminal snapshot was received already.
            JobGoneError: one of the jobs left the store (once for that job; its ``job_id``
                says which).
        """
        subscriptions = self.subscriptions
        count = len(subscriptions)
        start = self._next
        for step in range(count):
            index = (start + step) % count
            subscription = subscriptions[index]
            if subscription.has_news:
                self._next = index + 1
                return subscription.receive_nowait()
        if self.ended:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def receive(self) -> JobSnapshot:
        """Wait for the next snapshot of any of the jobs and return it.

        Raises:
            trio.EndOfChannel: every job's terminal snapshot was received already.
            JobGoneError: one of the jobs left the store (once for that job).
        """
        return await self._wait_and_receive()
