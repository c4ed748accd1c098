"""Open the export store a URL names: the in-memory store or the Redis store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from ._extras import needs_extra
from ._memory_store import DEFAULT_RETENTION, MemoryStore
from ._redis_scripts import DEFAULT_REDIS_PREFIX
from ._store import ExportStore

MEMORY_STORE_URL = "memory"
"""The store URL of the in-memory store (the default)."""

_REDIS_SCHEMES = ("redis", "rediss", "unix")


def is_shared_store(url: str) -> bool:
    """Whether the store ``url`` names is shared between processes (Redis) or not (memory).

    Raises:
        ValueError: ``url`` names no store; the message shows the accepted forms.
    """
    if url in (MEMORY_STORE_URL, "memory://"):
        return False
    if isinstance(url, str) and urlsplit(url).scheme in _REDIS_SCHEMES:
        return True
    raise ValueError(
        f"store must be 'memory' or a Redis URL (redis://host:port/db, rediss://..., "
        f"unix:///path/to/socket), not {url!r}"
    )


@asynccontextmanager
async def open_export_store(
    url: str = MEMORY_STORE_URL,
    *,
    retention: float = DEFAULT_RETENTION,
    prefix: str = DEFAULT_REDIS_PREFIX,
) -> AsyncIterator[ExportStore]:
    """Open the store ``url`` names for the duration of the block.

    Args:
        url: ``memory`` (default: a ``MemoryStore``, for one process) or a Redis URL such as
            ``redis://127.0.0.1:6379/0`` (a ``RedisStore``, shared by every process using it;
            see ``open_redis_store``).
        retention: seconds a job stays after its terminal state (default one hour).
        prefix: the Redis key prefix (Redis only).

    Raises:
        ValueError: ``url`` names no store, or ``retention`` is out of range.
        StoreUnavailableError: Redis could not be reached at ``url``.
    """
    if is_shared_store(url):
        with needs_extra("redis", "the Redis store"):
            from ._redis_store import open_redis_store

        async with open_redis_store(url, prefix=prefix, retention=retention) as store:
            yield store
    else:
        yield MemoryStore(retention=retention)
