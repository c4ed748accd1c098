"""What only the in-memory store has: retention settings and waiters that leave nothing behind.
The rules every store keeps are in ``test_store_contract.py``."""

from __future__ import annotations

import pytest
import trio
from progress_sync import MemoryStore, RegistrationTimeoutError


async def test_wait_registered_times_out_and_leaves_nothing_behind(autojump_clock):
    store = MemoryStore()
    start = trio.current_time()
    with pytest.raises(
        RegistrationTimeoutError, match="job 'ghost' was not registered within 20 s"
    ):
        await store.wait_registered("ghost", timeout=20)
    assert trio.current_time() - start == pytest.approx(20)
    assert store._registration_waiters == {}


async def test_a_closed_subscription_refuses_to_receive():
    store = MemoryStore()
    await store.register("a")
    async with store.subscribe("a") as subscription:
        pass
    with pytest.raises(trio.ClosedResourceError, match="the subscription was closed"):
        await subscription.receive()


@pytest.mark.parametrize("retention", [-1, float("inf"), float("nan"), "1h"])
def test_retention_must_be_a_finite_number_of_seconds(retention):
    with pytest.raises(ValueError, match="retention must be a finite number of seconds >= 0"):
        MemoryStore(retention=retention)
