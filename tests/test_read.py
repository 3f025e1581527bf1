import bz2
import gzip
import json
import lzma

import pytest
import zstandard

from pipeline import read
from pipeline.read import (
    Document,
    InputDamagedError,
    InputIssue,
    Rejection,
    list_input_files,
    parse_record,
    read_lines,
    read_records,
)
from schemas.config import ReadOptions


def parse(line: bytes, options: ReadOptions | None = None):
    return parse_record(line, "/data/part.jsonl", 7, options or ReadOptions())


def test_record_fields_become_metadata():
    doc = parse(b'{"id": "a1", "text": "Hi.", "lang": "en", "score": 3}')
    assert isinstance(doc, Document)
    assert doc.id == "a1"
    assert doc.text == "Hi."
    assert doc.metadata == {"lang": "en", "score": 3}
    assert (doc.input_file, doc.input_line) == ("/data/part.jsonl", 7)


def test_missing_id_gets_file_and_line():
    doc = parse(b'{"text": "Hi."}')
    assert doc.id == "part.jsonl:7"


@pytest.mark.parametrize("value", [[1], 1.5, "", True, {"a": 1}, "x\udc00"])
def test_unusable_id_is_replaced_and_kept(value):
    doc = parse(json.dumps({"id": value, "text": "Hi."}).encode())
    assert doc.id == "part.jsonl:7"
    assert doc.metadata == {"id": value}
    assert doc.repairs == ["invalid_id_replaced"]


def test_null_id_is_missing():
    doc = parse(b'{"id": null, "text": "Hi."}')
    assert (doc.id, doc.metadata, doc.repairs) == ("part.jsonl:7", {}, [])


def test_custom_text_and_id_fields():
    doc = parse(b'{"key": 12, "body": "Hi."}', ReadOptions(text_field="body", id_field="key"))
    assert (doc.id, doc.text, doc.metadata) == ("12", "Hi.", {})


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json", "invalid_json"),
        (b'["text"]', "not_an_object"),
        (b'{"id": "x"}', "missing_text"),
        (b'{"text": null}', "missing_text"),
        (b'{"text": 5}', "text_not_string"),
        (b'{"text": ["a"]}', "text_not_string"),
        (b'{"text": "a"', "invalid_json"),
    ],
)
def test_bad_lines_are_rejected_with_reason(line, reason):
    result = parse(line)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.input_line == 7


def test_valid_utf8_needs_no_repair():
    doc = parse('{"text": "café €"}'.encode())
    assert doc.text == "café €"
    assert doc.repairs == []


def test_invalid_utf8_bytes_decoded_as_cp1252():
    doc = parse(b'{"text": "caf\xe9 \x80 \x81 \xe2\x82\xac", "note": "na\xefve"}')
    assert doc.text == "café € \x81 €"
    assert doc.metadata == {"note": "naïve"}
    assert doc.repairs == ["invalid_utf8_decoded_as_cp1252"]


def test_byte_order_mark_removed():
    doc = parse(b'\xef\xbb\xbf{"text": "Hi."}')
    assert doc.text == "Hi."
    assert doc.repairs == ["utf8_bom_removed"]


def test_lone_surrogate_is_replaced_and_counted():
    doc = parse(json.dumps({"text": "half \ud83d here."}).encode())
    assert doc.text == "half \ufffd here."
    assert doc.repairs == ["lone_surrogates_replaced"]


def test_read_lines_plain_and_gzip(tmp_path):
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(b'{"text": "one"}\r\n{"text": "two"}\n')
    packed = tmp_path / "b.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    expected = [(1, b'{"text": "one"}'), (2, b'{"text": "two"}')]
    assert list(read_lines(str(plain))) == expected
    assert list(read_lines(str(packed))) == expected


@pytest.mark.parametrize(
    ("suffix", "compress"),
    [
        (".jsonl.gz", gzip.compress),
        (".jsonl.bz2", bz2.compress),
        (".jsonl.xz", lzma.compress),
        (".jsonl.zst", lambda data: zstandard.ZstdCompressor().compress(data)),
    ],
)
def test_read_lines_concatenated_members(tmp_path, suffix, compress):
    path = tmp_path / f"a{suffix}"
    path.write_bytes(compress(b'{"text": "one"}\n{"te') + compress(b'xt": "two"}\n'))
    assert list(read_lines(str(path))) == [(1, b'{"text": "one"}'), (2, b'{"text": "two"}')]


def test_read_lines_last_line_without_newline(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "two"}')
    assert list(read_lines(str(path))) == [(1, b'{"text": "one"}'), (2, b'{"text": "two"}')]


def test_read_lines_across_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "READ_BLOCK_BYTES", 3)
    lines = [b'{"text": "%d"}' % i for i in range(50)]
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b"\r\n".join(lines) + b"\r\n"))
    assert list(read_lines(str(path))) == list(enumerate(lines, start=1))


def test_truncated_gzip_yields_lines_then_raises(tmp_path, monkeypatch):
    monkeypatch.setattr(read, "READ_BLOCK_BYTES", 64)
    data = b"".join(b'{"text": "line %d"}\n' % i for i in range(2000))
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(data)[:-1000])
    seen = []
    with pytest.raises(InputDamagedError) as caught:
        for item in read_lines(str(path)):
            seen.append(item)
    error = caught.value
    assert error.complete_lines == len(seen)
    assert len(seen) > 100
    assert seen == [(n, b'{"text": "line %d"}' % (n - 1)) for n in range(1, len(seen) + 1)]
    assert data.startswith(b"\n".join(line for _, line in seen) + b"\n" + error.partial_line)
    assert "ends before the end-of-stream marker" in str(error)


def test_gzip_without_trailer_is_damaged(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "one"}\n')[:-8])
    with pytest.raises(InputDamagedError) as caught:
        list(read_lines(str(path)))
    assert caught.value.complete_lines == 1
    assert caught.value.partial_line == b""


def test_read_records_skips_blank_lines(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b'{"text": "one"}\n\n  \t\r\n{"text": "two"}\n')
    items = list(read_records(str(path), ReadOptions()))
    assert [type(item).__name__ for item in items] == [
        "Document", "InputIssue", "InputIssue", "Document"
    ]  # fmt: skip
    assert [(item.reason, item.input_line) for item in items[1:3]] == [
        ("blank_lines_skipped", 2),
        ("blank_lines_skipped", 3),
    ]
    assert items[3].input_line == 4


def test_read_records_rejects_cut_line(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "one"}\n{"text": "tw')[:-8])
    items = list(read_records(str(path), ReadOptions()))
    assert isinstance(items[0], Document)
    assert isinstance(items[1], Rejection)
    assert (items[1].reason, items[1].input_line, items[1].record) == (
        "truncated_line", 2, '{"text": "tw'
    )  # fmt: skip
    assert isinstance(items[2], InputIssue)
    assert (items[2].reason, items[2].input_line) == ("input_files_damaged", 2)


def test_list_input_files_directory_and_missing(tmp_path):
    (tmp_path / "b.jsonl").write_text("")
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(b""))
    (tmp_path / "notes.txt").write_text("")
    assert list_input_files(str(tmp_path)) == [
        str(tmp_path / "a.jsonl.gz"),
        str(tmp_path / "b.jsonl"),
    ]
    with pytest.raises(FileNotFoundError, match="no input files match"):
        list_input_files(str(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("levels", [read.MAX_NESTING_DEPTH, 990, 5000])
def test_deeply_nested_line_is_rejected(levels):
    line = b'{"id": "n", "text": "deep.", "m": ' + b"[" * levels + b"]" * levels + b"}"
    result = parse(line)
    assert isinstance(result, Rejection)
    assert result.reason == "too_deeply_nested"


def test_nesting_at_the_limit_is_read():
    levels = read.MAX_NESTING_DEPTH - 1
    line = b'{"text": "deep.", "m": ' + b"[" * levels + b"]" * levels + b"}"
    doc = parse(line)
    assert isinstance(doc, Document)
    assert read.metadata_json(doc.metadata) == '{"m": ' + "[" * levels + "]" * levels + "}"


def test_non_finite_numbers_in_metadata_become_null():
    doc = parse(b'{"id": NaN, "text": "Hi.", "a": Infinity, "b": [1.5, -Infinity], "c": 2}')
    assert doc.metadata == {"id": None, "a": None, "b": [1.5, None], "c": 2}
    assert doc.repairs == ["invalid_id_replaced", "non_finite_numbers_replaced"]
    assert read.metadata_json(doc.metadata) == '{"a": null, "b": [1.5, null], "c": 2, "id": null}'


def test_finite_metadata_needs_no_repair():
    assert parse(b'{"text": "Hi.", "a": 1e308}').repairs == []


def test_metadata_json_refuses_non_finite_numbers():
    with pytest.raises(ValueError):
        read.metadata_json({"a": float("nan")})


def test_directory_reads_every_supported_suffix_and_warns_of_the_rest(tmp_path, caplog):
    names = ["a.jsonl.bz2", "b.jsonl.xz", "c.jsonl.lzma", "d.jsonl.deflate", "e.parquet"]
    names += ["f.ndjson", "g.json.zst", "h.gz", ".hidden.jsonl"]
    for name in names + ["notes.txt", "data.csv", "z.md", "zz.tsv"]:
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.jsonl").write_bytes(b"")
    with caplog.at_level("WARNING", logger="pipeline.read"):
        assert list_input_files(str(tmp_path)) == sorted(str(tmp_path / n) for n in names)
    [record] = caplog.records
    assert record.getMessage() == (
        f"{tmp_path}: skipped 4 file(s) whose names end in none of .jsonl .json .ndjson "
        ".parquet .gz .bz2 .xz .lzma .zst .zstd .deflate (data.csv, notes.txt, z.md, ...); "
        "subdirectories (1 here) are not read; pass a glob to read files in them"
    )


def test_directory_of_input_files_only_logs_nothing(tmp_path, caplog):
    (tmp_path / "a.jsonl").write_bytes(b"")
    with caplog.at_level("WARNING", logger="pipeline.read"):
        assert list_input_files(str(tmp_path)) == [str(tmp_path / "a.jsonl")]
    assert caplog.records == []
