"""Job states and the mapping of external status names onto them."""

from __future__ import annotations

import enum
import re

from ._errors import UnknownStatusError


class JobStatus(enum.StrEnum):
    """The state of a job. ``completed``, ``failed`` and ``cancelled`` are terminal."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        """True for ``completed``, ``failed`` and ``cancelled``: nothing changes the job after."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)

# External names seen in job systems (Celery, RQ, Kubernetes, .NET enums, GitHub Actions...),
# normalised to lower case without separators.
_ALIASES: dict[str, JobStatus] = {
    **{
        name: JobStatus.QUEUED
        for name in (
            "queued",
            "pending",
            "waiting",
            "scheduled",
            "created",
            "new",
            "submitted",
            "received",
        )
    },
    **{
        name: JobStatus.RUNNING
        for name in (
            "running",
            "inprogress",
            "started",
            "active",
            "processing",
            "executing",
            "retrying",
            "retry",
        )
    },
    **{
        name: JobStatus.COMPLETED
        for name in (
            "completed",
            "complete",
            "succeeded",
            "success",
            "successful",
            "done",
            "finished",
            "ok",
        )
    },
    **{
        name: JobStatus.FAILED
        for name in ("failed", "failure", "error", "errored", "faulted", "crashed", "aborted")
    },
    **{
        name: JobStatus.CANCELLED
        for name in (
            "cancelled",
            "canceled",
            "cancel",
            "revoked",
            "stopped",
            "killed",
            "terminated",
        )
    },
}

_SEPARATORS = re.compile(r"[\s_\-]+")


def parse_status(name: str | JobStatus) -> JobStatus:
    """Map an external status name to a ``JobStatus``.

    The name is matched in any case, with spaces, ``_`` and ``-`` ignored, so ``Pending``,
    ``IN_PROGRESS``, ``in-progress``, ``Succeeded``, ``Done``, ``Error`` and ``Canceled`` all map.

    Args:
        name: the external status name (str) or a ``JobStatus``.

    Returns:
        The matching ``JobStatus``.

    Raises:
        UnknownStatusError: the name matches no state; the message lists the accepted states.
    """
    if isinstance(name, JobStatus):
        return name
    if not isinstance(name, str):
        raise UnknownStatusError(f"status must be a string, not {type(name).__name__}")
    key = _SEPARATORS.sub("", name).lower()
    try:
        return _ALIASES[key]
    except KeyError:
        accepted = ", ".join(s.value for s in JobStatus)
        raise UnknownStatusError(
            f"unknown status {name!r}; use one of {accepted} (or a common alias such as "
            "Pending, InProgress, Succeeded, Error, Canceled)"
        ) from None
