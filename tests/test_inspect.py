"""`annotate inspect` on a small real run with the deterministic code-style scorer."""

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from tests.conftest import write_jsonl

runner = CliRunner()

RECORDS = [
    {"id": "clean", "text": "import os\n\nprint(os.sep)\n", "lang": "python"},
    {"id": "messy", "text": "x=1\ny = 2\n", "lang": "python"},
    {"id": "note", "text": "Hello there.  ", "lang": "en"},
]


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = tmp_path_factory.mktemp("inspect")
    source = write_jsonl(root / "in.jsonl", RECORDS)
    out = root / "out"
    args = ["run", str(source), str(out), "--scorers", "code_style", "--no-report"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return source, out


def test_inspect_prints_segments_scores_labels(output):
    source, out = output
    result = runner.invoke(app, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"clean  code  {source}:1  3 segments: 2 good, 1 blank\n"
        '     0 good  code_style=0 "import os\\n"\n'
        '     1 blank code_style=- "\\n"\n'
        '     2 good  code_style=0 "print(os.sep)\\n"\n'
        "\n"
        f"messy  code  {source}:2  2 segments: 1 good, 1 bad\n"
        '     0 bad   code_style=0.25* "x=1\\n"\n'
        '     1 good  code_style=0 "y = 2\\n"\n'
        "\n"
        f"note  prose  {source}:3  1 segments: 1 good\n"
        '     0 good  "Hello there.  "\n'
        "\n"
    )


def test_inspect_bad_only_shows_bad_segments(output):
    source, out = output
    result = runner.invoke(app, ["inspect", str(out), "--bad-only"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"messy  code  {source}:2  2 segments: 1 good, 1 bad\n"
        '     0 bad   code_style=0.25* "x=1\\n"\n'
        "\n"
    )


def test_inspect_by_id(output):
    _, out = output
    result = runner.invoke(app, ["inspect", str(out), "--id", "note"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("note  prose")
    assert len(result.output.splitlines()) == 3


def test_inspect_unknown_id_exits_1(output):
    _, out = output
    result = runner.invoke(app, ["inspect", str(out), "--id", "nope"])
    assert result.exit_code == 1
    assert "no document with id 'nope'" in result.output


def test_inspect_limit(output):
    _, out = output
    result = runner.invoke(app, ["inspect", str(out), "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("clean  code")
    assert "messy" not in result.output


def test_inspect_max_chars_cuts_segments(output):
    _, out = output
    result = runner.invoke(app, ["inspect", str(out), "--id", "note", "--max-chars", "5"])
    assert result.output.splitlines()[1] == '     0 good  "Hello…"'


def test_inspect_colors_only_on_request(output):
    _, out = output
    plain = runner.invoke(app, ["inspect", str(out), "--id", "messy"])
    colored = runner.invoke(app, ["inspect", str(out), "--id", "messy"], color=True)
    assert "\x1b[" not in plain.output
    assert "\x1b[31mbad  \x1b[0m" in colored.output
    assert "\x1b[32mgood \x1b[0m" in colored.output


def test_inspect_rejects_other_directory(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2
    assert "manifest.json not found in" in result.output
