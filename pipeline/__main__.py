"""``python -m progress_sync`` and the ``progress-sync`` command.

The program's entry point, not part of the core library: the one place under ``pipeline/`` that
reaches the server's command line, and only when run as a program. The command needs the
``client`` extra (``run``) or the ``server`` extra (``serve``, ``demo``); without them it says
which to install instead of a traceback.
"""

from __future__ import annotations

import sys

from progress_sync._extras import MissingExtraError, needs_extra


def main() -> None:
    """Run the ``progress-sync`` command line (``progress_sync.server._cli``)."""
    try:
        with needs_extra("client", "the progress-sync command"):
            from progress_sync.server._cli import main as command
    except MissingExtraError as exc:
        sys.exit(f"Error: {exc}")
    command(prog_name="progress-sync")


if __name__ == "__main__":
    main()
