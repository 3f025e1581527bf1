"""`annotate run --config FILE` and `--print-config`: TOML options, flags override them."""

import json
import os

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.config_file import (
    assignments,
    beam_arguments,
    merge_beam_arguments,
    parse_beam_arguments,
    shape_value,
    toml_value,
    tomllib,
)
from tests.conftest import REPO, write_jsonl

runner = CliRunner()

CONFIG = """\
scorers = ["toxicity_profanity", "code_style"]
default_percentile = 10
fail-fast = true

[percentile]
code_style = 50

[scorer-option.toxicity_profanity]
batch_size = 8

[beam]
direct_num_workers = 1
"""


@pytest.fixture
def paths(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Hello there."}])
    config = tmp_path / "run.toml"
    config.write_text(CONFIG)
    return source, tmp_path / "out", config


def error_text(output: str) -> str:
    """The output with the error box's borders and line breaks removed."""
    return " ".join(output.replace("│", " ").split())


def print_config(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", *args, "--print-config"])
    return result.exit_code, result.output


def test_table_becomes_assignments():
    table = {"toxicity": 5, "pii": {"spacy_model": "en_core_web_sm", "threshold": 0.5}}
    assert assignments(table) == [
        "toxicity=5",
        "pii.spacy_model=en_core_web_sm",
        "pii.threshold=0.5",
    ]


def test_shape_value_by_option_kind():
    assert shape_value("scorers", ["a", "b"], multiple=False) == "a,b"
    assert shape_value("percentile", "a=5", multiple=True) == ["a=5"]
    assert shape_value("percentile", ["a=5", "b=1"], multiple=True) == ["a=5", "b=1"]
    assert shape_value("percentile", {"a": 5}, multiple=True) == ["a=5"]
    with pytest.raises(ValueError, match="takes a single value"):
        shape_value("runner", {"a": 1}, multiple=False)


def test_beam_table_becomes_arguments():
    table = {"direct_num_workers": 2, "save_main_session": True, "skip": False, "e": ["x", "y"]}
    args = beam_arguments(table)
    assert args == ["--direct_num_workers=2", "--save_main_session", "--e=x", "--e=y"]
    assert parse_beam_arguments(args) == {
        "direct_num_workers": "2",
        "save_main_session": True,
        "e": ["x", "y"],
    }


def test_command_line_beam_option_replaces_file_value():
    file_args = ["--direct_num_workers=2", "--experiments=a", "--experiments=b"]
    merged = merge_beam_arguments(file_args, ["--experiments", "c"])
    assert merged == ["--direct_num_workers=2", "--experiments", "c"]


@pytest.mark.parametrize(
    "value",
    [
        'quote " and \\ backslash',
        "line\nbreak\ttab",
        "del \x7f",
        "ünï 😀",
        3,
        -0.25,
        True,
        ["a", 1],
    ],
)
def test_toml_value_reads_back(value):
    assert tomllib.loads(f"key = {toml_value(value)}")["key"] == value


def test_config_file_sets_options(paths):
    source, out, config = paths
    code, output = print_config(str(source), str(out), "--config", str(config))
    assert code == 0, output
    assert output.startswith(f"# annotate run {source} {out} --config FILE\n")
    printed = tomllib.loads(output)
    assert printed["scorers"] == "toxicity_profanity,code_style"
    assert printed["default-percentile"] == 10.0
    assert printed["fail-fast"] is True
    assert printed["percentile"] == ["code_style=50"]
    assert printed["scorer-option"] == ["toxicity_profanity.batch_size=8"]
    assert printed["beam"] == {"direct_num_workers": "1"}
    assert "config" not in printed
    assert "inputs" not in printed


def test_flags_override_config_file(paths):
    source, out, config = paths
    args = [str(source), str(out), "--config", str(config), "--default-percentile", "20"]
    args += ["--no-fail-fast", "--percentile", "code_style=1", "--direct_num_workers", "3"]
    code, output = print_config(*args)
    assert code == 0, output
    printed = tomllib.loads(output)
    assert printed["default-percentile"] == 20.0
    assert printed["fail-fast"] is False
    assert printed["percentile"] == ["code_style=1"]
    assert printed["scorers"] == "toxicity_profanity,code_style"
    assert printed["beam"] == {"direct_num_workers": "3"}


def test_printed_config_reads_back(paths, tmp_path):
    source, out, config = paths
    _, first = print_config(str(source), str(out), "--config", str(config), "--kind", "code")
    printed = tmp_path / "printed.toml"
    printed.write_text(first)
    code, second = print_config(str(source), str(out), "--config", str(printed))
    assert code == 0, second
    assert second == first


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('scorers_list = "pii"\n', "unknown key 'scorers_list'; did you mean 'scorers'?"),
        ('inputs = "x.jsonl"\n', "inputs is an argument; give it on the command line"),
        ("default-percentile =\n", "is not valid TOML"),
        ("[beam]\nrunner = 'DataflowRunner'\n", "top-level key 'runner'"),
        ("runner = {a = 1}\n", "runner takes a single value, not a table"),
        ("default-percentile = 200\n", "between 0 and 100"),
        ("[beam]\nnot_a_beam_option = 1\n", "unknown option --not_a_beam_option"),
    ],
)
def test_invalid_config_file_exits_2(paths, text, message):
    source, out, config = paths
    config.write_text(text)
    result = runner.invoke(app, ["run", str(source), str(out), "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert message in error_text(result.output)


def test_missing_config_file_exits_2(paths, tmp_path):
    source, out, _ = paths
    missing = tmp_path / "none.toml"
    result = runner.invoke(app, ["run", str(source), str(out), "--config", str(missing)])
    assert result.exit_code == 2
    assert f"cannot read {missing}: No such file or directory" in error_text(result.output)


def test_manifest_records_config_file(paths):
    source, out, config = paths
    config.write_text('scorers = "code_style"\ndefault-percentile = 10\nreport = false\n')
    args = ["run", str(source), str(out), "--config", str(config), "--default-percentile", "20"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config_file"] == os.path.abspath(config)
    assert manifest["config"]["scorers"] == ["code_style"]
    assert manifest["config"]["label"]["default_percentile"] == 20.0
    assert not (out / "report.html").exists()


def test_example_config_is_valid(paths):
    source, out, _ = paths
    example = REPO / "docs" / "example-config.toml"
    code, output = print_config(str(source), str(out), "--config", str(example))
    assert code == 0, output
    printed = tomllib.loads(output)
    assert printed["scorers"] == "toxicity_profanity,pii,code_style"
    assert printed["percentile"] == ["code_style=50"]
    assert printed["scorer-option"] == ['pii.entities=["EMAIL_ADDRESS", "PHONE_NUMBER"]']
    assert printed["beam"] == {"direct_num_workers": "2", "direct_running_mode": "multi_processing"}
