"""``python -m server`` is the ``progress-sync`` command."""

from ._cli import main

main(prog_name="progress-sync")
