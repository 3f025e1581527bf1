"""Documents that share an id: all kept, counted, and named in one warning."""

import logging

import pyarrow.parquet as pq
import pytest

from pipeline.duplicate_ids import MAX_LISTED_IDS, RepeatedIdsFn, log_duplicate_ids
from pipeline.relabel import relabel
from pipeline.run import run
from pipeline.score_pass import score
from schemas.config import DedupOptions, LabelOptions, RunConfig
from tests.conftest import write_jsonl

SCORERS = ("code_style",)
RECORDS = [
    {"id": 1, "text": "A number id."},
    {"id": "1", "text": "A string id equal to the number id."},
    {"id": "a", "text": "First a."},
    {"id": "a", "text": "Second a."},
    {"id": "a", "text": "Third a."},
    {"id": "b", "text": "The only b."},
    {"text": "No id, so the id becomes in.jsonl:7."},
    {"id": "in.jsonl:7", "text": "An id that equals the generated one."},
    {"id": "c", "text": "An exact copy."},
    {"id": "c", "text": "An exact copy."},
    {"id": "rejected", "text": 5},
]
EXPECTED = {
    "documents": 4,
    "repeated_ids": 3,
    "first_ids": [
        {"id": "1", "documents": 2},
        {"id": "a", "documents": 3},
        {"id": "in.jsonl:7", "documents": 2},
    ],
}


@pytest.fixture(scope="module")
def repeated_run(tmp_path_factory):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    root = tmp_path_factory.mktemp("ids")
    source = write_jsonl(root / "in.jsonl", RECORDS)
    config = RunConfig(str(source), str(root / "out"), SCORERS, dedup=DedupOptions(method="exact"))
    manifest = run(config, runner=FnApiRunner())
    return root, manifest


def test_repeated_ids_keep_every_document(repeated_run):
    root, manifest = repeated_run
    table = pq.read_table(root / "out" / "shards")
    ids, lines = table.column("id").to_pylist(), table.column("input_line").to_pylist()
    rows = sorted(zip(ids, lines, strict=True))
    assert rows == [
        ("1", 1), ("1", 2), ("a", 3), ("a", 4), ("a", 5), ("b", 6),
        ("c", 9), ("in.jsonl:7", 7), ("in.jsonl:7", 8),
    ]  # fmt: skip
    counts = manifest["counts"]
    assert counts["documents_read"] == 11
    assert counts["documents_written"] == 9
    assert counts["documents_rejected"] == 1
    assert counts["documents_duplicates"] == 1
    assert counts["balanced"] is True


def test_repeated_ids_are_counted(repeated_run):
    _, manifest = repeated_run
    assert manifest["duplicate_ids"] == EXPECTED
    assert manifest["all_counts"]["duplicate_ids"] == 4
    # The exact copy with id "c" was removed, so "c" is not repeated among the documents written.
    distinct_ids = manifest["counts"]["documents_written"] - manifest["all_counts"]["duplicate_ids"]
    assert distinct_ids == len({"1", "a", "b", "c", "in.jsonl:7"})


def test_relabel_counts_repeated_ids_once(repeated_run, tmp_path):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    root, _ = repeated_run
    options = LabelOptions(default_percentile=50.0)
    manifest = relabel(str(root / "out"), str(tmp_path / "out"), options, runner=FnApiRunner())
    assert manifest["duplicate_ids"] == EXPECTED
    assert manifest["all_counts"]["duplicate_ids"] == 4


def test_score_pass_counts_repeated_ids(repeated_run, tmp_path):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    root, _ = repeated_run
    config = RunConfig(str(root / "in.jsonl"), str(tmp_path / "scored"), SCORERS)
    manifest = score(config, runner=FnApiRunner())
    # Without --dedup the two documents with id "c" are both scored.
    assert manifest["duplicate_ids"]["repeated_ids"] == 4
    assert manifest["duplicate_ids"]["documents"] == 5
    assert manifest["all_counts"]["duplicate_ids"] == 5
    assert manifest["counts"]["balanced"] is True


def test_unique_ids_give_no_counter(tmp_path):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    source = write_jsonl(tmp_path / "in.jsonl", [{"id": 1, "text": "One."}, {"text": "Two."}])
    manifest = run(RunConfig(str(source), str(tmp_path / "out"), SCORERS), runner=FnApiRunner())
    assert manifest["duplicate_ids"] == {"documents": 0, "repeated_ids": 0, "first_ids": []}
    assert "duplicate_ids" not in manifest["all_counts"]


def test_warning_names_first_ids(repeated_run, caplog):
    _, manifest = repeated_run
    with caplog.at_level(logging.WARNING, logger="pipeline.duplicate_ids"):
        log_duplicate_ids(manifest)
    [record] = caplog.records
    message = record.getMessage()
    assert message.startswith(
        "3 id(s) are shared by more than one document written: '1' (2 documents), "
        "'a' (3 documents), 'in.jsonl:7' (2 documents). "
    )
    assert "counts the 4 document(s) beyond the first with each id" in message


def test_warning_without_repeated_ids_is_silent(caplog):
    manifest = {"duplicate_ids": {"documents": 0, "repeated_ids": 0, "first_ids": []}}
    with caplog.at_level(logging.WARNING, logger="pipeline.duplicate_ids"):
        log_duplicate_ids(manifest)
        log_duplicate_ids({})
    assert caplog.records == []


def test_many_repeated_ids_are_cut_short(caplog):
    combine = RepeatedIdsFn()
    pairs = [(f"id-{number:02d}", 2) for number in range(30)]
    halves = [combine.create_accumulator(), combine.create_accumulator()]
    for index, pair in enumerate(reversed(pairs)):
        halves[index % 2] = combine.add_input(halves[index % 2], pair)
    summary = combine.extract_output(combine.merge_accumulators(halves))
    assert summary["documents"] == 30
    assert summary["repeated_ids"] == 30
    expected = [{"id": name, "documents": 2} for name, _ in pairs[:MAX_LISTED_IDS]]
    assert summary["first_ids"] == expected

    with caplog.at_level(logging.WARNING, logger="pipeline.duplicate_ids"):
        log_duplicate_ids({"duplicate_ids": summary})
    message = caplog.records[0].getMessage()
    named = ", ".join(f"'id-{number:02d}' (2 documents)" for number in range(5))
    assert f"written: {named} and 25 more. " in message
