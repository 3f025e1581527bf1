"""Read documents from JSON Lines (one record per line) and Parquet files, through Beam's
FileSystems.

Every non-blank line or Parquet row read ends as exactly one `Document` or one `Rejection`,
so the accounting of a run can balance: documents read = written + rejected.
Blank lines and damaged compressed files are reported as `InputIssue`s, which
are not documents.
"""

from __future__ import annotations

import base64
import bz2
import codecs
import datetime
import json
import logging
import lzma
import math
import posixpath
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from schemas.config import ReadOptions

logger = logging.getLogger(__name__)

# Suffixes that `CompressionTypes.detect_compression_type` maps to a compression.
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".lzma", ".zst", ".zstd", ".deflate")

# Files of an input directory that are read: JSON Lines, plain or compressed (a bare
# compression suffix, as in "part-0.gz", is read as JSON Lines), and Parquet.
INPUT_SUFFIXES = (".jsonl", ".json", ".ndjson", ".parquet", *COMPRESSION_SUFFIXES)

# Skipped files of an input directory named in its warning.
SKIPPED_NAMES_SHOWN = 3

PARQUET_SUFFIX = ".parquet"

# Parquet rows converted to documents at a time; Arrow reads one row group's
# column chunks at a time, so memory also grows with the row group size.
PARQUET_BATCH_ROWS = 1024

REPLACEMENT_CHARACTER = "\ufffd"

# Input is read and decompressed in blocks of this many bytes. A decompressor
# that fails returns nothing of the block it failed on, so the lines lost to
# damage are at most those of one block.
READ_BLOCK_BYTES = 1 << 16

# Repair reasons, written as repaired_<reason> counters.
REPAIR_LONE_SURROGATES = "lone_surrogates_replaced"
REPAIR_CP1252 = "invalid_utf8_decoded_as_cp1252"
REPAIR_BOM = "utf8_bom_removed"
REPAIR_INVALID_ID = "invalid_id_replaced"
REPAIR_NON_FINITE = "non_finite_numbers_replaced"

# Records nested deeper than this (the record object is level 1) are rejected:
# Python's JSON parser and serialiser recurse once per level and fail near 1000.
MAX_NESTING_DEPTH = 100
REJECT_TOO_DEEP = "too_deeply_nested"

# InputIssue reasons, which are also their counter names.
BLANK_LINE = "blank_lines_skipped"
DAMAGED_INPUT = "input_files_damaged"


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


@dataclass
class InputIssue:
    """Something in an input file that contains no document: a blank line, or damage.

    `reason` is `BLANK_LINE` or `DAMAGED_INPUT`. For damage, `input_line` is
    the number of lines read from the file, including a partial line that the
    damage cut off.
    """

    reason: str
    detail: str
    input_file: str
    input_line: int


def list_input_files(inputs: str) -> list[str]:
    """Expand a file, glob or directory into a sorted list of input files.

    Raises:
        FileNotFoundError: nothing matches, naming the pattern.
    """
    if FileSystems.exists(inputs) and is_directory(inputs):
        paths = _directory_input_files(inputs)
    else:
        paths = {metadata.path for metadata in FileSystems.match([inputs])[0].metadata_list}
    if not paths:
        raise FileNotFoundError(
            f"no input files match {inputs!r}; pass a JSON Lines file (.jsonl, .jsonl.gz, "
            ".jsonl.zst, ...), a Parquet file (.parquet), a glob, or a directory holding such "
            "files"
        )
    return sorted(paths)


def _directory_input_files(directory: str) -> set[str]:
    """Return the files of `directory` with an `INPUT_SUFFIXES` suffix; warn of the others."""
    found = [m.path for m in FileSystems.match([FileSystems.join(directory, "*")])[0].metadata_list]
    paths = {path for path in found if path.lower().endswith(INPUT_SUFFIXES)}
    skipped = sorted(posixpath.basename(path) for path in set(found) - paths)
    subdirectories = _subdirectory_count(directory)
    if skipped or subdirectories:
        shown = ", ".join(skipped[:SKIPPED_NAMES_SHOWN])
        more = ", ..." if len(skipped) > SKIPPED_NAMES_SHOWN else ""
        logger.warning(
            "%s: skipped %d file(s) whose names end in none of %s%s; subdirectories (%d here) "
            "are not read; pass a glob to read files in them",
            directory,
            len(skipped),
            " ".join(INPUT_SUFFIXES),
            f" ({shown}{more})" if skipped else "",
            subdirectories,
        )
    return paths


def _subdirectory_count(directory: str) -> int:
    # Object stores have no directories to count; their glob "*" matches no subfolder.
    if "://" in directory:
        return 0
    import os

    return sum(entry.is_dir() for entry in os.scandir(directory))


def is_directory(path: str) -> bool:
    """Return whether `path` names a directory; a URI does when it ends with a slash."""
    if "://" in path:
        return path.endswith("/")
    import os

    return os.path.isdir(path)


def read_records(path: str, options: ReadOptions) -> Iterator[Document | Rejection | InputIssue]:
    """Read one input file: a Document or Rejection per non-blank line, InputIssues besides.

    Damage in a compressed file ends the reading of that file. The lines before
    the damage are read. A line cut off by the damage becomes a Rejection with
    reason ``truncated_line`` unless it still parses. An InputIssue with reason
    `DAMAGED_INPUT` comes last. A Parquet file gives one Document or Rejection
    per row (see `read_parquet`).
    """
    if is_parquet(path):
        yield from read_parquet(path, options)
        return
    try:
        for line_number, raw in read_lines(path):
            if raw.strip():
                yield parse_record(raw, path, line_number, options)
            else:
                yield InputIssue(BLANK_LINE, "blank line", path, line_number)
    except InputDamagedError as error:
        logger.error("%s", error)
        lines_read = error.complete_lines
        if error.partial_line.strip():
            lines_read += 1
            yield _parse_cut_line(error.partial_line, path, lines_read, options)
        yield InputIssue(DAMAGED_INPUT, str(error), path, lines_read)


def _parse_cut_line(
    raw: bytes, path: str, line_number: int, options: ReadOptions
) -> Document | Rejection:
    result = parse_record(raw, path, line_number, options)
    if isinstance(result, Rejection) and result.reason == "invalid_json":
        result.reason = "truncated_line"
        result.detail = f"line is cut off where the compressed data is damaged; {result.detail}"
    return result


def read_lines(path: str) -> Iterator[tuple[int, bytes]]:
    """Yield (1-based line number, raw line without its line ending) from a file.

    A compressed file is decompressed by its suffix, as Beam does (.gz, .bz2, .zst,
    .xz, .deflate). A last line without a newline is yielded too.

    Raises:
        InputDamagedError: the compressed data is corrupt or ends before its end
            marker. Every complete line before the damage was yielded first. The
            error's `partial_line` is the start of the line that the damage cut off.
    """
    line_number = 0
    tail: list[bytes] = []
    try:
        for block in _decompressed_blocks(path):
            *complete, rest = block.split(b"\n")
            if complete:
                complete[0] = b"".join([*tail, complete[0]])
                tail = []
            for line in complete:
                line_number += 1
                yield line_number, line[:-1] if line.endswith(b"\r") else line
            if rest:
                tail.append(rest)
    except _CompressedDataError as error:
        raise InputDamagedError(path, line_number, b"".join(tail), error.cause) from error
    if tail:
        last = b"".join(tail)
        yield line_number + 1, last[:-1] if last.endswith(b"\r") else last


class InputDamagedError(Exception):
    """A compressed input file is truncated or corrupt.

    Attributes:
        complete_lines: number of complete lines read before the damage.
        partial_line: the bytes after the last newline before the damage.
    """

    def __init__(self, path: str, complete_lines: int, partial_line: bytes, cause: Exception):
        cut = f" and a partial line {complete_lines + 1}" if partial_line.strip() else ""
        super().__init__(
            f"{path}: the compressed data is damaged ({type(cause).__name__}: {cause}); "
            f"{complete_lines} complete lines{cut} were read before the damage, the rest "
            "of the file was not"
        )
        self.path = path
        self.complete_lines = complete_lines
        self.partial_line = partial_line


class _CompressedDataError(Exception):
    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _decompressed_blocks(path: str) -> Iterator[bytes]:
    new_decompressor = _decompressor_factory(CompressionTypes.detect_compression_type(path))
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
        blocks = iter(lambda: stream.read(READ_BLOCK_BYTES), b"")
        if new_decompressor is None:
            yield from blocks
        else:
            yield from _decompress(blocks, new_decompressor)


def _decompressor_factory(compression: str) -> Callable[[], Any] | None:
    # Beam's CompressedFile (Beam 2.77) returns a truncated gzip stream as if it
    # were complete. Python's decompressors expose `eof`, so they detect it.
    if compression == CompressionTypes.GZIP:
        return lambda: zlib.decompressobj(zlib.MAX_WBITS | 16)
    if compression == CompressionTypes.DEFLATE:
        return zlib.decompressobj
    if compression == CompressionTypes.BZIP2:
        return bz2.BZ2Decompressor
    if compression == CompressionTypes.LZMA:
        return lzma.LZMADecompressor
    if compression == CompressionTypes.ZSTD:
        import zstandard

        # The window limit is Beam's, so any file Beam reads is read here too.
        return zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj
    return None


def _decompression_errors() -> tuple[type[Exception], ...]:
    import zstandard

    return (zlib.error, OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)


def _decompress(blocks: Iterable[bytes], new_decompressor: Callable[[], Any]) -> Iterator[bytes]:
    """Decompress a stream of one or more concatenated members, as `cat a.gz b.gz` makes.

    Raises:
        _CompressedDataError: the data is corrupt, or the last member has no end marker.
    """
    errors = _decompression_errors()
    decompressor = None
    for data in blocks:
        while data:
            if decompressor is None or decompressor.eof:
                decompressor = new_decompressor()
            try:
                output = decompressor.decompress(data)
            except errors as error:
                raise _CompressedDataError(error) from error
            yield output
            data = decompressor.unused_data if decompressor.eof else b""
    if decompressor is not None and not decompressor.eof:
        raise _CompressedDataError(EOFError("the data ends before the end-of-stream marker"))


def parse_record(
    raw: bytes, path: str, line_number: int, options: ReadOptions
) -> Document | Rejection:
    """Turn one raw line into a Document, or a Rejection naming what is wrong with it.

    These repairs are made, and the Document's `repairs` names each one:

    - bytes that are not valid UTF-8 are decoded as Windows-1252, a superset of
      the printable Latin-1 characters;
    - a leading UTF-8 byte order mark is removed;
    - lone surrogates in the text become U+FFFD;
    - an id that is not a non-empty string or integer is replaced by FILE:LINE
      and kept in the metadata.
    """

    def reject(reason: str, detail: str) -> Rejection:
        record = raw.decode("utf-8", errors="backslashreplace")
        return Rejection(reason, detail, path, line_number, record)

    repairs: list[str] = []
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        line = raw.decode("utf-8", errors=CP1252_FALLBACK)
        repairs.append(REPAIR_CP1252)
    if line.startswith("\ufeff"):
        line = line[1:]
        repairs.append(REPAIR_BOM)
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        return reject("invalid_json", f"line is not valid JSON: {error}")
    except RecursionError:
        return reject(REJECT_TOO_DEEP, _too_deep_detail())
    if not isinstance(record, dict):
        return reject("not_an_object", f"line holds a JSON {type(record).__name__}, not an object")
    if _nesting_depth(record) > MAX_NESTING_DEPTH:
        return reject(REJECT_TOO_DEEP, _too_deep_detail())
    if options.text_field not in record or record[options.text_field] is None:
        return reject("missing_text", f"field {options.text_field!r} is missing or null")
    text = record.pop(options.text_field)
    if not isinstance(text, str):
        kind = type(text).__name__
        return reject("text_not_string", f"field {options.text_field!r} is a {kind}, not a string")
    if _has_lone_surrogate(text):
        text = _replace_lone_surrogates(text)
        repairs.append(REPAIR_LONE_SURROGATES)
    given_id = record.pop(options.id_field, None)
    doc_id = _document_id(given_id)
    if doc_id is None:
        doc_id = f"{posixpath.basename(path)}:{line_number}"
        if given_id is not None:
            # The unusable id stays in the metadata, so it is not lost.
            record[options.id_field] = given_id
            repairs.append(REPAIR_INVALID_ID)
    record = _replace_non_finite(record, repairs)
    return Document(doc_id, text, record, path, line_number, repairs)


def _too_deep_detail() -> str:
    return f"line nests arrays or objects more than {MAX_NESTING_DEPTH} levels deep"


def _nesting_depth(value: Any) -> int:
    """Return how many arrays and objects deep `value` goes, stopping past the limit."""
    depth = 0
    level = [value]
    while level and depth <= MAX_NESTING_DEPTH:
        containers = [item for item in level if isinstance(item, dict | list)]
        if not containers:
            break
        depth += 1
        level = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
        ]
    return depth


def _replace_non_finite(metadata: dict[str, Any], repairs: list[str]) -> dict[str, Any]:
    """Replace NaN and infinite numbers in metadata by None, so it serialises as strict JSON."""
    found = False

    def finite(value: Any) -> Any:
        nonlocal found
        if isinstance(value, float) and not math.isfinite(value):
            found = True
            return None
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, list):
            return [finite(item) for item in value]
        return value

    cleaned = finite(metadata)
    if found:
        repairs.append(REPAIR_NON_FINITE)
    return cleaned


def _decode_as_cp1252(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: decode the bytes that are not UTF-8 as Windows-1252.

    The five bytes that Windows-1252 leaves undefined become the C1 control
    characters of the same value, as in Latin-1 and in the WHATWG encoding
    standard's windows-1252.
    """
    if not isinstance(error, UnicodeDecodeError):
        raise error
    invalid = error.object[error.start : error.end]
    return "".join(_cp1252_character(byte) for byte in invalid), error.end


def _cp1252_character(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return chr(byte)


CP1252_FALLBACK = "feedback_annotate.cp1252_fallback"
codecs.register_error(CP1252_FALLBACK, _decode_as_cp1252)


def _document_id(value: Any) -> str | None:
    """Return the id as a string, or None unless it is a non-empty string or an integer."""
    if isinstance(value, str) and value and not _has_lone_surrogate(value):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _replace_lone_surrogates(text: str) -> str:
    # json.loads joins an escaped surrogate pair into one code point, so any
    # surrogate left in the str is a lone half.
    return "".join(REPLACEMENT_CHARACTER if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def metadata_json(metadata: dict[str, Any]) -> str:
    """Serialise metadata as strict JSON; lone surrogates stay as JSON escapes, so nothing is lost.

    Raises:
        ValueError: the metadata holds NaN or an infinity, which `parse_record`
            and `parse_row` replace.
    """
    text = json.dumps(metadata, ensure_ascii=False, sort_keys=True, allow_nan=False)
    if _has_lone_surrogate(text):
        return json.dumps(metadata, ensure_ascii=True, sort_keys=True, allow_nan=False)
    return text


def is_parquet(path: str) -> bool:
    return path.lower().endswith(PARQUET_SUFFIX)


def read_parquet(path: str, options: ReadOptions) -> Iterator[Document | Rejection | InputIssue]:
    """Yield one Document or Rejection per row of a Parquet file, streamed in batches of rows.

    The column `options.text_field` is the text and `options.id_field` the id, and
    every other column becomes metadata. Rows are numbered from 1 in `input_line`.
    A file that is not Parquet or is corrupt ends with an InputIssue with reason
    `DAMAGED_INPUT`, after every row read before the damage.
    """
    row_number = 0
    try:
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as stream:
            for batch in pq.ParquetFile(stream).iter_batches(batch_size=PARQUET_BATCH_ROWS):
                for row in batch.to_pylist():
                    row_number += 1
                    yield parse_row(row, path, row_number, options)
    except (pa.ArrowException, OSError) as error:
        message = (
            f"{path}: the Parquet data is damaged ({type(error).__name__}: {error}); "
            f"{row_number} rows were read before the damage, the rest of the file was not"
        )
        logger.error("%s", message)
        yield InputIssue(DAMAGED_INPUT, message, path, row_number)


def parse_row(
    row: dict[str, Any], path: str, row_number: int, options: ReadOptions
) -> Document | Rejection:
    """Turn one Parquet row into a Document, or a Rejection naming what is wrong with it.

    Text in a binary column is decoded as UTF-8, with the bytes that are not
    valid UTF-8 decoded as Windows-1252 (as `parse_record` repairs lines), and
    ids are checked as in `parse_record`.
    """
    record = {str(key): _json_value(value) for key, value in row.items()}

    def reject(reason: str, detail: str) -> Rejection:
        text = json.dumps(record, ensure_ascii=False, sort_keys=True)
        return Rejection(reason, detail, path, row_number, text)

    repairs: list[str] = []
    text = row.get(options.text_field)
    if text is None:
        return reject("missing_text", f"column {options.text_field!r} is missing or null")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("utf-8", errors=CP1252_FALLBACK)
            repairs.append(REPAIR_CP1252)
    if not isinstance(text, str):
        kind = type(text).__name__
        return reject("text_not_string", f"column {options.text_field!r} is a {kind}, not text")
    record.pop(options.text_field)
    given_id = record.pop(options.id_field, None)
    doc_id = _document_id(given_id)
    if doc_id is None:
        doc_id = f"{posixpath.basename(path)}:{row_number}"
        if given_id is not None:
            record[options.id_field] = given_id
            repairs.append(REPAIR_INVALID_ID)
    record = _replace_non_finite(record, repairs)
    return Document(doc_id, text, record, path, row_number, repairs)


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
