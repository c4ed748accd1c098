"""What to install when an optional part of progress-sync is missing: one message for every extra.

The core (``pip install progress-sync``) needs trio, pydantic and tqdm; the rest comes with the
extras that ``pyproject.toml`` declares (README, "Installing into your own project"). Code that
imports an extra's library does it inside ``needs_extra``, so a missing one says which extra
brings it instead of a bare ``No module named ...``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class MissingExtraError(ImportError):
    """A part of progress-sync was used whose extra is not installed.

    The message names the part, the missing module and the command that installs it, e.g.
    ``the Redis store needs the 'redis' extra (No module named 'coredis'): pip install
    'progress-sync[redis]'``.
    """


@contextmanager
def needs_extra(extra: str, what: str) -> Iterator[None]:
    """Run the block (which imports ``extra``'s libraries) and explain a missing one.

    Args:
        extra: the extra's name in ``pyproject.toml`` (``client``, ``redis``, ``server``, ...).
        what: the part that needs it, for the message ("the Redis store").

    Raises:
        MissingExtraError: the block raised ``ModuleNotFoundError`` for a module outside
            progress-sync (a missing module of our own is a bug and is raised as it is).
    """
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] == "progress_sync":
            raise
        raise MissingExtraError(
            f"{what} needs the {extra!r} extra ({exc}): pip install 'progress-sync[{extra}]'",
            name=exc.name,
        ) from exc
