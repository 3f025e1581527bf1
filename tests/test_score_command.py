"""`annotate score`: the scoring pass alone, and how output directories are claimed."""

import json

import pyarrow.parquet as pq
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.shards import shard_stem
from schemas.output import scored_schema
from tests.conftest import sample_records, write_jsonl

runner = CliRunner()

SCORERS = "toxicity_profanity,code_style"
NAMES = ["toxicity_profanity_v1", "code_style_pycodestyle_v1"]


@pytest.fixture(scope="module")
def scored_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    records = sample_records(("benign", "code"), 3)
    records.append({"id": "broken", "text": 7})
    source = write_jsonl(root / "in.jsonl", records)
    out = root / "scored"
    args = ["score", str(source), str(out), "--scorers", SCORERS, "--docs-per-shard", "4"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return source, out, args, result.output


def test_score_writes_scored_shards_only(scored_dir):
    source, out, _, output = scored_dir
    names = sorted(path.name for path in (out / "scored").glob("*.parquet"))
    stem = shard_stem(str(source))
    assert names == [f"{stem}-00000.parquet", f"{stem}-00001.parquet"]
    for path in (out / "scored").glob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == scored_schema(NAMES)
    assert not (out / "shards").exists()
    assert not (out / "thresholds.json").exists()
    assert "scored/*.parquet   6 documents" in output


def test_score_manifest_balances(scored_dir):
    _, out, _, _ = scored_dir
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["command"] == "score"
    assert manifest["counts"]["documents_read"] == 7
    assert manifest["counts"]["documents_scored"] == 6
    assert manifest["counts"]["documents_rejected"] == 1
    assert manifest["counts"]["balanced"] is True
    table = pq.read_table(out / "scored")
    assert table.num_rows == 6
    assert len(list((out / "rejected").glob("*.jsonl"))) == 1


def test_score_rerun_skips_complete_shards(scored_dir):
    _, out, args, _ = scored_dir
    before = {p: p.stat().st_mtime_ns for p in (out / "scored").glob("*.parquet")}
    leftover = out / "scored" / f".leftover.parquet.{'0123' * 8}.tmp"
    leftover.write_bytes(b"partial")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    after = {p: p.stat().st_mtime_ns for p in (out / "scored").glob("*.parquet")}
    assert after == before
    assert not leftover.exists()


def test_run_into_score_dir_is_refused(scored_dir):
    source, out, _, _ = scored_dir
    result = runner.invoke(app, ["run", str(source), str(out), "--scorers", SCORERS])
    assert result.exit_code == 2
    assert "--overwrite" in result.output


def test_unrecorded_output_is_refused(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "Hello."}])
    (tmp_path / "out" / "shards").mkdir(parents=True)
    (tmp_path / "out" / "shards" / "old.parquet").write_bytes(b"")
    args = ["run", str(source), str(tmp_path / "out"), "--scorers", "toxicity_profanity"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "contains shards but no record of the run" in result.output
    assert runner.invoke(app, args + ["--overwrite"]).exit_code == 0
    assert not (tmp_path / "out" / "shards" / "old.parquet").exists()


def test_beam_options_pass_through(tmp_path, monkeypatch):
    import pipeline.run

    received = []

    def record_options(args):
        received.append(list(args))
        return PipelineOptions(args)

    monkeypatch.setattr(pipeline.run, "PipelineOptions", record_options)
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "Hello."}])
    args = ["score", str(source), str(tmp_path / "out"), "--scorers", "toxicity_profanity"]
    result = runner.invoke(app, args + ["--job_name", "annotate-test", "--max_num_workers", "3"])
    assert result.exit_code == 0, result.output
    assert received == [
        ["--runner", "DirectRunner", "--job_name", "annotate-test", "--max_num_workers", "3"]
    ]


def test_score_then_label_equals_run(scored_dir, tmp_path):
    source, scored, args, _ = scored_dir
    labelled = tmp_path / "labelled"
    result = runner.invoke(app, ["label", str(scored), str(labelled)])
    assert result.exit_code == 0, result.output
    direct = tmp_path / "direct"
    run_args = ["run", str(source), str(direct), "--scorers", SCORERS, "--docs-per-shard", "4"]
    result = runner.invoke(app, run_args + ["--no-report"])
    assert result.exit_code == 0, result.output

    for name in ("thresholds.json", "special_tokens.json"):
        assert (labelled / name).read_text() == (direct / name).read_text(), name
    shards = sorted(path.name for path in (direct / "shards").glob("*.parquet"))
    assert sorted(path.name for path in (labelled / "shards").glob("*.parquet")) == shards
    for name in shards:
        expected = pq.read_table(direct / "shards" / name).to_pylist()
        assert pq.read_table(labelled / "shards" / name).to_pylist() == expected, name
    counts = json.loads((labelled / "manifest.json").read_text())["counts"]
    assert counts == json.loads((direct / "manifest.json").read_text())["counts"]
