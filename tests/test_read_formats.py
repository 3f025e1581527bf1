"""Zstandard JSON Lines and Parquet inputs: records, rejections, damaged files, a whole run."""

import datetime
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline import read
from pipeline.read import (
    Document,
    InputDamagedError,
    ParquetDamagedError,
    Rejection,
    list_input_files,
    read_lines,
    read_parquet,
)
from pipeline.run import run
from schemas.config import ReadOptions, RunConfig

LINES = [b'{"id": "a", "text": "one"}', b'{"id": "b", "text": "two"}', b'{"text": "three"}']


def write_zstd(path, data: bytes, frames: int = 1) -> bytes:
    """Compress `data` into `frames` consecutive Zstandard frames; returns the file bytes."""
    step = -(-len(data) // frames)
    compressor = zstandard.ZstdCompressor()
    packed = b"".join(compressor.compress(data[i : i + step]) for i in range(0, len(data), step))
    path.write_bytes(packed)
    return packed


def test_zstd_lines_across_frames(tmp_path):
    path = tmp_path / "a.jsonl.zst"
    write_zstd(path, b"\r\n".join(LINES), frames=3)
    assert list(read_lines(str(path))) == [(1, LINES[0]), (2, LINES[1]), (3, LINES[2])]


def test_zstd_truncated_file_is_damaged(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "READ_CHUNK_BYTES", 64)
    lines = [b'{"text": "line %d, with padding to fill several chunks"}' % i for i in range(400)]
    path = tmp_path / "cut.jsonl.zst"
    packed = write_zstd(path, b"\n".join(lines) + b"\n", frames=4)
    path.write_bytes(packed[: len(packed) - 10])
    seen = []
    with pytest.raises(InputDamagedError, match="cut.jsonl.zst is damaged after line") as caught:
        for number, line in read_lines(str(path)):
            seen.append((number, line))
    assert len(seen) > 0
    assert seen == [(i + 1, lines[i]) for i in range(len(seen))]
    assert caught.value.last_good_line == len(seen)
    assert isinstance(caught.value.__cause__, EOFError)


def test_zstd_garbage_is_damaged(tmp_path):
    path = tmp_path / "bad.jsonl.zst"
    path.write_bytes(b"this is not zstandard data")
    with pytest.raises(InputDamagedError) as caught:
        list(read_lines(str(path)))
    assert caught.value.last_good_line == 0


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
    documents = list(read_parquet(str(path), options))
    assert [d.id for d in documents] == ["d1", "d2", "part.parquet:3"]
    assert [d.text for d in documents] == ["First.", "Second.", "Third."]
    assert [d.input_line for d in documents] == [1, 2, 3]
    assert documents[0].metadata == {"when": "2024-05-01", "raw": "AAE="}
    assert documents[1].metadata == {"when": None, "raw": None}


@pytest.mark.parametrize(
    ("rows", "schema", "reason"),
    [
        ([{"text": None}], None, "missing_text"),
        ([{"body": "no text column"}], None, "missing_text"),
        ([{"text": 5}], None, "text_not_string"),
        ([{"text": b"caf\xe9"}], None, "invalid_utf8"),
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
    write_parquet(path, [{"text": "café".encode()}])
    [document] = read_parquet(str(path), ReadOptions())
    assert isinstance(document, Document)
    assert document.text == "café"


def test_parquet_truncated_file_is_damaged(tmp_path):
    path = tmp_path / "cut.parquet"
    write_parquet(path, [{"text": f"row {i}"} for i in range(10)])
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ParquetDamagedError, match="cut.parquet is damaged after row 0") as caught:
        list(read_parquet(str(path), ReadOptions()))
    assert caught.value.last_good_line == 0


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
