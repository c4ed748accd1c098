"""The producer's persistent connection, ``GET /api/progress/ws``: a WebSocket per client.

Each batch is one text frame (a JSON array of updates, as ``POST /api/progress`` takes) and
the server answers each with one frame: the batch's outcome, or an error body with its
``status``. The clients (``_sync``, ``_async``) use it by default (``path="auto"``) and fall
back to ``POST /api/progress`` for good when the WebSocket cannot be opened because something
between them and the server does not speak it (a proxy without upgrade support answers the
handshake with an ordinary HTTP status); they log which path they use, and
``ClientStatistics.path`` says it.

A connection that breaks (a server restart closes it with 1012, or the network drops) fails
the batch in flight: its reports are kept (the latest per job, as for a failed ``POST``) and
the next flush opens a new connection, after a backoff that doubles from
``RECONNECT_FIRST_DELAY`` to ``RECONNECT_MAX_DELAY`` seconds while attempts fail.

Libraries: ``websockets``' sync client (https://websockets.readthedocs.io/en/stable/reference/sync/client.html)
for ``ProgressClient``, its trio client (``websockets.trio.client``) for the trio client;
imported only when a WebSocket is opened.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .._errors import ServerUnavailableError
from ._common import logger, raise_for_error

if TYPE_CHECKING:
    import trio

ProducerPath = Literal["auto", "websocket", "http"]
"""How a client sends its batches: ``websocket`` (``GET /api/progress/ws``), ``http``
(``POST /api/progress``), or ``auto``: the WebSocket, falling back to ``POST`` when it cannot
be opened."""

PRODUCER_PATHS: tuple[str, ...] = ("auto", "websocket", "http")

SOCKET_PATH = "/api/progress/ws"
"""Where the persistent producer connection is opened."""

RECONNECT_FIRST_DELAY = 0.5
"""Seconds before the first new attempt after a connection failed."""

RECONNECT_MAX_DELAY = 30.0
"""The longest wait between two attempts, seconds."""

_TRY_AGAIN = frozenset({429, 502, 503, 504})


def check_path(path: str) -> str:
    """Return ``path``.

    Raises:
        ValueError: it is not one of ``PRODUCER_PATHS``.
    """
    if path not in PRODUCER_PATHS:
        raise ValueError(f"path must be one of {', '.join(PRODUCER_PATHS)}, not {path!r}")
    return path


def socket_url(base_url: str) -> str:
    """``ws://host:port/prefix/api/progress/ws`` for ``http://host:port/prefix``."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        return "wss://" + base.removeprefix("https://") + SOCKET_PATH
    return "ws://" + base.removeprefix("http://") + SOCKET_PATH


class Backoff:
    """When the next connection attempt may be made: exponential, with jitter.

    Args:
        clock: seconds, monotonic (``time.monotonic``, or ``trio.current_time`` in trio).
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.failures = 0
        self._next_attempt = -float("inf")

    def wait(self) -> float:
        """Seconds until an attempt may be made (0: now)."""
        return max(0.0, self._next_attempt - self._clock())

    def failed(self) -> None:
        """An attempt (or the connection) failed: wait longer before the next one."""
        self.failures += 1
        delay = min(RECONNECT_MAX_DELAY, RECONNECT_FIRST_DELAY * 2 ** (self.failures - 1))
        self._next_attempt = self._clock() + delay * random.uniform(0.8, 1.2)

    def succeeded(self) -> None:
        """A connection was opened: the next failure starts from the first delay again."""
        self.failures = 0
        self._next_attempt = -float("inf")


def read_answer(text: str | bytes) -> dict[str, Any]:
    """The server's answer to one frame.

    Raises:
        ServerRejectedError (or a subclass): the frame was refused as a whole (its
            ``status`` says how, as the HTTP answer would).
        ServerUnavailableError: the server said to try again (503: store unavailable).
    """
    answer = json.loads(text)
    if not isinstance(answer, dict) or "accepted" not in answer:
        body = answer if isinstance(answer, dict) else {}
        raise_for_error(int(body.get("status", 500)), body, "error", str(text)[:500])
    return answer


class SocketPath:
    """What both clients' sockets share: the path in use, reconnects, the fallback.

    Attributes:
        path: ``websocket`` or ``http``: the path the next batch takes.
        connects: connections opened.
        backoff: when the next attempt may be made.
    """

    def __init__(self, base_url: str, token: str | None, path: str, clock: Callable[[], float]):
        self.url = socket_url(base_url)
        self.token = token
        self.path = "http" if path == "http" else "websocket"
        self._may_fall_back = path == "auto"
        self.connects = 0
        self.backoff = Backoff(clock)
        if self.path == "http":
            logger.info("progress client: sending batches with POST /api/progress")

    @property
    def reconnects(self) -> int:
        """Connections opened after the first."""
        return max(0, self.connects - 1)

    def opened(self) -> None:
        self.backoff.succeeded()
        self.connects += 1
        logger.info(
            "progress client: %s %s",
            "connected to" if self.connects == 1 else "reconnected to",
            self.url,
        )

    def unavailable(self, what: str) -> ServerUnavailableError:
        """The connection could not be opened or broke: back off, keep the reports."""
        self.backoff.failed()
        return ServerUnavailableError(
            f"the progress connection {self.url} {what}; reconnecting in at most "
            f"{self.backoff.wait():.1f} s"
        )

    def refused(self, status: int, body: Any, reason: str) -> None:
        """The handshake got an HTTP answer instead of an upgrade.

        Raises:
            AuthenticationError: 401 or 403 (the token).
            ServerUnavailableError: 429, 502, 503 or 504 (retried after a backoff).
            ServerRejectedError: any other status when the client may not fall back.
        """
        if status in (401, 403):
            raise_for_error(status, body if isinstance(body, dict) else {}, reason, "")
        if status in _TRY_AGAIN:
            raise self.unavailable(f"answered {status}")
        if not self._may_fall_back:
            raise_for_error(status, body if isinstance(body, dict) else {}, reason, "")
        self.fall_back(f"the WebSocket handshake got HTTP {status}")

    def fall_back(self, why: str) -> None:
        """Send every later batch with ``POST /api/progress``."""
        self.path = "http"
        logger.warning(
            "progress client: %s (a proxy without WebSocket support?); sending batches with "
            "POST /api/progress from now on",
            why,
        )

    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"Authorization": f"Bearer {self.token}"}


def _json_body(data: bytes | bytearray | None) -> Any:
    try:
        return json.loads(data or b"")
    except ValueError:
        return {}


class SyncSocket(SocketPath):
    """The persistent connection of the sync client (``websockets``' sync client)."""

    def __init__(self, base_url: str, token: str | None, path: str, timeout: float) -> None:
        super().__init__(base_url, token, path, time.monotonic)
        self.timeout = timeout
        self._connection: Any = None
        self._stack = contextlib.ExitStack()

    def send_batch(self, batch: list[dict[str, Any]]) -> dict[str, Any] | None:
        """Send one batch and return the server's answer; None when the client uses (or
        has just fallen back to) ``POST``.

        Raises:
            ServerUnavailableError: no connection now (the batch should be kept).
            AuthenticationError, ServerRejectedError: as ``raise_for_answer``.
        """
        if self.path == "http":
            return None
        from websockets.exceptions import ConnectionClosed

        if self._connection is None and not self._open():
            return None
        try:
            self._connection.send(json.dumps(batch, separators=(",", ":")))
            text = self._connection.recv(timeout=self.timeout)
        except (ConnectionClosed, OSError, TimeoutError) as exc:
            self.close()
            raise self.unavailable(f"broke ({type(exc).__name__}: {exc})") from None
        return read_answer(text)

    def _open(self) -> bool:
        from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus
        from websockets.sync.client import connect

        wait = self.backoff.wait()
        if wait > 0:
            raise ServerUnavailableError(f"reconnecting to {self.url} in {wait:.1f} s")
        stack = contextlib.ExitStack()
        try:
            # Entered as a context manager (what websockets asks for); left by ``close``.
            self._connection = stack.enter_context(
                connect(
                    self.url,
                    additional_headers=self.headers(),
                    open_timeout=self.timeout,
                    compression=None,
                    proxy=None,
                    max_size=None,
                )
            )
        except InvalidStatus as exc:
            response = exc.response
            self.refused(response.status_code, _json_body(response.body), response.reason_phrase)
            return False
        except InvalidMessage as exc:  # the connection closed during the handshake
            raise self.unavailable(f"could not be opened ({exc})") from None
        except InvalidHandshake as exc:
            if self._may_fall_back:
                self.fall_back(f"the WebSocket handshake failed ({exc})")
                return False
            raise self.unavailable(f"could not be opened ({exc})") from None
        except (OSError, TimeoutError) as exc:
            raise self.unavailable(f"could not be opened ({type(exc).__name__}: {exc})") from None
        self._stack = stack
        self.opened()
        return True

    def close(self) -> None:
        """Close the connection, if open."""
        self._connection = None
        stack, self._stack = self._stack, contextlib.ExitStack()
        with contextlib.suppress(Exception):
            stack.close()


class TrioSocket(SocketPath):
    """The persistent connection of the trio client (``websockets.trio``).

    The connection is held by a task of its own in ``nursery`` (``async with connect(...)``),
    which closes it when told to (``aclose``) or when the nursery is cancelled.

    Args:
        nursery: where the connection's task runs (the client's own).
    """

    def __init__(
        self, base_url: str, token: str | None, path: str, timeout: float, nursery: trio.Nursery
    ) -> None:
        import trio

        super().__init__(base_url, token, path, trio.current_time)
        self.timeout = timeout
        self._nursery = nursery
        self._connection: Any = None
        self._release: trio.Event | None = None

    async def send_batch(self, batch: list[dict[str, Any]]) -> dict[str, Any] | None:
        """As ``SyncSocket.send_batch``."""
        if self.path == "http":
            return None
        import trio
        from websockets.exceptions import ConnectionClosed

        if self._connection is None and not await self._open():
            return None
        try:
            with trio.fail_after(self.timeout):
                await self._connection.send(json.dumps(batch, separators=(",", ":")))
                text = await self._connection.recv()
        except (ConnectionClosed, OSError, trio.TooSlowError) as exc:
            await self.aclose()
            raise self.unavailable(f"broke ({type(exc).__name__}: {exc})") from None
        return read_answer(text)

    async def _hold(self, *, task_status: trio.TaskStatus[Any]) -> None:
        import trio
        from websockets.trio.client import connect

        release = trio.Event()
        async with connect(
            self.url,
            additional_headers=self.headers(),
            open_timeout=self.timeout,
            compression=None,
            proxy=None,
            max_size=None,
        ) as connection:
            task_status.started((connection, release))
            await release.wait()

    async def _open(self) -> bool:
        from websockets.exceptions import InvalidHandshake, InvalidMessage, InvalidStatus

        wait = self.backoff.wait()
        if wait > 0:
            raise ServerUnavailableError(f"reconnecting to {self.url} in {wait:.1f} s")
        try:
            self._connection, self._release = await self._nursery.start(self._hold)
        except InvalidStatus as exc:
            response = exc.response
            self.refused(response.status_code, _json_body(response.body), response.reason_phrase)
            return False
        except InvalidMessage as exc:  # the connection closed during the handshake
            raise self.unavailable(f"could not be opened ({exc})") from None
        except InvalidHandshake as exc:
            if self._may_fall_back:
                self.fall_back(f"the WebSocket handshake failed ({exc})")
                return False
            raise self.unavailable(f"could not be opened ({exc})") from None
        except (OSError, TimeoutError) as exc:
            raise self.unavailable(f"could not be opened ({type(exc).__name__}: {exc})") from None
        self.opened()
        return True

    async def aclose(self) -> None:
        """Close the connection, if open (its task leaves ``async with connect``)."""
        release, self._release, self._connection = self._release, None, None
        if release is not None:
            release.set()
