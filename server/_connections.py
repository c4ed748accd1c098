"""Open connections: how many at most, every drop counted once, and the file descriptors they need.

Hypercorn has no connection limit, and a connection the kernel aborts (``TCP_USER_TIMEOUT``:
the client took no data for ``send_timeout`` seconds) is seen only by Hypercorn's socket write,
which swallows the error. So the server accepts through ``LimitedListener``: it stops accepting
while ``max_connections`` are open (new ones wait in the kernel's listen backlog, then are
refused by it), and hands Hypercorn each connection wrapped in a stream that notices the
kernel's abort (``ETIMEDOUT``) and counts it in ``progress_sync_clients_dropped_total``.
"""

from __future__ import annotations

import errno
import logging
import resource
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from ._metrics import Metrics

logger = logging.getLogger(__name__)

FD_RESERVE = 256
"""File descriptors kept beyond one per connection: listening sockets, Redis connections, the
store's and the log's files, the trio wakeup pipe, worker pipes."""


def raise_fd_limit(connections: int) -> int:
    """Raise this process's soft ``RLIMIT_NOFILE`` to hold ``connections`` open connections.

    Each connection is one file descriptor; ``FD_RESERVE`` more are kept for everything else.
    The soft limit is raised up to the hard limit (an unprivileged process may do that); it is
    never lowered.

    Args:
        connections: the most connections the server holds open (``max_connections``).

    Returns:
        The soft limit now in force.

    Raises:
        OSError: the hard limit is too low for ``connections`` (the message says what to
            raise), or the soft limit could not be set.
    """
    needed = connections + FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise OSError(
            errno.EMFILE,
            f"{connections} connections (--max-connections, by default --max-subscribers + "
            f"1024) need {needed} file descriptors, but this process may open at most {hard} "
            "(the hard RLIMIT_NOFILE); raise it (systemd: LimitNOFILE=; a shell: ulimit -Hn, "
            "as root; Docker: --ulimit nofile=...) or lower --max-subscribers / "
            "--max-connections",
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    logger.info("raised the soft file-descriptor limit from %d to %d", soft, needed)
    return needed


class LimitedListener(trio.abc.Listener[trio.abc.HalfCloseableStream]):
    """A listener that holds at most ``limit`` accepted connections open at once.

    Args:
        listener: the socket listener to accept from.
        limiter: shared by the server's listeners; one token per open connection.
        metrics: where connections are counted and kernel aborts counted as drops.
    """

    def __init__(
        self, listener: trio.SocketListener, limiter: trio.CapacityLimiter, metrics: Metrics
    ) -> None:
        self.listener = listener
        self.limiter = limiter
        self.metrics = metrics
        self._warned_full = False

    async def accept(self) -> trio.abc.HalfCloseableStream:
        token = object()
        if self.limiter.available_tokens == 0 and not self._warned_full:
            self._warned_full = True
            logger.warning(
                "%d connections open (--max-connections): new ones wait in the listen backlog",
                self.limiter.total_tokens,
            )
        await self.limiter.acquire_on_behalf_of(token)
        if self.limiter.available_tokens > 0:
            self._warned_full = False
        try:
            stream = await self.listener.accept()
        except BaseException:
            self.limiter.release_on_behalf_of(token)
            raise
        return CountedStream(stream, self.limiter, token, self.metrics)

    async def aclose(self) -> None:
        await self.listener.aclose()


class CountedStream(trio.abc.HalfCloseableStream):
    """An accepted connection as Hypercorn's ``TCPServer`` uses it (a ``trio.SocketStream``).

    Gives its limiter token back once when closed, and counts a kernel abort
    (``ETIMEDOUT`` from ``TCP_USER_TIMEOUT``) as a dropped client.

    Attributes:
        socket: the connection's trio socket (Hypercorn reads the peer's address from it).
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        limiter: trio.CapacityLimiter,
        token: object,
        metrics: Metrics,
    ) -> None:
        self._stream = stream
        self.socket = stream.socket
        self._limiter = limiter
        self._token: object | None = token
        self._metrics = metrics
        try:
            host, port = stream.socket.getpeername()[:2]
            self._peer: tuple[str, int] | None = (str(host), int(port))
        except OSError:
            self._peer = None
        metrics.connection_opened(self._peer)

    def _check_abort(self, exc: trio.BrokenResourceError) -> None:
        cause = exc.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.ETIMEDOUT:
            self._metrics.client_dropped(self._peer, "tcp_user_timeout")

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self._stream.send_all(data)
        except trio.BrokenResourceError as exc:
            self._check_abort(exc)
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        try:
            return await self._stream.receive_some(max_bytes)
        except trio.BrokenResourceError as exc:
            self._check_abort(exc)
            raise

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._token is not None:
                self._limiter.release_on_behalf_of(self._token)
                self._token = None
                self._metrics.connection_closed(self._peer)
