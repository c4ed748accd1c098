"""A Celery task that renders something long (the Mandelbrot set, row by row, as a PGM image)
with live progress in the browser, through progress-sync on Redis (README, "Celery and RQ").

    celery -A celery_render worker --pool solo           # in examples/, with the env below
    python celery_render.py 600                          # send a task; prints its job id

Environment: ``PROGRESS_SYNC_STORE`` (the server's ``--store``, e.g.
``redis://127.0.0.1:6379/0``) and ``CELERY_BROKER_URL`` (e.g. ``redis://127.0.0.1:6379/1``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from celery import Celery
from progress_sync.celery import install, report, tqdm

app = Celery(
    "celery_render", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/1")
)
install(app)  # PROGRESS_SYNC_STORE: the worker writes straight to the server's Redis store


@app.task
def render(size: int = 600, iterations: int = 200) -> dict[str, object]:
    """Render the Mandelbrot set, ``size`` x ``size`` pixels, to ``mandelbrot-<id>.pgm``."""
    rows = []
    for y in tqdm(range(size), desc="render", unit="row"):  # reports as rows are done
        row = bytearray()
        for x in range(size):
            c = complex(3.0 * x / size - 2.0, 3.0 * y / size - 1.5)
            z, n = 0j, 0
            while abs(z) <= 2 and n < iterations:
                z, n = z * z + c, n + 1
            row.append(255 - 255 * n // iterations)
        rows.append(bytes(row))
    report(100, "write", "writing the image")
    path = Path(f"mandelbrot-{render.request.id}.pgm")
    path.write_bytes(f"P5 {size} {size} 255\n".encode() + b"".join(rows))
    return {"file": str(path), "size": size}


if __name__ == "__main__":
    result = render.delay(int(sys.argv[1]) if len(sys.argv) > 1 else 600)
    print(result.id)
