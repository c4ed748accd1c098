"""Job snapshots, progress updates and the validation rules they share."""

from __future__ import annotations

import functools
import json
import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from ._errors import InvalidUpdateError
from ._status import JobStatus

MAX_STAGE_LENGTH = 200
"""Longest ``stage`` accepted, in characters."""

MAX_MESSAGE_LENGTH = 2000
"""Longest ``message`` or ``error`` accepted, in characters."""


JOB_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
"""A job id: 1 to 128 characters of letters, digits, ``.``, ``_``, ``:`` and ``-``, starting
with a letter or digit, so it is safe in URLs, Redis keys and SSE fields."""


def check_job_id(job_id: object) -> str:
    """Check a job id against ``JOB_ID_PATTERN``.

    Raises:
        InvalidUpdateError: naming ``jobId`` when it does not match.
    """
    if type(job_id) is not str or JOB_ID_PATTERN.fullmatch(job_id) is None:
        raise InvalidUpdateError(
            "jobId",
            "must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter or digit",
        )
    return job_id


class ProgressUpdate(NamedTuple):
    """One progress report for one job, as it travels from producer to store.

    Attributes:
        job_id: the job's id.
        percent: progress in percent, a finite number from 0 to 100.
        stage: a short name of what the job is doing (at most ``MAX_STAGE_LENGTH`` characters).
        message: optional free text (at most ``MAX_MESSAGE_LENGTH`` characters).
        reported_at: when the producer reported it, in seconds since the Unix epoch
            (``wall_clock()``). The store ignores an update older than the one it holds, and
            report-to-client latency is measured from it.
        eta_seconds: the producer's own estimate of the seconds left, or None; it wins over
            the store's (see ``_rate``).
        reset: the job starts over (a new attempt): percent may go down, the snapshot's
            ``attempt`` grows by one and the rate is rebuilt. Without it a lower percent is
            not published (the higher one is kept; see ``ExportStore``).
    """

    job_id: str
    percent: float
    stage: str
    message: str | None
    reported_at: float
    eta_seconds: float | None = None
    reset: bool = False


_WALL_CLOCK_OFFSET = time.time() - time.monotonic()


def wall_clock() -> float:
    """Seconds since the Unix epoch, from a clock that never goes backwards in this process.

    ``time.time()`` at import plus the ``time.monotonic()`` seconds since: it tracks the wall
    clock (both are slewed by NTP) but ignores steps of it, so a report made after another in
    this process always carries a later ``reported_at`` and is never taken for a stale one.
    """
    return _WALL_CLOCK_OFFSET + time.monotonic()


PERCENT_DECIMALS = 2
"""Percent is kept to this many decimals (0.01): rounded where it enters (``check_progress``)
and where a store applies it, so no snapshot, event or page shows float noise such as
``13.469999999999999``."""


def round_percent(percent: float) -> float:
    """``percent`` rounded to ``PERCENT_DECIMALS`` decimals (``round``, half to even)."""
    return round(percent, PERCENT_DECIMALS)


def check_eta_seconds(value: object) -> float | None:
    """Check a producer's ``etaSeconds``: None, or a finite number of seconds >= 0.

    Returns:
        ``value`` as a float rounded to 0.1 s, or None.

    Raises:
        InvalidUpdateError: naming ``etaSeconds`` when it is not such a number.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidUpdateError(
            "etaSeconds", f"must be a number of seconds or null, not {type(value).__name__}"
        )
    if not 0.0 <= value < 1e9:
        raise InvalidUpdateError(
            "etaSeconds", f"must be a finite number of seconds >= 0, not {value!r}"
        )
    return round(float(value), 1)


def check_progress(percent: object, stage: object, message: object) -> float:
    """Validate the fields of a progress report.

    Args:
        percent: must be an int or float, finite, from 0 to 100 (bool is refused).
        stage: must be a str of at most ``MAX_STAGE_LENGTH`` characters.
        message: must be None or a str of at most ``MAX_MESSAGE_LENGTH`` characters.

    Returns:
        ``percent`` as a float rounded to ``PERCENT_DECIMALS`` decimals.

    Raises:
        InvalidUpdateError: naming the field and the reason.
    """
    if type(percent) is not float:
        if isinstance(percent, bool) or not isinstance(percent, int | float):
            raise InvalidUpdateError(
                "percent", f"must be a number from 0 to 100, not {type(percent).__name__}"
            )
        percent = float(percent)
    # NaN fails both comparisons, so this one test also refuses NaN and the infinities.
    if not 0.0 <= percent <= 100.0:
        raise InvalidUpdateError(
            "percent", f"must be a finite number from 0 to 100, not {percent!r}"
        )
    if type(stage) is not str:
        raise InvalidUpdateError("stage", f"must be a string, not {type(stage).__name__}")
    if len(stage) > MAX_STAGE_LENGTH:
        raise InvalidUpdateError("stage", f"must be at most {MAX_STAGE_LENGTH} characters")
    if not stage.isascii():
        check_unicode("stage", stage)
    if message is not None:
        check_text("message", message)
    return round(percent, PERCENT_DECIMALS)


def check_reported_at(reported_at: object) -> float:
    """Check a producer's timestamp: seconds since the Unix epoch, finite and not negative.

    Args:
        reported_at: an int or float (bool is refused).

    Returns:
        ``reported_at`` as a float.

    Raises:
        InvalidUpdateError: naming ``reportedAt`` when it is not such a number.
    """
    if isinstance(reported_at, bool) or not isinstance(reported_at, int | float):
        raise InvalidUpdateError(
            "reportedAt",
            f"must be seconds since the Unix epoch (a number), not {type(reported_at).__name__}",
        )
    reported_at = float(reported_at)
    if not 0.0 <= reported_at < math.inf:
        raise InvalidUpdateError(
            "reportedAt", f"must be a finite number of seconds >= 0, not {reported_at!r}"
        )
    return reported_at


def check_text(field: str, value: object) -> str:
    """Check that ``value`` is a str of at most ``MAX_MESSAGE_LENGTH`` characters.

    Raises:
        InvalidUpdateError: naming ``field`` when it is not.
    """
    if type(value) is not str:
        raise InvalidUpdateError(field, f"must be a string, not {type(value).__name__}")
    if len(value) > MAX_MESSAGE_LENGTH:
        raise InvalidUpdateError(field, f"must be at most {MAX_MESSAGE_LENGTH} characters")
    if not value.isascii():
        check_unicode(field, value)
    return value


def check_unicode(field: str, value: str) -> None:
    """Check that ``value`` can be encoded as UTF-8: JSON allows lone surrogates (``"\\ud800"``),
    but no byte stream, Redis or HTTP body, can carry them.

    Raises:
        InvalidUpdateError: naming ``field`` when ``value`` holds a lone surrogate.
    """
    try:
        value.encode()
    except UnicodeEncodeError:
        raise InvalidUpdateError(
            field, "must be valid Unicode text (it holds a lone surrogate such as \\ud800)"
        ) from None


def check_kind(kind: object) -> None:
    """Check a job kind: None or a str of 1 to 64 characters.

    Raises:
        InvalidUpdateError: naming ``kind`` when it is not.
    """
    if kind is not None and (type(kind) is not str or not 1 <= len(kind) <= 64):
        raise InvalidUpdateError("kind", "must be None or a string of 1 to 64 characters")
    if kind is not None and not kind.isascii():
        check_unicode("kind", kind)


def check_json(field: str, value: object) -> None:
    """Check that ``value`` can be encoded as JSON (finite numbers only).

    Raises:
        InvalidUpdateError: naming ``field`` when it cannot.
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidUpdateError(field, f"must be JSON-encodable: {exc}") from exc


MAX_HEARTBEAT_TIMEOUT = 86400.0
"""The longest lease (``heartbeatTimeoutS``) accepted, in seconds (one day)."""


def check_heartbeat_timeout(value: object) -> float | None:
    """Check a job's lease: None (no lease) or seconds, more than 0 and at most one day.

    Returns:
        ``value`` as a float rounded to milliseconds, or None.

    Raises:
        InvalidUpdateError: naming ``heartbeatTimeoutS`` when it is not such a number.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidUpdateError(
            "heartbeatTimeoutS", f"must be a number of seconds, not {type(value).__name__}"
        )
    if not 0.001 <= value <= MAX_HEARTBEAT_TIMEOUT:
        raise InvalidUpdateError(
            "heartbeatTimeoutS",
            f"must be from 0.001 to {MAX_HEARTBEAT_TIMEOUT:g} seconds, not {value!r}",
        )
    return round(float(value), 3)


def format_seconds(seconds: float) -> str:
    """``seconds`` as short text to the millisecond (``30``, ``2.5``): how a lease is written in
    Redis and in ``LEASE_EXPIRED_ERROR``."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


LEASE_EXPIRED_ERROR = (
    "no progress report or heartbeat for {timeout} s (its heartbeatTimeoutS): the lease "
    "expired and the producer is presumed dead"
)
"""The ``error`` of a job whose lease expired; ``{timeout}`` is ``format_seconds(lease)``."""


def isoformat(epoch_s: float) -> str:
    """Format seconds since the Unix epoch as ISO-8601 UTC with milliseconds (``...Z``)."""
    stamp = datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


@dataclass(frozen=True, kw_only=True)
class JobSnapshot:
    """The state of one job at one version, as the store holds it and subscribers see it.

    Attributes:
        job_id: the job's id.
        status: the job's state.
        percent: progress in percent, 0 to 100.
        stage: what the job is doing now.
        message: optional free text from the producer.
        seq: the job's version, 1 at registration and strictly increasing with every change;
            it is the SSE ``id`` of the event that carries this snapshot.
        created_at: when the job was registered, seconds since the Unix epoch.
        updated_at: when the store applied the latest change, seconds since the Unix epoch.
        reported_at: when the producer reported the latest applied update (or the store
            registered or finished the job), seconds since the Unix epoch.
        kind: the job kind the runner runs, or None for an external job.
        error: the error message of a failed job, or the reason a cancelled job was
            cancelled (if one was given), else None.
        result: the JSON-able result of a completed job, else None.
        rate: the job's smoothed speed in percent per second while it runs (see ``_rate`` for
            the algorithm), None before the first sample and in terminal states.
        eta_seconds: seconds left until 100% at that rate (or the producer's own estimate),
            None until there is enough history, while the job is not advancing, and in
            terminal states.
        attempt: 1, plus one per ``reset`` report: a percent lower than the previous one is
            only published with a higher attempt.
        heartbeat_timeout: the job's lease, in seconds: a queued or running job that gets no
            progress and no heartbeat for this long is ended ``failed`` by the store's lease
            reaper (see ``ExportStore.expire_leases``); None for a job without a lease.
    """

    job_id: str
    status: JobStatus
    percent: float
    stage: str
    message: str | None
    seq: int
    created_at: float
    updated_at: float
    reported_at: float
    kind: str | None = None
    error: str | None = None
    result: Any = None
    heartbeat_timeout: float | None = None
    rate: float | None = None
    eta_seconds: float | None = None
    attempt: int = 1

    def to_dict(self) -> dict[str, Any]:
        """The snapshot as the JSON object clients see: camelCase keys, ISO-8601 UTC times.

        Keys: ``jobId``, ``status``, ``percent``, ``stage``, ``message``, ``seq``, ``createdAt``,
        ``updatedAt``, ``reportedAt`` (float seconds since the epoch, for latency), ``kind``,
        ``error``, ``result``, ``heartbeatTimeoutS`` (the lease in seconds, or null), ``rate``
        (percent per second, or null), ``etaSeconds`` (or null), ``attempt``.
        """
        return {
            "jobId": self.job_id,
            "status": self.status.value,
            "percent": self.percent,
            "stage": self.stage,
            "message": self.message,
            "seq": self.seq,
            "createdAt": isoformat(self.created_at),
            "updatedAt": isoformat(self.updated_at),
            "reportedAt": self.reported_at,
            "kind": self.kind,
            "error": self.error,
            "result": self.result,
            "heartbeatTimeoutS": self.heartbeat_timeout,
            "rate": self.rate,
            "etaSeconds": self.eta_seconds,
            "attempt": self.attempt,
        }

    @functools.cached_property
    def json_text(self) -> str:
        """``to_dict()`` as one line of compact JSON, encoded once and cached.

        One snapshot goes to every subscriber of its job, so it is encoded once, not once each.
        """
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)

    @property
    def is_terminal(self) -> bool:
        """True when the job is ``completed``, ``failed`` or ``cancelled``."""
        return self.status.is_terminal
