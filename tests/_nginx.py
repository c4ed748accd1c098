"""A private nginx in front of a test server: its own config in a temporary folder.

Debian's nginx (``apt-get install -y nginx``), started in the foreground (``daemon off``, one
process), on an ephemeral loopback port, with its pid file, error log and temporary files in the
test's folder. Two configurations: ``DEFAULT`` (what most people write first: ``proxy_pass`` and
nothing else, so nginx talks HTTP/1.0 to the server and buffers), and ``README``, the one the
README's "Behind a reverse proxy" section recommends, read from the README itself so the two
cannot drift.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _external import missing

README = Path(__file__).resolve().parent.parent / "README.md"
START_TIMEOUT = 10.0
"""Seconds nginx gets to start listening."""

DEFAULT = "location / {{ proxy_pass http://{upstream}; }}"
"""The configuration most people write first: no SSE-specific line at all."""


def readme_config() -> str:
    """The ``nginx`` block of the README's "Behind a reverse proxy" section."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Behind a reverse proxy") :]
    return re.search(r"```nginx\n(.*?)```", section, re.DOTALL).group(1)  # type: ignore[union-attr]


def nginx_binary() -> str:
    """The nginx executable; skips (or fails when required) if there is none."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if found is None:
        missing("nginx", "apt-get update && apt-get install -y nginx")
    return found  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def full_config(kind: str, upstream: str, port: int, folder: Path) -> str:
    """A complete nginx.conf: ``kind`` is ``default`` or ``readme``."""
    if kind == "default":
        server_block = f"server {{ listen 127.0.0.1:{port}; {DEFAULT.format(upstream=upstream)} }}"
    else:
        server_block = (
            readme_config()
            .replace("127.0.0.1:8000", upstream)
            .replace("listen 80;", f"listen 127.0.0.1:{port};")
        )
    temp = {name: folder / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for path in temp.values():
        path.mkdir(exist_ok=True)
    return f"""
daemon off;
master_process off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {temp["body"]};
    proxy_temp_path {temp["proxy"]};
    fastcgi_temp_path {temp["fastcgi"]};
    uwsgi_temp_path {temp["uwsgi"]};
    scgi_temp_path {temp["scgi"]};
    {server_block}
}}
"""


@contextmanager
def run_nginx(kind: str, upstream_url: str, folder: Path) -> Iterator[str]:
    """Run nginx (``kind``: ``default`` or ``readme``) in front of ``upstream_url``.

    Yields nginx's base URL (``http://127.0.0.1:PORT``); stops it on exit.

    Raises:
        RuntimeError: nginx exited or did not listen within ``START_TIMEOUT`` seconds (its
            error log is in the message).
    """
    binary = nginx_binary()
    upstream = upstream_url.removeprefix("http://")
    port = free_port()
    config = folder / "nginx.conf"
    config.write_text(full_config(kind, upstream, port, folder), encoding="utf-8")
    process = subprocess.Popen(
        [binary, "-p", str(folder), "-c", str(config), "-e", str(folder / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (folder / "error.log").read_text(errors="replace")
                    if (folder / "error.log").exists()
                    else ""
                )
                raise RuntimeError(
                    f"nginx did not start: {process.stderr.read().decode(errors='replace')}"  # type: ignore[union-attr]
                    f"{log}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()
