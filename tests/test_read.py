import gzip
import json

import pytest

from pipeline.read import Document, Rejection, list_input_files, parse_record, read_lines
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
        (b'{"text": "caf\xe9"}', "invalid_utf8"),
    ],
)
def test_bad_lines_are_rejected_with_reason(line, reason):
    result = parse(line)
    assert isinstance(result, Rejection)
    assert result.reason == reason
    assert result.input_line == 7


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
