"""The phf layout's pure parts: meta typing, blank-segment merging, average score."""

import json

import pyarrow as pa

from pipeline.phf_layout import (
    MergeFieldKinds,
    average_score,
    field_kinds,
    merge_blank_segments,
    meta_fields,
    meta_value,
    phf_columns,
    phf_schema,
)


def test_meta_fields_from_json_types():
    texts = [
        json.dumps({"s": "a", "i": 1, "f": 0.5, "b": True, "l": [1], "m": 1, "n": None, "x": 1}),
        json.dumps({"s": None, "i": 2, "f": 2, "b": False, "o": {"k": 1}, "m": "1", "big": 2**64}),
    ]
    fields = meta_fields(field_kinds(texts), "id")
    assert fields == {
        "id": "string",
        "b": "bool",
        "big": "json",
        "f": "float64",
        "i": "int64",
        "l": "json",
        "m": "json",
        "n": "string",
        "o": "json",
        "s": "string",
        "x": "int64",
    }


def test_merge_field_kinds_unions_workers():
    combine = MergeFieldKinds()
    first = combine.add_input(combine.create_accumulator(), {"a": {"int"}})
    second = combine.add_input(combine.create_accumulator(), {"a": {"float"}, "b": {"null"}})
    merged = combine.merge_accumulators([first, second])
    assert combine.extract_output(merged) == {"a": ["float", "int"], "b": ["null"]}


def test_meta_value_types_and_id():
    fields = {"doc_id": "string", "f": "float64", "j": "json", "s": "string"}
    value = meta_value(json.dumps({"f": 3, "j": {"b": 1, "a": [2]}, "s": "x"}), "d-1", fields)
    assert value == {"doc_id": "d-1", "f": 3.0, "j": '{"a": [2], "b": 1}', "s": "x"}
    assert meta_value("{}", "d-2", fields) == {"doc_id": "d-2", "f": None, "j": None, "s": None}


def test_blank_segments_merge_into_neighbours():
    segments = ["\n", "A. ", "  ", "B.", "\n\n"]
    texts, scores = merge_blank_segments(segments, [None, 0.1, None, 0.3, None])
    assert texts == ["\nA.   ", "B.\n\n"]
    assert scores == [0.1, 0.3]
    assert merge_blank_segments(["  ", "\n"], [None, None]) == ([], [])
    assert merge_blank_segments(["x\n", "\n"], None) == (["x\n\n"], None)


def test_average_score_ignores_missing_scores():
    assert average_score([0.1, None, 0.3]) == 0.2
    assert average_score([None]) is None
    assert average_score(None) is None


def test_phf_columns_for_a_batch():
    fields = {"id": "string", "lang": "string"}
    columns = {
        "id": ["a", "b"],
        "segments": [["Hi. ", "There."], ["x = 1\n"]],
        "score_tox_v1": [[0.2, 0.4], None],
        "metadata": ['{"lang": "en"}', "{}"],
    }
    result = phf_columns(columns, "tox_v1", fields)
    table = pa.Table.from_pydict(result, schema=phf_schema(fields))
    assert table.to_pylist() == [
        {
            "texts": ["Hi. ", "There."],
            "meta": {"id": "a", "lang": "en"},
            "scores": [0.2, 0.4],
            "avg_score": 0.30000000000000004,
            "num_sents": 2,
        },
        {
            "texts": ["x = 1\n"],
            "meta": {"id": "b", "lang": None},
            "scores": None,
            "avg_score": None,
            "num_sents": 1,
        },
    ]
