"""`annotate` through its Typer app: help, usage errors, and a real local run."""

import json
import os

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.app import UsageError
from pipeline.shards import shard_name
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
        (["--percentile", "toxicity_profanity=-1"], "between 0 and 100"),
        (["--default-percentile", "100.5"], "--default-percentile 100.5: P is a percentage"),
        (["--default-percentile", "-3"], "--default-percentile -3: P is a percentage"),
        (["--percentile", "toxicity_profanity"], "expects NAME=VALUE"),
        (["--percentile", "code_style=5"], "--percentile names scorer 'code_style'"),
        (["--scorers", "nonsense"], "--scorers: unknown scorer 'nonsense'"),
        (["--scorers", "toxicity_profanity,toxicity_profanity"], "--scorers: a scorer is listed"),
        (["--kind", "poetry"], "--kind must be"),
        (["--not-an-option", "1"], "unknown option --not-an-option"),
        (["OUT2"], "unexpected extra argument 'OUT2'; 'annotate run' takes the arguments"),
        (["--project", "p", "extra"], "unexpected extra argument 'extra'"),
        (["-q"], "unknown option -q; put -q/-v before the command: annotate -q run ..."),
        (["-vv"], "unknown option -vv; put -q/-v before the command: annotate -vv run ..."),
        (["--dedup", "fuzzy"], "--dedup must be none, exact or minhash"),
        (["--dedup", "minhash", "--dedup-threshold", "0"], "--dedup-threshold must be above 0"),
        (
            ["--dedup", "minhash", "--dedup-threshold", "0.99", "--dedup-num-perm", "2"],
            "use more permutations or a lower threshold",
        ),
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
    assert result.output.count("\n") == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("inputs", "output", "message"),
    [
        ("data", "data/out", "OUTPUT_DIR {out} is inside the input directory {inputs}"),
        ("data/", "data", "OUTPUT_DIR {out} is the input directory {inputs}"),
        ("data/a.jsonl", "data/a.jsonl", "OUTPUT_DIR {out} is the input file"),
        ("data/a.jsonl", "data", "the input file data/a.jsonl is inside OUTPUT_DIR data"),
        ("data/**", "data/out", "the input pattern {inputs} matches files that the run writes"),
        ("data/*.json", "data", "the input pattern {inputs} matches files that the run writes"),
        ("data/a.jsonl", "data/a.jsonl/sub", "OUTPUT_DIR {out} is below {tmp}/data/a.jsonl,"),
        ("data/a.jsonl", "data/b.json/x/y", "OUTPUT_DIR {out} is below {tmp}/data/b.json, which"),
    ],
)
def test_output_overlapping_input_exits_2(tmp_path, monkeypatch, inputs, output, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"text": "Hello."}])
    (tmp_path / "data" / "b.json").write_text('{"text": "Hi."}\n')
    result = runner.invoke(app, ["run", inputs, output, "--scorers", "code_style"])
    assert result.exit_code == 2, result.output
    tmp = os.path.realpath(tmp_path)
    assert message.format(out=output, inputs=inputs, tmp=tmp) in result.output
    assert result.output.count("\n") == 1
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a.jsonl", "b.json"]


def test_output_beside_input_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    write_jsonl(tmp_path / "data" / "a.jsonl", [{"text": "Hello."}])
    result = runner.invoke(app, ["run", "data/*.jsonl", "data/out", "--scorers", "code_style"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "out" / "manifest.json").exists()


def test_missing_input_exits_2(tmp_path):
    result = runner.invoke(
        app, ["run", str(tmp_path / "none.jsonl"), str(tmp_path / "out"), "--scorers", "code_style"]
    )
    assert result.exit_code == 2
    assert "INPUTS: no input files match" in result.output
    assert result.output.count("\n") == 1
    assert not (tmp_path / "out").exists()


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


def test_run_exact_dedup_reports_duplicates(tmp_path):
    records = [{"id": "a", "text": "Thanks!"}, {"id": "b", "text": "  thanks!"}]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    args = ["run", str(source), str(out), "--scorers", "code_style", "--dedup", "exact"]
    result = runner.invoke(app, args + ["--write-duplicates"])
    assert result.exit_code == 0, result.output
    assert "2 read, 0 rejected, 1 duplicates removed" in result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["dedup"]["method"] == "exact"
    assert manifest["config"]["dedup"]["write_duplicates"] is True
    [written] = (out / "duplicates").glob("*.jsonl")
    assert json.loads(written.read_text())["duplicate_of"]["id"] == "a"


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
        "--no-refine",
    ):
        assert option in result.output
    assert "No model is loaded, except to refine" in " ".join(result.output.split())


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


@pytest.mark.parametrize("command", ["score", "label"])
def test_score_and_label_reject_extra_arguments(tmp_path, command):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "Hello."}])
    args = [command, str(source), str(tmp_path / "out"), "OUT2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output == (
        f"annotate: error: unexpected extra argument 'OUT2'; 'annotate {command}' takes the "
        f"arguments shown by 'annotate {command} --help'\n"
    )
    assert not (tmp_path / "out").exists()


def test_vv_shows_debug_lines_of_the_pipeline(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "x = 1\n", "lang": "python"}])
    args = ["-vv", "run", str(source), str(tmp_path / "out"), "--scorers", "code_style"]
    result = runner.invoke(app, args + ["--no-report", "--no-progress"])
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.output.splitlines() if " DEBUG " in line]
    assert line.endswith(
        "DEBUG pipeline.score_stage: scored shard "
        f"{shard_name(str(source), 0)}: 1 documents read, 1 scored, 0 rejected, 0 duplicates"
    )


def test_run_help_shows_the_beam_table_name():
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    assert "Beam options in a [beam] table." in " ".join(result.output.split())


def test_output_conflict_is_the_only_line_printed(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "x = 1\n", "lang": "python"}])
    args = ["run", str(source), str(tmp_path / "out"), "--scorers", "code_style", "--no-report"]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, [*args, "--percentile", "code_style=50"])
    assert result.exit_code == 2
    assert result.output.startswith("annotate: error: ")
    assert "contains the output of a run with other inputs or options" in result.output
    assert result.output.count("\n") == 1


def test_output_conflict_names_changed_options(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "x = 1\n", "lang": "python"}])
    out = tmp_path / "out"
    args = ["run", str(source), str(out), "--scorers", "code_style", "--no-report"]
    first = runner.invoke(app, [*args, "--percentile", "code_style=50"])
    assert first.exit_code == 0, first.output

    changed = [*args, "--percentile", "code_style=40", "--dedup", "exact", "--bad-token", "<|x|>"]
    result = runner.invoke(app, changed)
    assert result.exit_code == 2
    message = result.output.strip()
    assert message == (
        f"annotate: error: {out} contains the output of a run with other inputs or options: "
        '--bad-token: was "<|bad|>", now "<|x|>"; '
        '--dedup: was "none", now "exact"; '
        '--percentile: was {"code_style": 50.0}, now {"code_style": 40.0}; '
        "choose another output directory, or pass --overwrite to replace it"
    )
    assert runner.invoke(app, [*changed, "--overwrite"]).exit_code == 0


def test_output_conflict_names_changed_inputs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "first.jsonl", [{"text": "x = 1\n", "lang": "python"}])
    write_jsonl(tmp_path / "second.jsonl", [{"text": "y = 2\n", "lang": "python"}])
    options = ["--scorers", "code_style", "--no-report"]
    assert runner.invoke(app, ["run", "first.jsonl", "out", *options]).exit_code == 0

    result = runner.invoke(app, ["run", "second.jsonl", "out", *options])
    assert result.exit_code == 2
    assert 'other inputs or options: INPUTS: was "first.jsonl", now "second.jsonl";' in (
        result.output
    )
    assert "pass --overwrite to replace it" in result.output
    assert result.output.count("\n") == 1


def test_output_conflict_names_other_command(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "x = 1\n", "lang": "python"}])
    out = tmp_path / "out"
    options = ["--scorers", "code_style", "--no-progress"]
    assert runner.invoke(app, ["score", str(source), str(out), *options]).exit_code == 0

    result = runner.invoke(app, ["run", str(source), str(out), *options, "--no-report"])
    assert result.exit_code == 2
    assert "it was written by 'annotate score', not 'annotate run'" in result.output


def test_conflicting_values_are_shortened_in_the_middle():
    from pipeline.run_record import MAX_VALUE_CHARS, describe_differences

    stored = {"command": "run", "config": {"inputs": "/data/" + "a" * 120 + "/part-1.jsonl"}}
    current = {"command": "run", "config": {"inputs": "/data/" + "a" * 120 + "/part-2.jsonl"}}
    [difference] = describe_differences(stored, current)
    old, new = difference.removeprefix("INPUTS: was ").split(", now ")
    assert len(old) == MAX_VALUE_CHARS
    assert old.startswith('"/data/aaa')
    assert old.endswith('a/part-1.jsonl"')
    assert "..." in old
    assert new.endswith('a/part-2.jsonl"')


def test_conflict_without_recorded_differences_keeps_the_generic_message():
    from pipeline.run import other_run_message

    stored = {"fingerprint": "old"}
    message = other_run_message("out", stored, {"fingerprint": "new", "command": "run"})
    assert message == (
        "out contains the output of a run with other inputs or options; "
        "choose another output directory, or pass --overwrite to replace it"
    )


def test_counts_summary_names_rejected_only_when_used():
    from pipeline.cli.run_command import counts_summary

    counts = {"documents_read": 5, "documents_rejected": 0, "documents_duplicates": 1}
    assert counts_summary(counts) == "5 read, 0 rejected, 1 duplicates removed"
    counts["documents_rejected"] = 2
    assert counts_summary(counts) == "5 read, 2 rejected (see rejected/), 1 duplicates removed"


def test_build_run_config_collects_shared_options():
    from pipeline.cli.run_options import SCORER_OPTION_NAMES, build_run_config
    from schemas.config import LabelOptions

    params = dict.fromkeys(SCORER_OPTION_NAMES)
    params.update(toxicity_fp16=False, scorer_option=["pii.language=en"], toxicity_threads=2)
    params.update(inputs="in/*.jsonl", output_dir="gs://b/out/", scorers="code_style,pii")
    params.update(text_field="body", id_field="key", language_field="lang", kind="prose")
    params.update(spacy_language="en", docs_per_shard=5, fail_fast=True, write_duplicates=False)
    params.update(dedup="exact", dedup_threshold=0.8, dedup_num_perm=128, dedup_ngram=5)
    params.update(dedup_seed=1)
    label = LabelOptions(good_token="<|ok|>")
    config = build_run_config(params, label)
    assert (config.inputs, config.output_dir) == ("in/*.jsonl", "gs://b/out")
    assert config.scorers == ("code_style", "pii")
    assert config.scorer_options["pii"] == {"language": "en"}
    assert config.scorer_options["toxicity"]["threads"] == 2
    assert (config.read.text_field, config.read.id_field) == ("body", "key")
    assert (config.segment.kind, config.docs_per_shard, config.fail_fast) == ("prose", 5, True)
    assert config.dedup.method == "exact"
    assert config.label == label
    assert build_run_config(params).label == LabelOptions()
    with pytest.raises(UsageError, match="--kind must be"):
        build_run_config(dict(params, kind="poetry"))
