"""``python -m progress_sync`` is the ``progress-sync`` command.

The program's entry point, not part of the core library: the one place under ``pipeline/`` that
reaches the server (which needs the ``server`` extra), and only when run as a program.
"""

from progress_sync.server._cli import main

if __name__ == "__main__":
    main(prog_name="progress-sync")
