"""Progress of the scoring pass on a local run: documents and segments done, rate, time left.

Each instance of the scoring DoFn owns one small JSON file in a local directory and
rewrites it at most once a second. The launcher sums the files, which works for the
FnApiRunner's threads and for its worker processes (``--direct_running_mode
multi_processing``) alike. Beam metrics cannot serve here, because the FnApiRunner returns
its result, and with it the metrics, only once the pipeline has finished. Remote runners
get no progress directory, so their workers write nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import TextIO

from apache_beam.io.filesystem import CompressionTypes

logger = logging.getLogger(__name__)

# How often a worker rewrites its progress file, in seconds.
WRITE_INTERVAL_S = 1.0
# How often the display updates, in seconds: in place on a terminal, as a new line otherwise.
TERMINAL_INTERVAL_S = 0.5
LINE_INTERVAL_S = 15.0
# The rate is measured over this many seconds, so that model loading at the start
# does not drag the estimate down for the rest of the run.
RATE_WINDOW_S = 60.0
CLEAR_LINE = "\r\x1b[K"


class ProgressWriter:
    """Counts one DoFn instance's documents and segments into its own progress file."""

    def __init__(
        self,
        directory: str,
        interval: float = WRITE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = os.path.join(directory, f"{os.getpid()}-{uuid.uuid4().hex}.json")
        self.documents = 0
        self.segments = 0
        self._interval = interval
        self._clock = clock
        self._written_at: float | None = None

    def add(self, documents: int, segments: int) -> None:
        self.documents += documents
        self.segments += segments
        now = self._clock()
        if self._written_at is None or now - self._written_at >= self._interval:
            self.flush()

    def flush(self) -> None:
        """Rewrite the file; the rename makes a reader see the old or the new counts, whole."""
        temp_path = f"{self.path}.tmp"
        with open(temp_path, "w", encoding="utf-8") as stream:
            json.dump({"documents": self.documents, "segments": self.segments}, stream)
        os.replace(temp_path, self.path)
        self._written_at = self._clock()


def read_progress(directory: str) -> tuple[int, int]:
    """Sum the documents and segments of every progress file in `directory`."""
    documents = segments = 0
    for name in os.listdir(directory):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as stream:
                counts = json.load(stream)
        except (OSError, ValueError):
            continue
        documents += counts.get("documents", 0)
        segments += counts.get("segments", 0)
    return documents, segments


def count_documents(input_files: Sequence[str]) -> int | None:
    """Count the lines of local, uncompressed input files: the number of records to read.

    Returns None when any input is remote or compressed, because counting it would
    cost about as much as reading it.
    """
    total = 0
    for path in input_files:
        if "://" in path:
            return None
        if CompressionTypes.detect_compression_type(path) != CompressionTypes.UNCOMPRESSED:
            return None
        total += count_lines(path)
    return total


def count_lines(path: str) -> int:
    """Lines as `pipeline.read.read_lines` yields them: a last line without a newline counts."""
    lines = 0
    last = b"\n"
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def format_progress(documents: int, segments: int, total: int | None, rate: float | None) -> str:
    """Format one progress line, such as ``scoring: 1,200/4,000 documents (30.0%), ...``.

    Args:
        documents: records read so far, rejected ones included.
        segments: segments scored so far.
        total: records in the input, or None when unknown.
        rate: documents per second over the recent past, or None before it can be measured.
    """
    if total:
        done = f"{documents:,}/{total:,} documents ({min(documents / total, 1):.1%})"
    else:
        done = f"{documents:,} documents"
    parts = [f"scoring: {done}", f"{segments:,} segments"]
    if rate is not None and documents:
        parts.append(f"{rate:,.1f} documents/s")
        if total and rate > 0 and documents < total:
            parts.append(f"about {format_duration((total - documents) / rate)} left")
    return ", ".join(parts)


class RateMeter:
    """Documents per second over the last `window` seconds."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def update(self, now: float, documents: int) -> float | None:
        self._samples.append((now, documents))
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        first_time, first_documents = self._samples[0]
        if now - first_time <= 0:
            return None
        return (documents - first_documents) / (now - first_time)


class ProgressDisplay:
    """Shows the scoring pass's progress on `stream` while a local run goes on.

    On a terminal one line is rewritten in place; otherwise a new line is written every
    `interval` seconds. Use it as a context manager around the run, and pass
    `directory` to the scoring DoFn.
    """

    def __init__(
        self,
        input_files: Sequence[str],
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.input_files = list(input_files)
        self.stream = stream or sys.stderr
        self.in_place = self.stream.isatty()
        self.interval = interval or (TERMINAL_INTERVAL_S if self.in_place else LINE_INTERVAL_S)
        self.directory = ""
        self.total: int | None = None
        self._clock = clock
        self._rate = RateMeter()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._line_shown = False
        self._log_filter = _ClearProgressLine(self)

    def __enter__(self) -> ProgressDisplay:
        self.directory = tempfile.mkdtemp(prefix="annotate-progress-")
        self._rate.update(self._clock(), 0)
        self._threads = [
            threading.Thread(target=self._count_total, name="progress-count", daemon=True),
            threading.Thread(target=self._refresh, name="progress-display", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        if self.in_place:
            for handler in _stream_handlers(self.stream):
                handler.addFilter(self._log_filter)
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self._stop.set()
        self._threads[1].join()
        for handler in _stream_handlers(self.stream):
            handler.removeFilter(self._log_filter)
        # A failed run gets no final line, so its error message comes right after the last one.
        if exc_type is None:
            self.show()
        if self._line_shown:
            self.stream.write("\n")
            self.stream.flush()
        shutil.rmtree(self.directory, ignore_errors=True)

    def show(self) -> None:
        """Read the workers' progress files and write one progress line."""
        documents, segments = read_progress(self.directory)
        rate = self._rate.update(self._clock(), documents)
        line = format_progress(documents, segments, self.total, rate)
        if self.in_place:
            self.stream.write(CLEAR_LINE + line)
            self._line_shown = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def clear_line(self) -> None:
        if self._line_shown:
            self.stream.write(CLEAR_LINE)
            self._line_shown = False

    def _count_total(self) -> None:
        try:
            self.total = count_documents(self.input_files)
        except OSError as error:
            logger.warning("cannot count the input documents: %s", error)

    def _refresh(self) -> None:
        while not self._stop.wait(self.interval):
            self.show()


class _ClearProgressLine(logging.Filter):
    """Clears the progress line before a log record is written to the same terminal."""

    def __init__(self, display: ProgressDisplay) -> None:
        super().__init__()
        self.display = display

    def filter(self, record: logging.LogRecord) -> bool:
        self.display.clear_line()
        return True


def _stream_handlers(stream: TextIO) -> list[logging.Handler]:
    return [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.StreamHandler) and handler.stream is stream
    ]
