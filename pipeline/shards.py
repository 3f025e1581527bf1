"""Shard naming, scored-shard writing and reading.

An input file gives one shard, or one shard per `docs_per_shard` documents.
Names are derived from the input path alone, so a rerun finds the shards an
earlier attempt completed.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import files
from pipeline.read import Document, InputIssue, Rejection, metadata_json
from pipeline.score import ScoredDocument
from schemas.output import SCHEMA_METADATA_KEY, score_column

SCORED_DIR = "scored"
# Scored shards written again with scores refined near a threshold (`pipeline.refine`).
REFINED_DIR = "refined"
SHARDS_DIR = "shards"
REJECTED_DIR = "rejected"
DUPLICATES_DIR = "duplicates"
PROGRESS_DIR = "_progress"
# Rows read from a shard at a time when all its rows pass through Python.
SHARD_BATCH_ROWS = 1024


def shard_stem(input_file: str) -> str:
    """A readable, collision-free name for an input file: its base name and a path hash.

    The name never starts with "." or "_", which pyarrow.dataset, Spark and Hadoop
    take for hidden files and skip.
    """
    base = posixpath.basename(input_file.rstrip("/"))
    base = re.sub(r"\.(jsonl|json|ndjson|parquet)(\.(gz|zst|bz2|xz|lzma|deflate))?$", "", base)
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base)[:60].lstrip("._") or "input"
    digest = hashlib.sha1(input_file.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{base}-{digest}"


def shard_name(input_file: str, index: int) -> str:
    return f"{shard_stem(input_file)}-{index:05d}"


def marker_path(output_dir: str, stage: str, name: str) -> str:
    return files.join(output_dir, PROGRESS_DIR, stage, f"{name}.json")


def with_refined_copies(output_dir: str, paths: Sequence[str]) -> list[str]:
    """Replace each scored shard by its copy in OUTPUT_DIR/refined/, where refinement wrote one.

    The copy contains the scores the run labelled from, so a reader of a finished
    run's scores reads the copy.
    """
    # One listing of refined/, not one existence check per shard, which on a
    # bucket would be a request per shard.
    copies = {
        posixpath.basename(copy): copy
        for copy in files.match(files.join(output_dir, REFINED_DIR, "*.parquet"))
    }
    return [copies.get(posixpath.basename(path), path) for path in paths]


def scored_columns(batch: Sequence[ScoredDocument], scorer_names: Sequence[str]) -> dict:
    """Column lists of the scored schema for a batch of documents."""
    columns: dict[str, list] = {
        "id": [],
        "text": [],
        "kind": [],
        "segments": [],
        "segment_starts": [],
        "segment_ends": [],
        "num_segments": [],
        "metadata": [],
        "input_file": [],
        "input_line": [],
    }
    for name in scorer_names:
        columns[score_column(name)] = []
    for scored in batch:
        document = scored.document
        columns["id"].append(document.id)
        columns["text"].append(document.text)
        columns["kind"].append(scored.kind)
        columns["segments"].append(scored.segments)
        columns["segment_starts"].append([start for start, _ in scored.spans])
        columns["segment_ends"].append([end for _, end in scored.spans])
        columns["num_segments"].append(len(scored.spans))
        columns["metadata"].append(metadata_json(document.metadata))
        columns["input_file"].append(document.input_file)
        columns["input_line"].append(document.input_line)
        for name in scorer_names:
            columns[score_column(name)].append(scored.scores[name])
    return columns


class ParquetShardWriter:
    """Streams tables into one Parquet file, renamed into place on `close`.

    Memory contains one batch at a time, whatever the shard's size.
    """

    def __init__(self, path: str, schema: pa.Schema, metadata: dict | None = None) -> None:
        if metadata:
            schema = schema.with_metadata({SCHEMA_METADATA_KEY: json.dumps(metadata)})
        self.schema = schema
        self.rows = 0
        self._file = files.AtomicFile(path)
        self._writer = pq.ParquetWriter(self._file.stream, schema, compression="zstd")

    def write(self, columns: dict) -> None:
        table = pa.Table.from_pydict(columns, schema=self.schema)
        self._writer.write_table(table)
        self.rows += table.num_rows

    def close(self) -> None:
        self._writer.close()
        self._file.commit()

    def abort(self) -> None:
        self._writer.close()
        self._file.abort()


class RejectionWriter:
    """Streams dead-letter records as JSON Lines into one file, renamed into place on `close`.

    Each line contains the record as read, its input file and line, and the
    reason. The file is created on the first rejection, so a shard without
    rejections leaves no file.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.count = 0
        self._file: files.AtomicFile | None = None

    def write(self, rejections: Sequence[Rejection]) -> None:
        if not rejections:
            return
        if self._file is None:
            self._file = files.AtomicFile(self.path)
        for rejection in rejections:
            line = json.dumps(asdict(rejection), ensure_ascii=False) + "\n"
            # A lone surrogate becomes its JSON escape, so the file stays valid UTF-8.
            self._file.stream.write(line.encode("utf-8", "backslashreplace"))
        self.count += len(rejections)

    def close(self) -> None:
        if self._file is not None:
            self._file.commit()

    def abort(self) -> None:
        if self._file is not None:
            self._file.abort()


def write_duplicates(path: str, removed: Sequence[tuple[Document, tuple[str, str, int]]]) -> None:
    """Write removed duplicates as JSON Lines: the document, where it was, and the kept one.

    `removed` contains (document, (kept id, kept input file, kept input line)) pairs.
    """
    lines = []
    for document, (kept_id, kept_file, kept_line) in removed:
        record = {
            "id": document.id,
            "input_file": document.input_file,
            "input_line": document.input_line,
            "text": document.text,
            "duplicate_of": {"id": kept_id, "input_file": kept_file, "input_line": kept_line},
        }
        lines.append(json.dumps(record, ensure_ascii=False) + "\n")
    data = "".join(lines).encode("utf-8", "surrogatepass")
    files.write_atomically(path, lambda f: f.write(data))


def read_shard(path: str, columns: Sequence[str] | None = None) -> pa.Table:
    with files.open_read(path) as stream:
        return pq.read_table(stream, columns=list(columns) if columns else None)


def iter_shard_batches(
    path: str, batch_rows: int = SHARD_BATCH_ROWS, columns: Sequence[str] | None = None
) -> Iterator[pa.RecordBatch]:
    """Yield a shard's rows in batches, all columns or only `columns`."""
    with files.open_read(path) as stream:
        parquet = pq.ParquetFile(stream)
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns)


def document_counts(items: Sequence[Document | Rejection | InputIssue]) -> Counter[str]:
    """Count rejections (rejected_<reason>), repairs (repaired_<reason>) and input issues."""
    counts: Counter[str] = Counter()
    for item in items:
        if isinstance(item, Rejection):
            counts[f"rejected_{item.reason}"] += 1
        elif isinstance(item, InputIssue):
            counts[item.reason] += 1
        else:
            counts.update(f"repaired_{repair}" for repair in item.repairs)
    return counts
