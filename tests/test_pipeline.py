"""The real Beam pipeline on a handful of real documents from the bundled sample."""

import json

import pyarrow.parquet as pq
import pytest

from pipeline.label import restore_text
from pipeline.run import run
from schemas.config import RunConfig
from schemas.output import labelled_schema, score_column
from scorers.testing import write_detoxify_checkpoint
from tests.conftest import sample_records, write_jsonl

SCORERS = ("toxicity", "toxicity_profanity", "pii", "code_style")
NAMES = [
    "toxicity_detoxify_v1",
    "toxicity_profanity_v1",
    "pii_presidio_v1",
    "code_style_pycodestyle_v1",
]
TOKENS = ["<|good|>", "<|bad|>"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    root = tmp_path_factory.mktemp("run")
    records = sample_records(("benign", "code", "mixed", "offensive", "prose_pii"), 3)
    records.append({"id": "empty-1", "text": "", "lang": "en"})
    records.append({"id": "blank-1", "text": "   \n\t  ", "lang": "en"})
    records.append({"id": "runon-1", "text": " ".join(["lorem"] * 600), "lang": "en"})
    source = write_jsonl(root / "in.jsonl", records)
    checkpoint, hf_dir = write_detoxify_checkpoint(root / "model")
    config = RunConfig(
        inputs=str(source),
        output_dir=str(root / "out"),
        scorers=SCORERS,
        scorer_options={"toxicity": {"checkpoint": str(checkpoint), "hf_dir": str(hf_dir)}},
    )
    manifest = run(config, runner=FnApiRunner())
    table = pq.read_table(root / "out" / "shards")
    return records, manifest, table, root / "out"


def test_shards_have_declared_schema(finished_run):
    _, _, table, out = finished_run
    for path in (out / "shards").glob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == labelled_schema(NAMES)


def test_removing_tokens_gives_back_input(finished_run):
    records, _, table, _ = finished_run
    by_id = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    assert len(by_id) == len(records)
    for record in records:
        assert restore_text(by_id[record["id"]], TOKENS) == record["text"], record["id"]


def test_one_token_per_non_blank_segment(finished_run):
    _, _, table, _ = finished_run
    for row in table.to_pylist():
        tokens = row["text"].count("<|good|>") + row["text"].count("<|bad|>")
        non_blank = sum(1 for segment in row["segments"] if segment.strip())
        assert tokens == non_blank, row["id"]
        assert "".join(row["segments"]) == restore_text(row["text"], TOKENS)
        assert row["num_segments"] == len(row["segments"])


def test_scores_only_for_applicable_kind(finished_run):
    _, _, table, _ = finished_run
    for row in table.to_pylist():
        prose_columns = [score_column(name) for name in NAMES[:3]]
        code_column = score_column("code_style_pycodestyle_v1")
        if row["kind"] == "code":
            assert all(row[column] is None for column in prose_columns)
            assert len(row[code_column]) == row["num_segments"]
        else:
            assert all(len(row[column]) == row["num_segments"] for column in prose_columns)
            assert row[code_column] is None


def test_offsets_slice_segments(finished_run):
    records, _, table, _ = finished_run
    texts = {r["id"]: r["text"] for r in records}
    for row in table.to_pylist():
        text = texts[row["id"]]
        pairs = zip(row["segment_starts"], row["segment_ends"], strict=True)
        assert [text[start:end] for start, end in pairs] == row["segments"]


def test_metadata_kept(finished_run):
    records, _, table, _ = finished_run
    ids = table.column("id").to_pylist()
    metadata = dict(zip(ids, table.column("metadata").to_pylist(), strict=True))
    for record in records:
        expected = {k: v for k, v in record.items() if k not in ("id", "text")}
        assert json.loads(metadata[record["id"]]) == expected


def test_manifest_and_thresholds(finished_run):
    records, manifest, table, out = finished_run
    counts = manifest["counts"]
    assert counts["documents_read"] == len(records)
    assert counts["documents_written"] == len(records)
    assert counts["balanced"] is True
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert sorted(thresholds) == sorted(NAMES)
    labels = [label for row in table.column("labels").to_pylist() for label in row]
    assert counts["segments_good"] == labels.count("good")
    assert counts["segments_bad"] == labels.count("bad")
    for name in NAMES:
        scores = [s for row in table.column(score_column(name)).to_pylist() if row for s in row]
        scores = [s for s in scores if s is not None]
        entry = thresholds[name]
        assert entry["percentile"] == 5.0
        assert entry["num_segments"] == len(scores)
        good = sum(1 for s in scores if s <= entry["threshold"])
        assert entry["fraction_good"] == good / len(scores)


def test_profanity_threshold_is_fifth_percentile(finished_run):
    _, _, table, out = finished_run
    name = "toxicity_profanity_v1"
    rows = table.column(score_column(name)).to_pylist()
    scores = sorted(s for row in rows if row for s in row if s is not None)
    threshold = json.loads((out / "thresholds.json").read_text())[name]["threshold"]
    rank = sum(1 for s in scores if s <= threshold) / len(scores)
    assert 0.04 <= rank <= 0.07


def test_scorer_counts_reach_manifest(finished_run):
    _, manifest, _, _ = finished_run
    assert manifest["all_counts"]["toxicity_detoxify_v1_truncated_segments"] == 1


def test_input_paths_stay_out_of_job_graph(tmp_path):
    import apache_beam as beam

    from pipeline.run import build_pipeline, build_scorers

    paths = [str(tmp_path / f"input-{index:05d}.jsonl") for index in range(2000)]
    config = RunConfig(
        inputs=str(tmp_path / "*.jsonl"),
        output_dir=str(tmp_path / "out"),
        scorers=("toxicity_profanity",),
    )
    pipeline = beam.Pipeline()

    build_pipeline(pipeline, config, build_scorers(config), paths)

    graph = pipeline.to_runner_api().SerializeToString()
    assert b"input-01999.jsonl" not in graph
    listing = tmp_path / "out" / "_progress" / "input_files.json"
    assert json.loads(listing.read_text(encoding="utf-8")) == paths
