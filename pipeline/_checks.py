"""The checks of numeric settings, written once: seconds and whole numbers.

Every interval (``flush_interval``, timeouts) and count (capacities, limits) that the buffer,
the thread reporter, the clients and the server's settings take is checked here, so the same
setting has the same range and the same message wherever it is given.
"""

from __future__ import annotations

import math


def check_seconds(
    name: str, value: object, *, minimum: float = 0.0, include_minimum: bool = False
) -> float:
    """Return ``value`` as a float number of seconds.

    Args:
        name: the setting's name, for the message.
        value: what was given.
        minimum: the smallest value allowed (seconds).
        include_minimum: True when ``minimum`` itself is allowed (default: only above it).

    Raises:
        ValueError: ``value`` is no number (a bool is none), not finite, or below the minimum;
            the message names the setting and the range.
    """
    if (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value < math.inf
        and (value >= minimum if include_minimum else value > minimum)
    ):
        return float(value)
    if minimum == 0 and not include_minimum:
        wanted = "a positive number of seconds"
    elif minimum == 0:
        wanted = "a finite number of seconds >= 0"
    else:
        wanted = f"a number of seconds from {minimum} up"
    raise ValueError(f"{name} must be {wanted}, not {value!r}")


def check_whole(name: str, value: object, *, minimum: int, maximum: int | None = None) -> int:
    """Return ``value``, a whole number from ``minimum`` (to ``maximum``).

    Raises:
        ValueError: ``value`` is no int (a bool is none) or out of the range; the message
            names the setting and the range.
    """
    if (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= minimum
        and (maximum is None or value <= maximum)
    ):
        return value
    if maximum is None:
        raise ValueError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    raise ValueError(f"{name} must be from {minimum} to {maximum}, not {value!r}")
