"""A third-party scorer registered through the entry-point group, as docs/scorers.md shows it."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from scorers.registry import ENTRY_POINT_GROUP, get_scorer_class
from tests.conftest import REPO, write_jsonl

EXAMPLE = REPO / "docs" / "examples" / "shouting_scorer.py"
DOCS = REPO / "docs" / "scorers.md"

runner = CliRunner()


def install_distribution(site, name: str, entry_points: str, module: str | None = None):
    """Write a module and its *.dist-info folder, as pip would install them, into site."""
    if module is not None:
        shutil.copy(module, site / f"{name}.py")
    dist_info = site / f"{name}-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist_info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")


@pytest.fixture
def shouting(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_distribution(
        site, "shouting_scorer", "shouting = shouting_scorer:ShoutingScorer", EXAMPLE
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("shouting_scorer", None)


def test_docs_show_example_file():
    # The documented scorer is the file that these tests install, so the two cannot differ.
    example = EXAMPLE.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)

    assert example in blocks


def test_registry_finds_plugin(shouting):
    by_alias = get_scorer_class("shouting")

    assert by_alias.__module__ == "shouting_scorer"
    assert get_scorer_class("shouting_uppercase_v1") is by_alias


def test_scorers_lists_plugin(shouting):
    result = runner.invoke(app, ["scorers"])

    assert result.exit_code == 0, result.output
    rows = [line.split(None, 4) for line in result.stdout.splitlines()]
    assert [
        "shouting",
        "shouting_uppercase_v1",
        "prose",
        "yes",
        "share of cased letters that are upper case, 0 to 1",
    ] in rows


def test_explain_uses_plugin(shouting):
    args = ["explain", "HELLO there. all quiet.", "--scorers", "shouting", "--json"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "segments": [
            {
                "text": "HELLO there. ",
                "start": 0,
                "end": 13,
                "scores": {"shouting_uppercase_v1": 0.5},
            },
            {
                "text": "all quiet.",
                "start": 13,
                "end": 23,
                "scores": {"shouting_uppercase_v1": 0.0},
            },
        ]
    }


def test_explain_passes_plugin_option(shouting):
    args = ["explain", "OK then.", "--scorers", "shouting", "--json"]
    args += ["--scorer-option", "shouting.min_letters=7"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    segment = json.loads(result.stdout)["segments"][0]
    assert segment["scores"] == {"shouting_uppercase_v1": 0.0}


def test_run_writes_plugin_columns(shouting, tmp_path):
    records = [
        {"id": "a", "text": "STOP IT NOW. Please sit down.", "lang": "en"},
        {"id": "b", "text": "x=1\n", "lang": "python"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    args = ["run", str(source), str(out), "--scorers", "shouting,code_style"]

    result = runner.invoke(app, args)

    assert result.exit_code == 0, result.output
    table = pq.read_table(out / "shards").sort_by("id")
    assert table.column("score_shouting_uppercase_v1").to_pylist() == [[1.0, 1 / 13], None]
    thresholds = json.loads((out / "thresholds.json").read_text())
    assert sorted(thresholds) == ["code_style_pycodestyle_v1", "shouting_uppercase_v1"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["name"] for s in manifest["scorers"]] == [
        "shouting_uppercase_v1",
        "code_style_pycodestyle_v1",
    ]
    assert manifest["all_counts"]["shouting_uppercase_v1_segments_scored"] == 2


def test_broken_plugin_reported(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site, "broken_scorer", "broken = no_such_module:Scorer")
    monkeypatch.syspath_prepend(str(site))

    listed = runner.invoke(app, ["scorers"])
    used = runner.invoke(app, ["explain", "Hi.", "--scorers", "broken"])

    assert listed.exit_code == 0, listed.output
    assert "broken: No module named 'no_such_module'" in listed.stdout
    assert used.exit_code == 2
    assert "scorer 'broken' is registered as no_such_module:Scorer" in used.output
