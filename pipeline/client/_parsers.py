"""Finding progress in a command's output: tqdm bars, ``NN%`` and ffmpeg ``-progress`` blocks.

Used by ``progress-sync run``. Each stream (stdout, stderr) is cut into segments at ``\\r``
and ``\\n`` (tqdm redraws its bar after a carriage return); each segment is tried against:

1. ffmpeg's ``-progress pipe:1`` output (https://ffmpeg.org/ffmpeg.html#Advanced-options):
   blocks of ``key=value`` lines ended by ``progress=continue`` or ``progress=end``; the
   percent is ``out_time_us`` against the duration, taken from the command's ``-t`` or from
   the ``Duration:`` line ffmpeg prints for its input.
2. A tqdm bar (https://tqdm.github.io/docs/tqdm/, ``l_bar{bar}r_bar``):
   ``desc:  45%|████▌     | 45/100 [00:01<00:01, 40.0it/s]``.
3. A plain ``NN%`` (or ``NN.N%``) anywhere in a line; the last one counts.

Once a more specific source (ffmpeg, then tqdm) has given progress, the less specific ones
are ignored, so a stray percent in a log line (ffmpeg's "muxing overhead: 4.5%") cannot
move the bar back.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from .._snapshot import MAX_STAGE_LENGTH

MAX_LINE = 65536
"""Characters of an unfinished segment kept; the rest of a longer one is dropped."""

_SEGMENT_END = re.compile(r"[\r\n]")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_TQDM = re.compile(
    r"(?:(?P<desc>[^|]*?):\s)?\s*(?P<pct>\d{1,3})%\|[^|]*\|\s*"
    r"(?P<n>[\d.]+[kMGTPEZY]?)/(?P<total>[\d.]+[kMGTPEZY]?)(?P<rest>.*)$"
)
_PERCENT = re.compile(r"(?<![\w.])(\d{1,3}(?:\.\d+)?)\s?%")
_KEY_VALUE = re.compile(r"^(\w+)=(.*)$")
_DURATION_LINE = re.compile(r"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")
_FFMPEG_KEYS = frozenset(
    {
        "frame",
        "fps",
        "bitrate",
        "total_size",
        "out_time_us",
        "out_time_ms",
        "out_time",
        "dup_frames",
        "drop_frames",
        "speed",
        "progress",
    }
)
_CLOCK_DURATION = re.compile(r"^(-)?(?:(\d+):)?(\d+):(\d+(?:\.\d+)?)$")
_SECONDS_DURATION = re.compile(r"^(-)?(\d+(?:\.\d+)?)(s|ms|us)?$")

_FFMPEG, _TQDM_RANK, _PLAIN = 3, 2, 1


@dataclass(frozen=True)
class ParsedProgress:
    """Progress found in a command's output.

    Attributes:
        percent: progress in percent, 0-100.
        stage: the stage (a tqdm bar's description, ``ffmpeg``, or ``""``).
        message: the text it came from, shortened, or None.
        source: ``ffmpeg``, ``tqdm`` or ``percent``.
    """

    percent: float
    stage: str
    message: str | None
    source: str


def parse_ffmpeg_duration(text: str) -> float | None:
    """Parse an ffmpeg time duration (``-t``), in seconds.

    Accepts ``[-][HH:]MM:SS[.m...]`` and ``[-]S+[.m...][s|ms|us]`` as in ffmpeg-utils(1),
    "Time duration". Returns None for anything else or a negative duration.
    """
    text = text.strip()
    match = _CLOCK_DURATION.match(text)
    if match:
        negative, hours, minutes, seconds = match.groups()
        value = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
        return None if negative else value
    match = _SECONDS_DURATION.match(text)
    if match:
        negative, number, unit = match.groups()
        value = float(number) / {None: 1, "s": 1, "ms": 1e3, "us": 1e6}[unit]
        return None if negative else value
    return None


def ffmpeg_duration_from_args(argv: Sequence[str]) -> float | None:
    """The shortest ``-t`` duration of an ffmpeg command line, in seconds, or None.

    Only arguments after a program whose name starts with ``ffmpeg`` count, so
    ``nice ffmpeg -i in.mp4 -t 5 out.mp4`` gives 5.0.
    """
    start = next(
        (i for i, arg in enumerate(argv) if os.path.basename(arg).startswith("ffmpeg")), None
    )
    if start is None:
        return None
    durations = [
        duration
        for flag, value in zip(argv[start + 1 :], argv[start + 2 :], strict=False)
        if flag == "-t" and (duration := parse_ffmpeg_duration(value)) is not None and duration > 0
    ]
    return min(durations) if durations else None


class _Segments:
    """Cuts one stream's bytes into segments ended by ``\\r`` or ``\\n``."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes) -> tuple[list[str], str]:
        """Return the segments completed by ``data`` and the unfinished rest."""
        text = self._partial + self._decoder.decode(data)
        parts = _SEGMENT_END.split(text)
        self._partial = parts.pop()[-MAX_LINE:]
        return [part for part in parts if part], self._partial

    def finish(self) -> str:
        """The stream ended: return the unfinished rest and forget it."""
        rest, self._partial = self._partial + self._decoder.decode(b"", final=True), ""
        return rest


class OutputProgressParser:
    """Finds the progress of one command in its stdout and stderr.

    Args:
        argv: the command line (for ffmpeg's ``-t``).
    """

    def __init__(self, argv: Sequence[str]) -> None:
        self.duration: float | None = ffmpeg_duration_from_args(argv)
        self._duration_from_args = self.duration is not None
        self._streams = {"stdout": _Segments(), "stderr": _Segments()}
        self._block: dict[str, str] = {}
        self._rank = 0
        self.latest: ParsedProgress | None = None

    def feed(self, stream: str, data: bytes) -> ParsedProgress | None:
        """Read a chunk of ``stream`` (``stdout`` or ``stderr``).

        Returns:
            The latest progress found in the chunk, or None if it held none.
        """
        segments, rest = self._streams[stream].feed(data)
        found = None
        for segment in segments:
            found = self._segment(segment, complete=True) or found
        # tqdm leaves its newest bar unterminated until the next redraw: read it now, once
        # it is whole (tqdm's default bar ends with "]"), so "3/8" of a bar at "3/80" is not
        # read as 37.5%.
        if rest.rstrip().endswith("]"):
            found = self._segment(rest, complete=False) or found
        if found is not None:
            self.latest = found
        return found

    def close(self, stream: str) -> ParsedProgress | None:
        """The stream ended: read its unfinished last segment as a whole one.

        Returns:
            The progress found in it, or None.
        """
        rest = self._streams[stream].finish()
        found = self._segment(rest, complete=True) if rest else None
        if found is not None:
            self.latest = found
        return found

    def _segment(self, text: str, *, complete: bool) -> ParsedProgress | None:
        if complete:
            key_value = _KEY_VALUE.match(text.strip())
            if key_value and (
                key_value.group(1) in _FFMPEG_KEYS or key_value.group(1).startswith("stream_")
            ):
                return self._ffmpeg_line(key_value.group(1), key_value.group(2).strip())
            if not self._duration_from_args and self.duration is None:
                duration = _DURATION_LINE.search(text)
                if duration:
                    hours, minutes, seconds = duration.groups()
                    self.duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
                    return None
        if "%" not in text:
            return None
        text = _ANSI.sub("", text).strip()
        bar = _TQDM.search(text)
        if bar is not None and self._rank <= _TQDM_RANK:
            return self._accept(_TQDM_RANK, _tqdm_progress(bar))
        if complete and self._rank <= _PLAIN:
            matches = [float(m.group(1)) for m in _PERCENT.finditer(text)]
            matches = [value for value in matches if value <= 100.0]
            if matches:
                return self._accept(_PLAIN, ParsedProgress(matches[-1], "", text[:200], "percent"))
        return None

    def _ffmpeg_line(self, key: str, value: str) -> ParsedProgress | None:
        if key != "progress":
            self._block[key] = value
            return None
        block, self._block = self._block, {}
        if value == "end":
            percent = 100.0
        else:
            try:
                out_time_s = int(block.get("out_time_us", "")) / 1e6
            except ValueError:
                return None
            if self.duration is None or self.duration <= 0:
                return None
            percent = min(100.0, max(0.0, 100.0 * out_time_s / self.duration))
        details = [
            f"{name} {block[key]}"
            for name, key in (("frame", "frame"), ("time", "out_time"), ("speed", "speed"))
            if block.get(key, "N/A") != "N/A"
        ]
        return self._accept(
            _FFMPEG, ParsedProgress(percent, "ffmpeg", ", ".join(details) or None, "ffmpeg")
        )

    def _accept(self, rank: int, progress: ParsedProgress) -> ParsedProgress:
        self._rank = max(self._rank, rank)
        return progress


_SUFFIXES = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, "Z": 1e21, "Y": 1e24}


def _scaled(text: str) -> float | None:
    scale = _SUFFIXES.get(text[-1:], 1.0)
    number = text[:-1] if text[-1:] in _SUFFIXES else text
    try:
        return float(number) * scale
    except ValueError:
        return None


def _tqdm_progress(bar: re.Match[str]) -> ParsedProgress:
    percent = float(bar.group("pct"))
    n, total = _scaled(bar.group("n")), _scaled(bar.group("total"))
    if n is not None and total:
        percent = 100.0 * n / total
    percent = min(100.0, max(0.0, percent))
    desc = (bar.group("desc") or "").strip()[:MAX_STAGE_LENGTH]
    message = f"{bar.group('n')}/{bar.group('total')}{bar.group('rest')}".strip()
    return ParsedProgress(percent, desc, message[:200], "tqdm")
