"""`annotate explain` and `annotate scorers`: what a user sees of each scorer, offline."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.scorer_options import build_scorer_options

runner = CliRunner()

EMOJI_TEXT = "Party time 🎉🎉🎉! Write to jane.roe@example.org for tickets."
RUN_ON = " ".join(["word", "and", "another", "then"] * 150)  # 600 words, no punctuation


def explain_json(*args: str) -> list[dict]:
    result = runner.invoke(app, ["explain", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["segments"]


@pytest.fixture(scope="module")
def toxicity_flags(tmp_path_factory) -> list[str]:
    pytest.importorskip("detoxify")
    from scorers.testing import write_detoxify_checkpoint

    checkpoint, hf_dir = write_detoxify_checkpoint(tmp_path_factory.mktemp("detoxify"))
    return ["--toxicity-checkpoint", str(checkpoint), "--toxicity-hf-dir", str(hf_dir)]


def test_explain_pii_email_after_emoji():
    segments = explain_json(EMOJI_TEXT, "--scorers", "pii")

    second = "Write to jane.roe@example.org for tickets."
    assert segments == [
        {"text": "Party time 🎉🎉🎉! ", "start": 0, "end": 16, "scores": {"pii_presidio_v1": 0.0}},
        {"text": second, "start": 16, "end": 58, "scores": {"pii_presidio_v1": 1 / 42}},
    ]
    assert EMOJI_TEXT[16:58] == second


def test_explain_pii_glued_phone():
    text = "For support reach me at office212-555-0142 today."

    segments = explain_json(text, "--scorers", "pii")

    assert segments == [
        {"text": text, "start": 0, "end": 49, "scores": {"pii_presidio_v1": 1 / 49}}
    ]


def test_explain_code_style_lines():
    text = "import os,sys\nx=1 \n\nvalue = compute(1))\n"

    segments = explain_json(text, "--kind", "code", "--scorers", "code_style")

    name = "code_style_pycodestyle_v1"
    assert segments == [
        {"text": "import os,sys\n", "start": 0, "end": 14, "scores": {name: 2 / 14}},
        {"text": "x=1 \n", "start": 14, "end": 19, "scores": {name: 2 / 5}},
        {"text": "\n", "start": 19, "end": 20, "scores": {name: None}},
        {"text": "value = compute(1))\n", "start": 20, "end": 40, "scores": {name: 1 / 20}},
    ]


def test_explain_text_counts_syntax_error():
    result = runner.invoke(
        app, ["explain", "value = compute(1))\n", "--kind", "code", "--scorers", "code_style"]
    )

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "1 code segment",
        "",
        '[0, 20)  "value = compute(1))\\n"',
        "    code_style_pycodestyle_v1  0.05",
        "",
        "counts: code_style_pycodestyle_v1_syntax_errors=1, segments_code=1",
    ]


def test_explain_toxicity_local_checkpoint(toxicity_flags):
    from scorers.toxicity import DetoxifyToxicityScorer

    text = "You are a wonderful person. The librarian knows most of them by name."
    segments = explain_json(text, "--scorers", "toxicity", *toxicity_flags)

    scorer = DetoxifyToxicityScorer(checkpoint=toxicity_flags[1], hf_dir=toxicity_flags[3])
    scorer.setup()
    expected = scorer.score_segments([segment["text"] for segment in segments])
    assert [segment["text"] for segment in segments] == [
        "You are a wonderful person. ",
        "The librarian knows most of them by name.",
    ]
    for segment, score in zip(segments, expected, strict=True):
        assert segment["scores"]["toxicity_detoxify_v1"] == pytest.approx(score, abs=1e-6)


def test_explain_toxicity_run_on_truncated(toxicity_flags):
    args = ["explain", RUN_ON, "--scorers", "toxicity", *toxicity_flags]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("1 prose segment\n")
    assert "toxicity_detoxify_v1_truncated_segments=1" in result.stdout


def test_explain_all_three_scorers(toxicity_flags):
    text = "Mail jane.roe@example.org now."

    segments = explain_json(text, "--scorers", "toxicity,pii,code_style", *toxicity_flags)

    assert len(segments) == 1
    assert sorted(segments[0]["scores"]) == ["pii_presidio_v1", "toxicity_detoxify_v1"]
    assert segments[0]["scores"]["pii_presidio_v1"] == 1 / 30
    assert 0.0 < segments[0]["scores"]["toxicity_detoxify_v1"] < 1.0


def test_explain_warns_of_other_kind():
    result = runner.invoke(app, ["explain", "x=1", "--scorers", "code_style"])

    assert result.exit_code == 0, result.output
    assert "scorer code_style_pycodestyle_v1 scores code only, not prose" in result.stderr


def test_explain_reads_standard_input():
    result = runner.invoke(
        app,
        ["explain", "-", "--kind", "code", "--scorers", "code_style", "--json"],
        input="x=1\n",
    )

    assert result.exit_code == 0, result.output
    segments = json.loads(result.stdout)["segments"]
    assert segments[0]["scores"] == {"code_style_pycodestyle_v1": 1 / 4}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kind", "auto"], "--kind must be prose or code"),
        (["--scorers", "nonsense"], "unknown scorer 'nonsense'"),
        (["--scorers", " , "], "--scorers names no scorer"),
        (["--scorer-option", "pii.entities=[]"], "entities must be a non-empty list"),
        (
            ["--scorers", "toxicity", "--scorer-option", "toxicity.batch_size=0"],
            "invalid toxicity batch_size 0",
        ),
        (["--scorer-option", "pii"], "expects NAME=VALUE"),
    ],
)
def test_explain_usage_errors_exit_2(extra, message):
    result = runner.invoke(app, ["explain", "Hello.", "--scorers", "pii", *extra])

    assert result.exit_code == 2, result.output
    assert message in result.output


def test_explain_fp16_on_cpu_exits_2(toxicity_flags):
    args = ["explain", "Hello.", "--scorers", "toxicity", *toxicity_flags]
    args += ["--toxicity-device", "cpu", "--toxicity-fp16"]

    result = runner.invoke(app, args)

    assert result.exit_code == 2, result.output
    assert "fp16 runs on CUDA devices only" in result.output


def test_scorer_flags_override_scorer_options():
    options = build_scorer_options(
        toxicity_batch_size=8,
        toxicity_max_tokens=1024,
        pii_spacy_model="en_core_web_sm",
        scorer_option=["toxicity.batch_size=4", "toxicity.threads=2", "code_style.x=y"],
    )

    assert options == {
        "toxicity": {"batch_size": 8, "threads": 2, "max_tokens": 1024},
        "pii": {"spacy_model": "en_core_web_sm"},
        "code_style": {"x": "y"},
    }


def test_scorer_flags_fp16():
    assert build_scorer_options(toxicity_fp16=True) == {"toxicity": {"fp16": True}}
    assert build_scorer_options(toxicity_fp16=False) == {}


def test_run_and_explain_share_scorer_flags():
    run_help = runner.invoke(app, ["run", "--help"], terminal_width=200).output
    explain_help = runner.invoke(app, ["explain", "--help"], terminal_width=200).output

    for flag in (
        "--scorers",
        "--toxicity-model",
        "--toxicity-checkpoint",
        "--toxicity-hf-dir",
        "--toxicity-device",
        "--toxicity-threads",
        "--toxicity-batch-size",
        "--toxicity-max-tokens",
        "--toxicity-fp16",
        "--pii-spacy-model",
        "--scorer-option",
    ):
        assert flag in run_help
        assert flag in explain_help


def test_scorers_lists_builtins():
    result = runner.invoke(app, ["scorers"])

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ALIAS", "NAME", "KINDS", "INSTALLED", "DESCRIPTION"]
    rows = {line.split()[0]: line.split()[1:4] for line in lines[1:5]}
    assert rows == {
        "toxicity": ["toxicity_detoxify_v1", "prose", "yes"],
        "toxicity_profanity": ["toxicity_profanity_v1", "prose", "yes"],
        "pii": ["pii_presidio_v1", "prose", "yes"],
        "code_style": ["code_style_pycodestyle_v1", "code", "yes"],
    }


def test_scorers_shows_install_command(monkeypatch):
    from scorers.toxicity import DetoxifyToxicityScorer

    monkeypatch.setattr(DetoxifyToxicityScorer, "requires", ("no_such_module_for_tests",))

    result = runner.invoke(app, ["scorers"])

    assert result.exit_code == 0, result.output
    assert 'toxicity: install with: pip install "feedback-annotate[toxicity]"' in result.stdout
    toxicity_row = next(line for line in result.stdout.splitlines() if line.startswith("toxicity "))
    assert toxicity_row.split()[3] == "no"
