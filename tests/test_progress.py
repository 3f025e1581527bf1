"""Progress of the scoring pass: the workers' files, the line shown, and a real local run."""

import gzip
import io
import logging

import pytest

from pipeline.progress import (
    CLEAR_LINE,
    ProgressDisplay,
    ProgressWriter,
    RateMeter,
    count_documents,
    count_lines,
    format_duration,
    format_progress,
    read_progress,
)
from pipeline.run import run
from schemas.config import RunConfig
from tests.conftest import write_jsonl


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TerminalStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_format_progress_with_total():
    line = format_progress(1200, 15000, 4000, 20.0)
    assert line == (
        "scoring: 1,200/4,000 documents (30.0%), 15,000 segments, 20.0 documents/s, "
        "about 2 min 20 s left"
    )


def test_format_progress_without_total_or_rate():
    assert format_progress(0, 0, None, None) == "scoring: 0 documents, 0 segments"
    assert format_progress(0, 0, 10, 0.0) == "scoring: 0/10 documents (0.0%), 0 segments"
    assert format_progress(5, 9, None, 2.5) == "scoring: 5 documents, 9 segments, 2.5 documents/s"


def test_format_progress_done_has_no_time_left():
    line = format_progress(10, 30, 10, 5.0)
    assert line == "scoring: 10/10 documents (100.0%), 30 segments, 5.0 documents/s"


def test_format_duration():
    assert format_duration(59.4) == "59 s"
    assert format_duration(61) == "1 min 01 s"
    assert format_duration(7325) == "2 h 02 min"


def test_count_lines_last_line_without_newline(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"{}\n{}\n{}")
    assert count_lines(str(path)) == 3
    path.write_bytes(b"{}\n\n")
    assert count_lines(str(path)) == 2
    path.write_bytes(b"")
    assert count_lines(str(path)) == 0


def test_count_documents_skips_compressed_and_remote(tmp_path):
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b"{}\n{}\n")
    packed = tmp_path / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(b"{}\n"))
    assert count_documents([str(plain), str(plain)]) == 4
    assert count_documents([str(plain), str(packed)]) is None
    assert count_documents(["gs://bucket/c.jsonl"]) is None


def test_writer_rewrites_at_most_once_per_interval(tmp_path):
    clock = FakeClock()
    writer = ProgressWriter(str(tmp_path), interval=1.0, clock=clock)
    writer.add(documents=2, segments=10)
    assert read_progress(str(tmp_path)) == (2, 10)
    clock.now += 0.5
    writer.add(documents=3, segments=1)
    assert read_progress(str(tmp_path)) == (2, 10)
    clock.now += 0.5
    writer.add(documents=1, segments=1)
    assert read_progress(str(tmp_path)) == (6, 12)


def test_read_progress_sums_workers(tmp_path):
    for documents in (1, 2, 3):
        writer = ProgressWriter(str(tmp_path))
        writer.add(documents=documents, segments=documents * 10)
    (tmp_path / "partial.json.tmp").write_text('{"documents": 100')
    assert read_progress(str(tmp_path)) == (6, 60)


def test_rate_meter_uses_recent_window():
    meter = RateMeter(window=10.0)
    assert meter.update(0.0, 0) is None
    assert meter.update(5.0, 50) == 10.0
    assert meter.update(10.0, 100) == 10.0
    # From 10 s on nothing is done: at 15 s the rate covers 5 s to 15 s, half of it idle.
    assert meter.update(15.0, 100) == 5.0
    assert meter.update(30.0, 100) == 0.0


def test_display_writes_lines_when_not_a_terminal(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "a"}] * 4)
    stream = io.StringIO()
    clock = FakeClock()
    display = ProgressDisplay([str(source)], stream=stream, interval=3600, clock=clock)
    with display:
        display.total = 4
        ProgressWriter(display.directory).add(documents=2, segments=6)
        clock.now += 2.0
        display.show()
        ProgressWriter(display.directory).add(documents=2, segments=6)
        clock.now += 2.0
    assert stream.getvalue() == (
        "scoring: 2/4 documents (50.0%), 6 segments, 1.0 documents/s, about 2 s left\n"
        "scoring: 4/4 documents (100.0%), 12 segments, 1.0 documents/s\n"
    )


def test_display_rewrites_line_on_terminal(tmp_path):
    stream = TerminalStream()
    clock = FakeClock()
    display = ProgressDisplay([], stream=stream, interval=3600, clock=clock)
    with display:
        ProgressWriter(display.directory).add(documents=3, segments=4)
        clock.now += 1.0
        display.show()
        display.clear_line()
    assert stream.getvalue() == (
        f"{CLEAR_LINE}scoring: 3 documents, 4 segments, 3.0 documents/s{CLEAR_LINE}"
        f"{CLEAR_LINE}scoring: 3 documents, 4 segments, 3.0 documents/s\n"
    )


def test_display_after_failure_writes_no_final_line(tmp_path):
    stream = io.StringIO()
    with pytest.raises(RuntimeError), ProgressDisplay([], stream=stream, interval=3600):
        raise RuntimeError("run failed")
    assert stream.getvalue() == ""


def test_scoring_stage_reports_progress(tmp_path, local_runner):
    records = [
        {"id": "p", "text": "One. Two. Three.", "lang": "en"},
        {"id": "c", "text": "a = 1\nb = 2\n", "lang": "python"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    with (tmp_path / "in.jsonl").open("a") as stream:
        stream.write("not json\n")
    progress_dir = tmp_path / "progress"
    progress_dir.mkdir()
    config = RunConfig(
        inputs=str(source), output_dir=str(tmp_path / "out"), scorers=("code_style",)
    )
    manifest = run(config, runner=local_runner, progress_dir=str(progress_dir))
    counts = manifest["all_counts"]
    assert read_progress(str(progress_dir)) == (3, 5)
    assert counts["documents_read"] == 3
    assert counts["segments_prose"] + counts["segments_code"] == 5


def test_log_record_clears_progress_line(tmp_path):
    stream = TerminalStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with ProgressDisplay([], stream=stream, interval=3600) as display:
            display.show()
            logging.getLogger("pipeline.test").warning("a warning")
    finally:
        root.removeHandler(handler)
    shown = f"{CLEAR_LINE}scoring: 0 documents, 0 segments"
    assert stream.getvalue() == f"{shown}{CLEAR_LINE}a warning\n{shown}\n"
