"""OUT/report.html from a small real run, and the pieces that choose what it plots."""

import base64
import logging
import re
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cli.run_command import write_report
from pipeline.report_data import (
    ScoreRange,
    document_source,
    histogram_bins,
    load_run,
    top_groups,
)
from tests.conftest import sample_records, write_jsonl

runner = CliRunner()
NAMES = ["toxicity_profanity_v1", "code_style_pycodestyle_v1"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def output(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    records = sample_records(("benign", "offensive"), 2)
    records.append({"id": "no-source", "text": "Plain words here.", "lang": "en"})
    code = {"source": "handmade", "lang": "python"}
    records.append({"id": "code-a", "text": "import os\n\nx=os.sep\n", **code})
    records.append({"id": "code-b", "text": "def f( a ):\n    return a\n", **code})
    source = write_jsonl(root / "in.jsonl", records)
    with source.open("a") as stream:
        stream.write("not json\n")
    out = root / "out"
    args = ["run", str(source), str(out), "--scorers", "toxicity_profanity,code_style"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    return records, out


def read_report(out) -> str:
    return (out / "report.html").read_text("utf-8")


def test_report_is_self_contained(output):
    _, out = output
    page = read_report(out)
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page)
    assert links
    assert all(link.startswith("data:image/png;base64,") for link in links)
    assert "<script" not in page
    assert "<link" not in page


def test_report_has_one_plot_per_scorer(output):
    _, out = output
    page = read_report(out)
    for name in NAMES:
        figures = re.findall(
            rf'<figure id="scores-{name}"><img src="data:image/png;base64,([^"]+)"', page
        )
        assert len(figures) == 1, name
        assert base64.b64decode(figures[0]).startswith(PNG_SIGNATURE)
    assert page.count('<figure id="scores-') == len(NAMES)


def test_report_has_label_plots(output):
    records, out = output
    page = read_report(out)
    assert page.count('<figure id="labels-by-kind">') == 1
    assert page.count('<figure id="labels-by-source">') == 1
    # The sample's sources, and the input file of the document without one.
    sources = {record["source"] for record in records if "source" in record}
    assert f"{len(sources) + 1} sources" in page


def test_report_shows_counts(output):
    records, out = output
    page = read_report(out)
    read = len(records) + 1
    assert f'<td>read</td><td class="number">{read}</td>' in page
    assert f'<td>written</td><td class="number">{len(records)}</td>' in page
    assert '<td>rejected</td><td class="number">1</td>' in page
    assert '<td>rejected: invalid_json</td><td class="number">1</td>' in page
    assert '<td>removed as duplicates</td><td class="number">0</td>' in page


def test_report_command_rebuilds_report(output):
    _, out = output
    (out / "report.html").unlink()
    result = runner.invoke(app, ["report", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Report: {out / 'report.html'}\n"
    assert read_report(out).count('<figure id="scores-') == len(NAMES)


def test_report_command_rejects_other_directory(tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert "manifest.json not found in" in result.output


def test_report_skipped_without_matplotlib(output, monkeypatch, caplog):
    from pipeline import report

    _, out = output

    def missing() -> None:
        raise report.ReportDependencyError("the report needs matplotlib")

    monkeypatch.setattr(report, "require_matplotlib", missing)
    (out / "report.html").unlink(missing_ok=True)
    with caplog.at_level(logging.WARNING):
        assert write_report(str(out)) is None
    assert not (out / "report.html").exists()
    assert "no report.html: the report needs matplotlib" in caplog.text


def test_log_bins_for_wide_positive_range():
    scores = ScoreRange()
    scores.update(np.array([0.0, 0.0, 0.0005, 0.2, 0.9]))
    edges, log_x = histogram_bins(scores, threshold=0.0001)
    assert log_x is True
    assert edges[0] == pytest.approx(0.0001)
    assert edges[-1] == pytest.approx(0.9)
    assert scores.zeros == 2


def test_linear_bins_cover_threshold():
    scores = ScoreRange()
    scores.update(np.array([0.0, 0.0, 0.05, 0.3]))
    edges, log_x = histogram_bins(scores, threshold=0.5)
    assert log_x is False
    assert (edges[0], edges[-1]) == (0.0, 0.5)


def test_single_value_gets_unit_wide_bins():
    scores = ScoreRange()
    scores.update(np.array([0.0, 0.0]))
    edges, log_x = histogram_bins(scores, threshold=0.0)
    assert log_x is False
    assert (edges[0], edges[-1]) == (-0.5, 0.5)


def test_document_source_field_or_input_file():
    assert document_source('{"source": "c4"}', "/data/part-1.jsonl", "source") == "c4"
    assert document_source('{"lang": "en"}', "/data/part-1.jsonl", "source") == "part-1.jsonl"
    assert document_source('{"source": null}', "gs://b/part-2.jsonl", "source") == "part-2.jsonl"
    assert document_source('{"site": 7}', "/data/x.jsonl", "site") == "7"


def test_top_groups_sums_the_rest():
    groups = {
        "a": Counter(good=5),
        "b": Counter(good=1, bad=3),
        "c": Counter(bad=1),
        "d": Counter(blank=2),
    }
    kept, order = top_groups(groups, limit=3)
    assert order == ["a", "b", "other (2 sources)"]
    assert kept["other (2 sources)"] == Counter(bad=1, blank=2)
    assert top_groups(groups, limit=4)[1] == ["a", "b", "d", "c"]


def test_report_and_inspect_read_a_phf_layout_run(tmp_path):
    records = [
        {"id": "p", "text": "Hello there. You are kind. Go away, idiot.", "lang": "en"},
        {"id": "c", "text": "import os\nx=1\n", "lang": "python"},
    ]
    source = write_jsonl(tmp_path / "in.jsonl", records)
    out = tmp_path / "out"
    args = ["run", str(source), str(out), "--scorers", "toxicity_profanity,code_style"]
    args += ["--layout", "phf", "--scorer", "toxicity_profanity", "--threshold"]
    args += ["toxicity_profanity=0.5", "--threshold", "code_style=0.1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "report.html").exists()
    data = load_run(str(out))
    assert data.labels_by_kind == {
        "prose": Counter(good=2, bad=1),
        "code": Counter(good=1, bad=1),
    }
    assert data.ranges["code_style_pycodestyle_v1"].count == 2

    result = runner.invoke(app, ["inspect", str(out), "--id", "p"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"p  prose  {source}:1  3 segments: 2 good, 1 bad"
    assert lines[3].startswith("     2 bad ")

    (out / "report.html").unlink()
    assert runner.invoke(app, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").exists()


def test_inspect_phf_layout_without_scored_shards_exits_2(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"id": "a", "text": "Hi there."}])
    out = tmp_path / "out"
    args = ["run", str(source), str(out), "--scorers", "toxicity_profanity", "--no-report"]
    args += ["--layout", "phf", "--scorer", "toxicity_profanity"]
    assert runner.invoke(app, args).exit_code == 0
    for path in (out / "scored").iterdir():
        path.unlink()
    result = runner.invoke(app, ["inspect", str(out)])
    assert result.exit_code == 2
    assert "in the phf layout" in result.output


def test_label_writes_the_same_report(output, tmp_path):
    _, out = output
    relabelled = tmp_path / "relabelled"
    result = runner.invoke(app, ["label", str(out), str(relabelled)])
    assert result.exit_code == 0, result.output
    assert "report.html        plots of scores and labels" in result.output
    # An earlier test may have deleted the run's report.
    write_report(str(out))
    pages = [read_report(relabelled), read_report(out)]
    times = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
    assert all(len(times.findall(page)) == 2 for page in pages)
    relabelled_page, run_page = (times.sub("TIME", page) for page in pages)
    assert relabelled_page.replace(str(relabelled), "OUT") == run_page.replace(str(out), "OUT")


def test_label_no_report_skips_it(output, tmp_path):
    _, out = output
    relabelled = tmp_path / "relabelled"
    result = runner.invoke(app, ["label", str(out), str(relabelled), "--no-report"])
    assert result.exit_code == 0, result.output
    assert (relabelled / "manifest.json").exists()
    assert not (relabelled / "report.html").exists()
    assert "report.html" not in result.output
