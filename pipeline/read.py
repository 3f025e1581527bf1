"""Read JSON Lines documents, one record per line, through Beam's FileSystems.

Every line read ends as exactly one `Document` or one `Rejection`, so the
accounting of a run can balance: documents read = written + rejected.
"""

from __future__ import annotations

import json
import posixpath
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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
)

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
            ".jsonl.zst), a glob, or a directory holding such files"
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
    # json.loads joins an escaped surrogate pair into one code point, so any
    # surrogate left in the str is a lone half.
    return "".join(REPLACEMENT_CHARACTER if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def metadata_json(metadata: dict[str, Any]) -> str:
    """Serialise metadata as JSON; lone surrogates stay as JSON escapes, so nothing is lost."""
    text = json.dumps(metadata, ensure_ascii=False, sort_keys=True)
    if _has_lone_surrogate(text):
        return json.dumps(metadata, ensure_ascii=True, sort_keys=True)
    return text
