"""``python -m progress_sync.bench``: the same command as ``progress-sync bench``."""

from ._cli import bench_command

if __name__ == "__main__":
    bench_command(prog_name="python -m progress_sync.bench")
