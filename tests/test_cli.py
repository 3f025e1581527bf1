"""`annotate` through its Typer app: help, usage errors, and a real local run."""

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import write_jsonl

runner = CliRunner()


def test_help_lists_commands_and_exit_codes():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "run" in result.output
    assert "2 usage error" in result.output


def test_run_help_explains_options():
    result = runner.invoke(app, ["run", "--help"], terminal_width=200)
    assert result.exit_code == 0
    options = ("--scorers", "--percentile", "--toxicity-checkpoint", "--toxicity-hf-dir")
    options += ("--threshold", "--preset", "--percentile-weight", "--layout", "--token-mode")
    for option in options:
        assert option in result.output
    assert "passed to Apache Beam" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--percentile", "toxicity_profanity=101"], "between 0 and 100"),
        (["--percentile", "toxicity_profanity"], "expects NAME=VALUE"),
        (["--scorers", "nonsense"], "unknown scorer 'nonsense'"),
        (["--kind", "poetry"], "--kind must be"),
        (["--not-an-option", "1"], "unknown option --not-an-option"),
        (["--threshold", "toxicity_profanity=low"], "'low' is not a number"),
        (["--threshold", "nope=0.1"], "names scorer 'nope', which is not in this run"),
        (["--percentile-weight", "words"], "Invalid value for '--percentile-weight'"),
        (["--preset", "other"], "Invalid value for '--preset'"),
        (["--drop-token-fraction", "1.5"], "Invalid value for '--drop-token-fraction'"),
        (
            ["--percentile", "toxicity_profanity=5", "--threshold", "toxicity_profanity=0.1"],
            "both a percentile and a fixed threshold",
        ),
        (["--good-token", "<|x|>", "--bad-token", "<|x|>"], "is given twice"),
        (["--scorers", "toxicity_profanity,code_style", "--layout", "phf"], "pass --scorer"),
    ],
)
def test_usage_errors_exit_2(tmp_path, extra, message):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "Hello."}])
    args = ["run", str(source), str(tmp_path / "out"), "--scorers", "toxicity_profanity"]
    result = runner.invoke(app, args + extra)
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_missing_input_exits_2(tmp_path):
    result = runner.invoke(
        app, ["run", str(tmp_path / "none.jsonl"), str(tmp_path / "out"), "--scorers", "code_style"]
    )
    assert result.exit_code == 2
    assert "no input files match" in result.output


def test_run_directrunner_writes_output(tmp_path):
    records = [
        {"id": "p", "text": "Hello there. You are kind.", "lang": "en"},
        {"id": "c", "text": "import os\nx=1\n", "lang": "python"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    args = ["run", "--runner", "DirectRunner", str(source), str(out)]
    args += ["--scorers", "toxicity_profanity,code_style", "--percentile", "code_style=50"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"Output: {out}" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["documents_written"] == 2
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert thresholds["code_style_pycodestyle_v1"]["percentile"] == 50.0


def test_rerun_with_other_options_is_refused(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "Hello."}])
    base = ["run", str(source), str(tmp_path / "out"), "--scorers", "toxicity_profanity"]
    assert runner.invoke(app, base).exit_code == 0
    result = runner.invoke(app, base + ["--default-percentile", "10"])
    assert result.exit_code == 2
    assert "--overwrite" in result.output
    assert runner.invoke(app, base + ["--default-percentile", "10", "--overwrite"]).exit_code == 0


def test_label_help_lists_shared_options():
    result = runner.invoke(app, ["label", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in (
        "--percentile",
        "--threshold",
        "--preset",
        "--layout",
        "--scorer",
        "--overwrite",
    ):
        assert option in result.output
    assert "without loading any model" in " ".join(result.output.split())


def test_label_relabels_a_run(tmp_path):
    records = [
        {"id": "p", "text": "Hello there. You are kind. Go away, idiot.", "lang": "en"},
        {"id": "c", "text": "import os\nx=1\n", "lang": "python"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    first = tmp_path / "first"
    args = ["run", str(source), str(first), "--scorers", "toxicity_profanity,code_style"]
    assert runner.invoke(app, args).exit_code == 0
    second = tmp_path / "second"
    args = ["label", str(first), str(second), "--threshold", "toxicity_profanity=0.5"]
    args += ["--layout", "phf", "--scorer", "toxicity_profanity"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 documents in the phf layout for toxicity_profanity_v1" in result.output
    assert "toxicity_profanity_v1: fixed -> threshold 0.5" in result.output
    thresholds = json.loads((second / "thresholds.json").read_text())
    assert thresholds["toxicity_profanity_v1"]["threshold"] == 0.5
    assert thresholds["toxicity_profanity_v1"]["percentile"] is None


def test_label_missing_run_exits_2(tmp_path):
    result = runner.invoke(app, ["label", str(tmp_path / "none"), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "has no scored/*.parquet or shards/*.parquet" in result.output
