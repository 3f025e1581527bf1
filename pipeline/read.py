"""Read documents from JSON Lines (one record per line) and Parquet files, through Beam's
FileSystems.

Every line or Parquet row read ends as exactly one `Document` or one `Rejection`, so the
accounting of a run can balance: documents read = written + rejected.
"""

from __future__ import annotations

import base64
import datetime
import json
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.config import ReadOptions

INPUT_SUFFIXES = (
    ".jsonl",
    ".json",
    ".ndjson",
    ".jsonl.gz",
    ".json.gz",
    ".jsonl.zst",
    ".gz",
    ".zst",
    ".parquet",
)

PARQUET_SUFFIX = ".parquet"
ZSTD_SUFFIX = ".zst"

# Bytes read from a compressed input file at a time.
READ_CHUNK_BYTES = 1 << 20

# Parquet rows converted to documents at a time; Arrow reads one row group's
# column chunks at a time, so memory also grows with the row group size.
PARQUET_BATCH_ROWS = 1024

REPLACEMENT_CHARACTER = "\ufffd"


@dataclass
class Document:
    """One input record: its text, a stable id, and every other field as metadata."""

    id: str
    text: str
    metadata: dict[str, Any]
    input_file: str
    input_line: int
    repairs: list[str] = field(default_factory=list)


@dataclass
class Rejection:
    """A line that could not become a document, with the reason (a counter name)."""

    reason: str
    detail: str
    input_file: str
    input_line: int
    record: str


def list_input_files(inputs: str) -> list[str]:
    """Expand a file, glob or directory into a sorted list of input files.

    Raises:
        FileNotFoundError: nothing matches, naming the pattern.
    """
    patterns = [inputs]
    if FileSystems.exists(inputs) and _is_directory(inputs):
        patterns = [FileSystems.join(inputs, f"*{suffix}") for suffix in INPUT_SUFFIXES]
    paths: set[str] = set()
    for result in FileSystems.match(patterns):
        paths.update(metadata.path for metadata in result.metadata_list)
    if not paths:
        raise FileNotFoundError(
            f"no input files match {inputs!r}; pass a JSON Lines file (.jsonl, .jsonl.gz, "
            ".jsonl.zst), a Parquet file (.parquet), a glob, or a directory holding such files"
        )
    return sorted(paths)


def _is_directory(path: str) -> bool:
    if "://" in path:
        return path.endswith("/")
    import os

    return os.path.isdir(path)


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, raw line without its newline) from a possibly compressed file.

    Raises:
        InputDamagedError: the file ends in the middle of a compressed stream, after
            yielding every line before the damage.
    """
    if path.lower().endswith(ZSTD_SUFFIX):
        yield from _read_zstd_lines(path)
        return
    with FileSystems.open(path, compression_type=CompressionTypes.AUTO) as stream:
        line_number = 0
        while True:
            try:
                line = stream.readline()
            except (EOFError, zlib.error, OSError) as error:
                raise InputDamagedError(path, line_number, error) from error
            if not line:
                return
            line_number += 1
            yield line_number, line.rstrip(b"\n").rstrip(b"\r")


class InputDamagedError(Exception):
    """A compressed input file is truncated or corrupt."""

    def __init__(self, path: str, last_good_line: int, cause: Exception) -> None:
        super().__init__(
            f"{path} is damaged after line {last_good_line} ({type(cause).__name__}: {cause}); "
            "the lines before the damage were processed"
        )
        self.path = path
        self.last_good_line = last_good_line


def parse_record(
    raw: bytes, path: str, line_number: int, options: ReadOptions
) -> Document | Rejection:
    """Turn one raw line into a Document, or a Rejection naming what is wrong with it."""

    def reject(reason: str, detail: str) -> Rejection:
        record = raw.decode("utf-8", errors="backslashreplace")
        return Rejection(reason, detail, path, line_number, record)

    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return reject("invalid_utf8", f"line is not valid UTF-8: {error}")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return reject("invalid_json", f"line is not valid JSON: {error}")
    if not isinstance(record, dict):
        return reject("not_an_object", f"line holds a JSON {type(record).__name__}, not an object")
    if options.text_field not in record or record[options.text_field] is None:
        return reject("missing_text", f"field {options.text_field!r} is missing or null")
    text = record.pop(options.text_field)
    if not isinstance(text, str):
        kind = type(text).__name__
        return reject("text_not_string", f"field {options.text_field!r} is a {kind}, not a string")
    repairs: list[str] = []
    if _has_lone_surrogate(text):
        text = _replace_lone_surrogates(text)
        repairs.append("lone_surrogates_replaced")
    doc_id = _document_id(record.pop(options.id_field, None), path, line_number)
    return Document(doc_id, text, record, path, line_number, repairs)


def _document_id(value: Any, path: str, line_number: int) -> str:
    if isinstance(value, str) and value and not _has_lone_surrogate(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return f"{posixpath.basename(path)}:{line_number}"


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _replace_lone_surrogates(text: str) -> str:
    # A valid surrogate pair cannot occur in a Python str decoded from JSON
    # text that json.loads accepted as a pair; what remains is a lone half.
    return "".join(REPLACEMENT_CHARACTER if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def metadata_json(metadata: dict[str, Any]) -> str:
    """Serialise metadata as JSON; lone surrogates stay as JSON escapes, so nothing is lost."""
    text = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
    if _has_lone_surrogate(text):
        return json.dumps(metadata, ensure_ascii=True, sort_keys=True)
    return text


def _read_zstd_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield the lines of a Zstandard file as `read_lines` does, detecting a truncated file.

    Beam's ZSTD decompression (Beam 2.77) and zstandard's stream reader both end
    silently when a file stops in the middle of a frame, losing the rest of the file.
    """
    line_number = 0
    pending = b""
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for chunk in _zstd_chunks(stream):
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    line_number += 1
                    yield line_number, line.rstrip(b"\r")
    except (EOFError, zstandard.ZstdError, OSError) as error:
        raise InputDamagedError(path, line_number, error) from error
    if pending:
        yield line_number + 1, pending.rstrip(b"\r")


def _zstd_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    """Decompress every frame of a Zstandard stream, in order.

    Raises:
        EOFError: the stream ends in the middle of a frame.
        zstandard.ZstdError: the data is not Zstandard or is corrupt.
    """
    decompressor = zstandard.ZstdDecompressor()
    frame = decompressor.decompressobj()
    in_frame = False
    while data := stream.read(READ_CHUNK_BYTES):
        while data:
            output = frame.decompress(data)
            if output:
                yield output
            in_frame = not frame.eof
            data = frame.unused_data if frame.eof else b""
            if frame.eof:
                frame = decompressor.decompressobj()
    if in_frame:
        raise EOFError("the file ends in the middle of a Zstandard frame")


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIX)


class ParquetDamagedError(InputDamagedError):
    """A Parquet input file is truncated or corrupt; `last_good_line` counts rows."""

    def __init__(self, path: str, last_good_row: int, cause: Exception) -> None:
        super().__init__(path, last_good_row, cause)
        self.args = (
            f"{path} is damaged after row {last_good_row} ({type(cause).__name__}: {cause}); "
            "the rows before the damage were processed",
        )


def read_parquet(path: str, options: ReadOptions) -> Iterator[Document | Rejection]:
    """Yield one Document or Rejection per row of a Parquet file, streamed in batches of rows.

    The column `options.text_field` is the text and `options.id_field` the id; every
    other column becomes metadata. Rows are numbered from 1 in `input_line`.

    Raises:
        ParquetDamagedError: the file is not Parquet or is corrupt, after yielding
            every row before the damage.
    """
    row_number = 0
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for batch in pq.ParquetFile(stream).iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    row_number += 1
                    yield parse_row(row, path, row_number, options)
    except (pa.ArrowException, OSError) as error:
        raise ParquetDamagedError(path, row_number, error) from error


def parse_row(
    row: dict[str, Any], path: str, row_number: int, options: ReadOptions
) -> Document | Rejection:
    """Turn one Parquet row into a Document, or a Rejection naming what is wrong with it."""
    record = {str(key): _json_value(value) for key, value in row.items()}

    def reject(reason: str, detail: str) -> Rejection:
        text = json.dumps(record, ensure_ascii=False, sort_keys=True)
        return Rejection(reason, detail, path, row_number, text)

    text = row.get(options.text_field)
    if text is None:
        return reject("missing_text", f"column {options.text_field!r} is missing or null")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            return reject("invalid_utf8", f"column {options.text_field!r} is not UTF-8: {error}")
    if not isinstance(text, str):
        kind = type(text).__name__
        return reject("text_not_string", f"column {options.text_field!r} is a {kind}, not text")
    record.pop(options.text_field)
    doc_id = _document_id(row.get(options.id_field), path, row_number)
    record.pop(options.id_field, None)
    return Document(doc_id, text, record, path, row_number)


def _json_value(value: Any) -> Any:
    """Convert an Arrow value to JSON types: dates and times as ISO 8601, bytes as base64."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(key): _json_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(item) for item in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    return str(value)
