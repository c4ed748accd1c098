"""Finding progress in command output; the inputs are produced by the real tools where possible.

tqdm's output is made by tqdm itself writing into a buffer; the ffmpeg blocks are ffmpeg's
``-progress`` format (the end-to-end tests in ``test_run.py`` run the real ffmpeg).
"""

from __future__ import annotations

import io

import pytest
from progress_sync.client import OutputProgressParser, parse_ffmpeg_duration
from progress_sync.client._parsers import ffmpeg_duration_from_args
from progress_sync.client._run import exit_description, stderr_tail
from tqdm import tqdm


def real_tqdm_output(**kwargs) -> bytes:
    out = io.StringIO()
    bar = tqdm(file=out, mininterval=0, miniters=1, **kwargs)
    for _ in range(kwargs["total"]):
        bar.update(1)
    bar.close()
    return out.getvalue().encode()


def feed_in_chunks(parser: OutputProgressParser, stream: str, data: bytes, size: int) -> list:
    found = []
    for start in range(0, len(data), size):
        progress = parser.feed(stream, data[start : start + size])
        if progress is not None:
            found.append(progress)
    return found


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_a_real_tqdm_bar_is_read_whatever_the_chunking(chunk):
    data = real_tqdm_output(total=8, desc="train")
    assert b"\r" in data
    parser = OutputProgressParser(["python", "train.py"])
    found = feed_in_chunks(parser, "stderr", data, chunk)
    percents = [p.percent for p in found]
    # Every value is a real step of the bar (no half-read "3/8" of "3/80"), in order.
    assert set(percents) <= {i * 12.5 for i in range(9)}
    assert percents == sorted(percents)
    assert len(set(percents)) >= 4
    assert percents[-1] == 100.0
    assert {p.stage for p in found} == {"train"}
    assert found[-1].source == "tqdm"
    assert found[-1].message.startswith("8/8 [")


def test_a_whole_tqdm_run_in_one_chunk_gives_its_last_bar():
    parser = OutputProgressParser(["python", "train.py"])
    found = parser.feed("stderr", real_tqdm_output(total=8, desc="train"))
    assert (found.percent, found.stage) == (100.0, "train")
    assert parser.latest == found


def test_a_bar_is_not_read_before_it_is_whole():
    parser = OutputProgressParser(["x"])
    assert parser.feed("stderr", b"\rtrain:   3%|3         | 3/8") is None
    found = parser.feed("stderr", b"0 [00:01<00:30, 2.50it/s]")
    assert found.percent == pytest.approx(3.75)


def test_the_unfinished_last_segment_is_read_when_the_stream_ends():
    parser = OutputProgressParser(["x"])
    assert parser.feed("stdout", b"\r 40%\r 41%") is not None  # 40% is a whole segment
    assert parser.latest.percent == 40.0
    assert parser.close("stdout").percent == 41.0
    assert parser.close("stdout") is None


def test_a_tqdm_bar_with_scaled_units_and_ascii():
    data = real_tqdm_output(total=3, unit="B", unit_scale=True, unit_divisor=1024, ascii=True)
    parser = OutputProgressParser(["x"])
    assert parser.feed("stderr", data).percent == 100.0


def test_multibyte_characters_split_across_chunks_are_kept():
    data = real_tqdm_output(total=4, desc="größe")
    parser = OutputProgressParser(["x"])
    found = feed_in_chunks(parser, "stderr", data, 3)
    assert found[-1].stage == "größe"


def test_plain_percentages_in_lines():
    parser = OutputProgressParser(["sh"])
    assert parser.feed("stdout", b"copying... 12%\n").percent == 12.0
    assert parser.feed("stdout", b"step 3 of 4: 75.5 % done (ETA 3s)\n").percent == 75.5
    assert parser.feed("stdout", b"no progress here\n") is None
    assert parser.feed("stdout", b"load 250% cpu\n") is None  # not a progress value
    assert parser.feed("stdout", b"\r 40%\r 41%\n").percent == 41.0
    assert parser.latest.source == "percent"


def test_a_more_specific_source_wins_over_plain_percentages():
    parser = OutputProgressParser(["python", "x.py"])
    parser.feed("stderr", real_tqdm_output(total=2, desc="d"))
    assert parser.feed("stdout", b"disk 5% full\n") is None
    assert parser.latest.percent == 100.0


FFMPEG_BLOCK = (
    b"frame=50\nfps=25.00\nstream_0_0_q=28.0\nbitrate=N/A\ntotal_size=1024\n"
    b"out_time_us=%d\nout_time_ms=%d\nout_time=00:00:02.000000\ndup_frames=0\n"
    b"drop_frames=0\nspeed=2.01x\nprogress=%s\n"
)


def block(out_time_us: int, progress: bytes = b"continue") -> bytes:
    return FFMPEG_BLOCK % (out_time_us, out_time_us, progress)


def test_ffmpeg_progress_against_the_t_duration():
    parser = OutputProgressParser(
        ["ffmpeg", "-f", "lavfi", "-i", "testsrc=duration=5", "-t", "5", "-progress", "pipe:1"]
    )
    assert parser.duration == 5.0
    found = parser.feed("stdout", block(2_000_000))
    assert (found.percent, found.stage, found.source) == (40.0, "ffmpeg", "ffmpeg")
    assert found.message == "frame 50, time 00:00:02.000000, speed 2.01x"
    # ffmpeg's closing summary must not move the bar back.
    assert parser.feed("stderr", b"video:120kB muxing overhead: 4.588354%\n") is None
    assert parser.feed("stdout", block(5_000_000, b"end")).percent == 100.0


def test_ffmpeg_progress_against_its_duration_line():
    parser = OutputProgressParser(
        ["/usr/bin/ffmpeg", "-i", "in.mp4", "-progress", "pipe:1", "o.mp4"]
    )
    assert parser.duration is None
    assert parser.feed("stdout", block(1_000_000)) is None  # no duration yet
    parser.feed("stderr", b"  Duration: 00:00:04.00, start: 0.000000, bitrate: 155 kb/s\n")
    assert parser.duration == 4.0
    assert parser.feed("stdout", block(1_000_000)).percent == 25.0
    # Only the first (input) duration counts.
    parser.feed("stderr", b"  Duration: 00:01:00.00, start: 0.0\n")
    assert parser.duration == 4.0


def test_ffmpeg_progress_with_na_times_is_skipped():
    parser = OutputProgressParser(["ffmpeg", "-t", "2", "x"])
    data = block(0).replace(b"out_time_us=0", b"out_time_us=N/A")
    assert parser.feed("stdout", data) is None


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5", 5.0),
        ("2.5", 2.5),
        ("200ms", 0.2),
        ("1500000us", 1.5),
        ("12s", 12.0),
        ("01:02", 62.0),
        ("1:02:03.5", 3723.5),
        ("-5", None),
        ("abc", None),
    ],
)
def test_ffmpeg_duration_syntax(text, seconds):
    assert parse_ffmpeg_duration(text) == seconds


def test_the_shortest_t_after_the_ffmpeg_program_counts():
    assert ffmpeg_duration_from_args(["nice", "ffmpeg", "-t", "8", "-i", "a", "-t", "3", "b"]) == 3
    assert ffmpeg_duration_from_args(["sleep", "-t", "3"]) is None
    assert ffmpeg_duration_from_args(["ffmpeg", "-i", "a", "-t"]) is None


def test_the_stderr_tail_keeps_the_last_lines_without_bars_noise():
    data = b"line 1\n\x1b[31mline 2\x1b[0m\r\n" + b"".join(b"x %d\n" % i for i in range(20))
    tail = stderr_tail(data)
    assert tail.splitlines() == [f"x {i}" for i in range(10, 20)]
    assert stderr_tail(b"\x1b[31mboom\x1b[0m\n") == "boom"


def test_exit_descriptions():
    assert exit_description(3) == "exit code 3"
    assert exit_description(-9) == "killed by signal SIGKILL"
    assert exit_description(-200) == "killed by signal 200"
