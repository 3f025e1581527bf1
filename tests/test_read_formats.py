"""Parquet inputs (records, rejections, damaged files) and a run over Parquet and Zstandard."""

import datetime
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline import read
from pipeline.read import (
    DAMAGED_INPUT,
    REPAIR_CP1252,
    REPAIR_INVALID_ID,
    Document,
    InputIssue,
    Rejection,
    list_input_files,
    read_parquet,
    read_records,
)
from pipeline.run import run
from schemas.config import ReadOptions, RunConfig


def write_zstd(path, data: bytes, frames: int = 1) -> bytes:
    """Compress `data` into `frames` consecutive Zstandard frames; returns the file bytes."""
    step = -(-len(data) // frames)
    compressor = zstandard.ZstdCompressor()
    packed = b"".join(compressor.compress(data[i : i + step]) for i in range(0, len(data), step))
    path.write_bytes(packed)
    return packed


def write_parquet(path, rows: list[dict], schema: pa.Schema | None = None) -> None:
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=2)


def test_parquet_rows_become_documents(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "PARQUET_BATCH_ROWS", 2)
    path = tmp_path / "part.parquet"
    rows = [
        {"doc": "d1", "body": "First.", "when": datetime.date(2024, 5, 1), "raw": b"\x00\x01"},
        {"doc": "d2", "body": "Second.", "when": None, "raw": None},
        {"doc": None, "body": "Third.", "when": None, "raw": None},
    ]
    write_parquet(path, rows)
    options = ReadOptions(text_field="body", id_field="doc")
    documents = list(read_records(str(path), options))
    assert [d.id for d in documents] == ["d1", "d2", "part.parquet:3"]
    assert [d.text for d in documents] == ["First.", "Second.", "Third."]
    assert [d.input_line for d in documents] == [1, 2, 3]
    assert documents[0].metadata == {"when": "2024-05-01", "raw": "AAE="}
    assert documents[1].metadata == {"when": None, "raw": None}
    assert documents[2].repairs == []


def test_parquet_invalid_id_is_replaced_and_kept(tmp_path):
    path = tmp_path / "ids.parquet"
    write_parquet(path, [{"id": 1.5, "text": "Hi."}])
    [document] = read_parquet(str(path), ReadOptions())
    assert document.id == "ids.parquet:1"
    assert document.metadata == {"id": 1.5}
    assert document.repairs == [REPAIR_INVALID_ID]


@pytest.mark.parametrize(
    ("rows", "schema", "reason"),
    [
        ([{"text": None}], None, "missing_text"),
        ([{"body": "no text column"}], None, "missing_text"),
        ([{"text": 5}], None, "text_not_string"),
    ],
)
def test_parquet_bad_rows_are_rejected(tmp_path, rows, schema, reason):
    path = tmp_path / "bad.parquet"
    write_parquet(path, rows, schema)
    [result] = read_parquet(str(path), ReadOptions())
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.input_line == 1
    assert isinstance(json.loads(result.record), dict)


def test_parquet_binary_text_is_decoded(tmp_path):
    path = tmp_path / "binary.parquet"
    write_parquet(path, [{"text": "café".encode()}, {"text": b"caf\xe9"}])
    documents = list(read_parquet(str(path), ReadOptions()))
    assert all(isinstance(document, Document) for document in documents)
    assert [document.text for document in documents] == ["café", "café"]
    assert [document.repairs for document in documents] == [[], [REPAIR_CP1252]]


def test_parquet_truncated_file_is_damaged(tmp_path):
    path = tmp_path / "cut.parquet"
    write_parquet(path, [{"text": f"row {i}"} for i in range(10)])
    path.write_bytes(path.read_bytes()[:-20])
    [issue] = read_parquet(str(path), ReadOptions())
    assert isinstance(issue, InputIssue)
    assert issue.reason == DAMAGED_INPUT
    assert issue.input_line == 0
    assert "cut.parquet: the Parquet data is damaged" in issue.detail


def test_directory_lists_parquet_and_zstd(tmp_path):
    (tmp_path / "b.parquet").write_bytes(b"")
    (tmp_path / "a.jsonl.zst").write_bytes(b"")
    assert list_input_files(str(tmp_path)) == [
        str(tmp_path / "a.jsonl.zst"),
        str(tmp_path / "b.parquet"),
    ]


def test_run_reads_parquet_and_zstd(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_parquet(
        inputs / "p.parquet",
        [{"key": 1, "content": "Hello there. Nice day."}, {"key": 2, "content": None}],
    )
    lines = [{"key": "z1", "content": "A line.", "lang": "en"}]
    write_zstd(inputs / "z.jsonl.zst", "".join(json.dumps(r) + "\n" for r in lines).encode())
    out = tmp_path / "out"
    config = RunConfig(
        inputs=str(inputs),
        output_dir=str(out),
        scorers=("toxicity_profanity",),
        read=ReadOptions(text_field="content", id_field="key"),
    )
    manifest = run(config, runner=FnApiRunner())
    assert manifest["counts"]["documents_read"] == 3
    assert manifest["counts"]["documents_written"] == 2
    assert manifest["counts"]["documents_rejected"] == 1
    table = pq.read_table(out / "shards")
    assert sorted(table.column("id").to_pylist()) == ["1", "z1"]
    [rejected] = (out / "rejected").glob("*.jsonl")
    assert json.loads(rejected.read_text())["reason"] == "missing_text"
