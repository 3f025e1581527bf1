"""Helpers shared by the benchmark scripts: sample segments, timing, machine facts, tables.

The scripts import this module as ``benchmarks.harness``, so run them from the repository
root with ``PYTHONPATH=.``.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.read import Document, parse_record
from pipeline.segment import Segmenter, document_kind
from schemas.config import ReadOptions, SegmentOptions

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = REPO_ROOT / "data" / "sample.jsonl"

# Id prefixes of the sample's English prose documents. The sample's other prose documents
# (prefix "mixed") are translated man pages, non-English fortunes and data files.
ENGLISH_PROSE = ("benign", "offensive", "prose_pii")
# Id prefix of the sample's Debian copyright files: licence text, with long sentences.
LICENCE_TEXT = ("prose_pii",)


@dataclass
class Timing:
    """Wall-clock and process CPU seconds of one call, and what it returned."""

    seconds: float
    cpu_seconds: float
    result: Any = None


def read_documents(path: Path = SAMPLE) -> list[Document]:
    """Read a JSON Lines file with the pipeline's reader, skipping rejected lines."""
    documents = []
    with open(path, "rb") as file:
        for line_number, line in enumerate(file, start=1):
            record = parse_record(line, str(path), line_number, ReadOptions())
            if isinstance(record, Document):
                documents.append(record)
    return documents


def document_segments(
    documents: Sequence[Document], kind: str
) -> Iterator[tuple[Document, list[str]]]:
    """Yield each document of ``kind`` with its segments, as the pipeline cuts them."""
    options = SegmentOptions()
    segmenter = Segmenter(options)
    for document in documents:
        if document_kind(document.metadata, options) != kind:
            continue
        spans = segmenter.spans(document.text, kind)
        yield document, [document.text[start:end] for start, end in spans]


def sample_segments(kind: str, id_prefixes: Sequence[str] | None = None) -> list[str]:
    """Return the non-blank segments of the sample's documents of ``kind``, in input order.

    Args:
        kind: ``prose`` or ``code``.
        id_prefixes: keep only documents whose id starts with one of these followed by
            ``-``. None keeps all.
    """
    documents = read_documents()
    if id_prefixes is not None:
        documents = [d for d in documents if d.id.split("-", 1)[0] in id_prefixes]
    return [
        segment
        for _, segments in document_segments(documents, kind)
        for segment in segments
        if segment.strip()
    ]


def detoxify_checkpoint(directory: str | None) -> tuple[Path, Path]:
    """Return the checkpoint and Hugging Face directory of a random-weight BERT-base.

    A checkpoint of any size that ``scorers.testing`` wrote into ``directory`` earlier is
    reused. Otherwise a base one (438 MB) is written there, or into a new temporary
    directory when ``directory`` is None.
    """
    from scorers.testing import CHECKPOINT_FILE_NAME, write_detoxify_checkpoint

    path = Path(directory or tempfile.mkdtemp(prefix="detoxify-base-"))
    if (path / CHECKPOINT_FILE_NAME).is_file() and (path / "hf" / "config.json").is_file():
        return path / CHECKPOINT_FILE_NAME, path / "hf"
    return write_detoxify_checkpoint(path, size="base", seed=0)


def sample_records(id_prefixes: Sequence[str] | None = None) -> list[bytes]:
    """Return the sample's JSON Lines records, as bytes, whose id prefix is listed."""
    with open(SAMPLE, "rb") as file:
        records = [line for line in file if line.strip()]
    if id_prefixes is None:
        return records
    return [r for r in records if json.loads(r)["id"].split("-", 1)[0] in id_prefixes]


def write_records(records: Sequence[bytes], path: Path) -> Path:
    """Write JSON Lines records, one per line, and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(r if r.endswith(b"\n") else r + b"\n" for r in records))
    return path


def run_annotate(arguments: Sequence[str]) -> float:
    """Run ``python -m pipeline.cli run ARGUMENTS`` from the repository; return its seconds.

    Raises:
        subprocess.CalledProcessError: the run failed; its output is in the exception.
    """
    environment = dict(os.environ)
    paths = [str(REPO_ROOT), environment.get("PYTHONPATH", "")]
    environment["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    command = [sys.executable, "-m", "pipeline.cli", "run", *arguments]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env=environment, cwd=REPO_ROOT)
    return time.perf_counter() - start


def timed(function: Callable[[], Any]) -> Timing:
    """Call ``function`` once and return its wall-clock and CPU time and its result."""
    cpu_start = time.process_time()
    start = time.perf_counter()
    result = function()
    return Timing(time.perf_counter() - start, time.process_time() - cpu_start, result)


def best_of(function: Callable[[], Any], repeat: int) -> tuple[Timing, list[float]]:
    """Call ``function`` ``repeat`` times; return the fastest call and every wall time.

    The fastest call is the one least disturbed by other processes on a shared machine.
    """
    timings = [timed(function) for _ in range(repeat)]
    return min(timings, key=lambda t: t.seconds), [t.seconds for t in timings]


def peak_rss_mib() -> float:
    """Return this process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_description() -> str:
    """Describe the CPU, memory, Python and load average in one line."""
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            names = [
                line.split(":", 1)[1].strip() for line in file if line.startswith("model name")
            ]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {memory:.0f} GiB memory, Python "
        f"{platform.python_version()}, load average {load}"
    )


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Format rows as a Markdown table. Cells are printed with ``str``, so format floats first."""
    lines = ["| " + " | ".join(headers) + " |", "|" + " --- |" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)
