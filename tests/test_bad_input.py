"""Dirty input through the real Beam pipeline: every bad record is repaired or rejected.

Each test writes its own small input, runs the score, threshold and label
stages on Beam's FnApiRunner, and checks the counters (in manifest.json and
as Beam metrics) and the balance: documents read = written + rejected +
removed as duplicates.
"""

from __future__ import annotations

import gzip
import json
import math
import string
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter

from pipeline import run as run_module
from pipeline.label import restore_text
from pipeline.run import build_pipeline
from pipeline.score_stage import METRICS_NAMESPACE
from pipeline.segment import MAX_CHUNK_CHARS, Segmenter
from schemas.config import RunConfig
from schemas.output import labelled_schema, score_column, scored_schema
from scorers import registry
from scorers.base import PROSE, Scorer

SCORERS = ("toxicity_profanity", "code_style")
PROFANITY = "toxicity_profanity_v1"
CODE_STYLE = "code_style_pycodestyle_v1"
FAKE = "fake_test_v1"
TOKENS = ["<|good|>", "<|bad|>"]

LONG_SENTENCE = (
    "The committee met again on Tuesday to review the budget for the library, the roads, "
    "the schools and the harbour, and after a long discussion about maintenance costs, "
    "staff and the price of fuel it agreed to postpone the vote until the spring. "
)

# Segments containing these strings make FakeScorer raise or return NaN.
RAISE_MARK = "BOOM"
NAN_MARK = "NOT-A-NUMBER"


class FakeScorer(Scorer):
    """Scores a segment by its length; raises on RAISE_MARK, returns NaN on NAN_MARK."""

    name = FAKE
    alias = "fake_test"
    kinds = frozenset({PROSE})

    def score_segments(self, segments: Sequence[str]) -> list[float]:
        if any(RAISE_MARK in segment for segment in segments):
            raise RuntimeError("the fake scorer cannot score this segment")
        return [math.nan if NAN_MARK in s else len(s) / 1000 for s in segments]


@pytest.fixture
def fake_scorer(monkeypatch):
    monkeypatch.setitem(registry._BUILTIN, "fake_test", f"{__name__}:FakeScorer")


@dataclass
class Outcome:
    manifest: dict
    metrics: dict[str, int]
    rows: list[dict]
    out: Path

    @property
    def counts(self) -> dict:
        return self.manifest["all_counts"]

    def rejected(self) -> list[dict]:
        lines = []
        for path in sorted((self.out / "rejected").glob("*.jsonl")):
            lines += [json.loads(line) for line in path.read_text("utf-8").splitlines()]
        return lines

    def row(self, document_id: str) -> dict:
        [row] = [row for row in self.rows if row["id"] == document_id]
        return row


def run_pipeline(inputs: Path, out: Path, scorers=SCORERS, **options) -> Outcome:
    """Run `pipeline.run.run` on the FnApiRunner and collect its output and Beam metrics."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    config = RunConfig(inputs=str(inputs), output_dir=str(out), scorers=scorers, **options)
    pipelines = []

    def build_and_keep(pipeline, *args):
        pipelines.append(pipeline)
        build_pipeline(pipeline, *args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "build_pipeline", build_and_keep)
        manifest = run_module.run(config, runner=FnApiRunner())

    # Leaving the `with beam.Pipeline(...)` block in `run` stores the result on the pipeline.
    result = pipelines[0].result
    query = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    metrics: dict[str, int] = {}
    for counter in query["counters"]:
        name = counter.key.metric.name
        metrics[name] = metrics.get(name, 0) + counter.committed
    shards = sorted((out / "shards").glob("*.parquet"))
    rows = [row for path in shards for row in pq.read_table(path).to_pylist()]
    return Outcome(manifest, metrics, rows, out)


def run_lines(tmp_path: Path, lines: Sequence[bytes], **options) -> Outcome:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(line + b"\n" for line in lines))
    return run_pipeline(source, tmp_path / "out", **options)


def record(text, **fields) -> bytes:
    return json.dumps({"text": text, **fields}, ensure_ascii=False).encode()


def assert_accounting(outcome: Outcome, read: int, written: int, rejected: int) -> None:
    counts = outcome.manifest["counts"]
    assert counts["documents_read"] == read
    assert counts["documents_written"] == written
    assert counts["documents_rejected"] == rejected
    assert counts["documents_duplicates"] == 0
    assert counts["balanced"] is True
    assert len(outcome.rows) == written
    assert len(outcome.rejected()) == rejected


def assert_counters(outcome: Outcome, expected: dict[str, int]) -> None:
    """Each counter has its value in manifest.json and as a Beam metric."""
    for name, value in expected.items():
        assert outcome.counts.get(name, 0) == value, name
        assert outcome.metrics.get(name, 0) == value, name


def assert_lossless(outcome: Outcome) -> None:
    for row in outcome.rows:
        assert restore_text(row["text"], TOKENS) == "".join(row["segments"]), row["id"]
        tokens = sum(row["text"].count(token) for token in TOKENS)
        assert tokens == sum(1 for segment in row["segments"] if segment.strip()), row["id"]


def test_malformed_lines_rejected_with_reason(tmp_path):
    lines = [
        b"not json",
        b'{"id": "m", "lang": "en"}',
        b'{"id": "n", "text": null}',
        b'{"id": "5", "text": 5}',
        b'{"id": "l", "text": ["a", "b"]}',
        b'["text", "a JSON array"]',
        b"",
        b'{"id": "ok", "text": "Fine here."}',
        b'{"text": "cut',
    ]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=8, written=1, rejected=7)
    assert_counters(
        outcome,
        {
            "rejected_invalid_json": 2,
            "rejected_missing_text": 2,
            "rejected_text_not_string": 2,
            "rejected_not_an_object": 1,
            "blank_lines_skipped": 1,
        },
    )
    rejected = outcome.rejected()
    assert [(r["input_line"], r["reason"]) for r in rejected] == [
        (1, "invalid_json"),
        (2, "missing_text"),
        (3, "missing_text"),
        (4, "text_not_string"),
        (5, "text_not_string"),
        (6, "not_an_object"),
        (9, "invalid_json"),
    ]
    assert [r["record"] for r in rejected] == [
        "not json",
        '{"id": "m", "lang": "en"}',
        '{"id": "n", "text": null}',
        '{"id": "5", "text": 5}',
        '{"id": "l", "text": ["a", "b"]}',
        '["text", "a JSON array"]',
        '{"text": "cut',
    ]
    assert {r["input_file"] for r in rejected} == {str(tmp_path / "in.jsonl")}
    assert rejected[3]["detail"] == "field 'text' is a int, not a string"
    assert outcome.row("ok")["segments"] == ["Fine here."]


def test_latin1_line_between_utf8_lines(tmp_path):
    lines = [
        record("Before it. Fine.", id="before"),
        b'{"id": "latin1", "text": "caf\xe9 au lait. It was cheap."}',
        record("After it. Fine.", id="after"),
    ]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=3, written=3, rejected=0)
    assert_counters(outcome, {"repaired_invalid_utf8_decoded_as_cp1252": 1})
    row = outcome.row("latin1")
    assert row["segments"] == ["café au lait. ", "It was cheap."]
    assert restore_text(row["text"], TOKENS) == "café au lait. It was cheap."
    assert outcome.row("after")["segments"] == ["After it. ", "Fine."]
    assert_lossless(outcome)


def test_lone_surrogate_from_json_escape(tmp_path):
    lines = [
        b'{"id": "half", "text": "half an emoji \\ud83d here. Second sentence.", '
        b'"note": "x\\udc00y"}',
        b'{"id": "\\ud83d", "text": "Id with a lone surrogate."}',
    ]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=2, written=2, rejected=0)
    assert_counters(
        outcome, {"repaired_lone_surrogates_replaced": 1, "repaired_invalid_id_replaced": 1}
    )
    row = outcome.row("half")
    assert row["segments"] == ["half an emoji \ufffd here. ", "Second sentence."]
    assert json.loads(row["metadata"]) == {"note": "x\udc00y"}
    assert row["metadata"] == '{"note": "x\\udc00y"}'
    row = outcome.row("in.jsonl:2")
    assert row["segments"] == ["Id with a lone surrogate."]
    assert row["metadata"] == '{"id": "\\ud83d"}'
    assert_lossless(outcome)


def test_empty_and_whitespace_documents(tmp_path):
    lines = [
        record("", id="empty"),
        record("   \n\t  ", id="blank"),
        record("Some text. More text.", id="text"),
    ]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=3, written=3, rejected=0)
    empty, blank = outcome.row("empty"), outcome.row("blank")
    assert (empty["text"], empty["segments"], empty["labels"]) == ("", [], [])
    assert empty[score_column(PROFANITY)] == []
    assert (blank["text"], blank["segments"], blank["labels"]) == (
        "   \n\t  ",
        ["   \n\t  "],
        [None],
    )
    assert blank[score_column(PROFANITY)] == [None]
    assert outcome.manifest["counts"]["segments_blank"] == 1
    scores = [s for row in outcome.rows for s in row[score_column(PROFANITY)] if s is not None]
    assert len(scores) == 2
    assert all(math.isfinite(s) for s in scores)
    thresholds = json.loads((outcome.out / "thresholds.json").read_text())
    assert math.isfinite(thresholds[PROFANITY]["threshold"])
    assert_lossless(outcome)


def test_corpus_of_only_empty_documents(tmp_path):
    lines = [record("", id="empty"), record("  \n ", id="blank"), record("\n", lang="python")]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=3, written=3, rejected=0)
    thresholds = json.loads((outcome.out / "thresholds.json").read_text())
    for name in (PROFANITY, CODE_STYLE):
        entry = thresholds[name]
        assert entry["percentile"] == 5.0
        assert entry["threshold"] is None
        assert entry["num_segments"] == 0
        assert entry["num_good"] == 0
        assert entry["fraction_good"] is None
        assert entry["fraction_good_characters"] is None
    counts = outcome.manifest["counts"]
    assert (counts["segments_good"], counts["segments_bad"], counts["segments_blank"]) == (0, 0, 2)
    assert [row["text"] for row in outcome.rows] == ["", "  \n ", "\n"]
    assert_lossless(outcome)


def test_ellipsis_and_crlf_join_back(tmp_path):
    text = "It was late .... The end.\r\nNext day we left."
    outcome = run_lines(tmp_path, [record(text, id="crlf")])

    assert_accounting(outcome, read=1, written=1, rejected=0)
    row = outcome.row("crlf")
    assert row["segments"] == ["It was late .... The end.\r\n", "Next day we left."]
    assert "".join(row["segments"]) == text
    assert restore_text(row["text"], TOKENS) == text
    assert (row["segment_starts"], row["segment_ends"]) == ([0, 27], [27, 44])


def test_optional_fields_missing_or_null(tmp_path):
    lines = [
        record("First one.", id="a", lang="en", tags=["x"], extra={"k": 1}),
        record("Second one.", id=None, lang=None, tags=[]),
        record("Third one."),
        record("", id=7, tags=[], extra=None),
        record("x = 1\n", id="code", lang="python", tags=[]),
    ]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=5, written=5, rejected=0)
    for path in (outcome.out / "shards").glob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == labelled_schema([PROFANITY, CODE_STYLE])
    for path in (outcome.out / "scored").glob("*.parquet"):
        assert pq.read_schema(path).remove_metadata() == scored_schema([PROFANITY, CODE_STYLE])
    metadata = {row["id"]: json.loads(row["metadata"]) for row in outcome.rows}
    assert metadata == {
        "a": {"lang": "en", "tags": ["x"], "extra": {"k": 1}},
        "in.jsonl:2": {"lang": None, "tags": []},
        "in.jsonl:3": {},
        "7": {"tags": [], "extra": None},
        "code": {"lang": "python", "tags": []},
    }
    assert outcome.row("code")[score_column(PROFANITY)] is None
    assert outcome.row("7")[score_column(CODE_STYLE)] is None


def test_huge_document_and_unbroken_sentence(tmp_path):
    paragraph = 8 * LONG_SENTENCE + "\n\n"
    paragraphs = 3 * 1024 * 1024 // len(paragraph) + 1
    huge = paragraphs * paragraph
    alphabet = string.ascii_letters + string.digits + "+/"
    blob = "".join(alphabet[(i * 7 + i // 64) % 64] for i in range(1_200_000))
    unbroken = f"Inline data: {blob} ends here."
    lines = [
        record(huge, id="huge"),
        record(unbroken, id="unbroken"),
        record(f"data = '{blob}'\n", id="code", lang="python"),
    ]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=3, written=3, rejected=0)
    assert_lossless(outcome)
    for document_id, text in (("huge", huge), ("unbroken", unbroken)):
        row = outcome.row(document_id)
        assert "".join(row["segments"]) == text
        assert max(len(segment) for segment in row["segments"]) <= MAX_CHUNK_CHARS
        # Only whitespace-only segments go unscored and unlabelled; every other piece is scored.
        blank = [not segment.strip() for segment in row["segments"]]
        assert [score is None for score in row[score_column(PROFANITY)]] == blank
        assert [label is None for label in row["labels"]] == blank
    assert len(huge) > 3 * 1024 * 1024
    assert outcome.row("huge")["segments"][7:9] == [LONG_SENTENCE + "\n\n", LONG_SENTENCE]
    assert outcome.row("huge")["num_segments"] == 8 * paragraphs
    # "Inline data: ", 12 pieces of 100,000 characters, " " and "ends here."
    assert outcome.row("unbroken")["num_segments"] == 15
    row = outcome.row("code")
    assert row["segments"] == [f"data = '{blob}'\n"]
    assert row[score_column(CODE_STYLE)][0] is not None
    assert_counters(outcome, {"segmentation_errors": 0, f"scorer_errors_{PROFANITY}": 0})


def test_truncated_gzip_keeps_lines_before_damage(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    body = b"".join(record(f"Document {i}. It is fine.", id=f"d{i}") + b"\n" for i in range(400))
    (inputs / "damaged.jsonl.gz").write_bytes(gzip.compress(body, mtime=0)[:-900])
    (inputs / "intact.jsonl").write_bytes(record("Intact file.", id="intact") + b"\n")
    outcome = run_pipeline(inputs, tmp_path / "out")

    [damage] = outcome.manifest["damaged_inputs"]
    assert damage["input_file"] == str(inputs / "damaged.jsonl.gz")
    assert "ends before the end-of-stream marker" in damage["error"]
    lines_read = damage["lines_read"]
    assert 100 < lines_read < 400
    rejected = outcome.rejected()
    assert [(r["reason"], r["input_line"]) for r in rejected] == [("truncated_line", lines_read)]
    assert body.decode().splitlines()[lines_read - 1].startswith(rejected[0]["record"])
    assert_accounting(outcome, read=lines_read + 1, written=lines_read, rejected=1)
    assert_counters(outcome, {"input_files_damaged": 1, "rejected_truncated_line": 1})
    ids = {row["id"] for row in outcome.rows}
    assert ids == {f"d{i}" for i in range(lines_read - 1)} | {"intact"}

    # A rerun skips the completed shards and still reports the damage.
    rerun = run_pipeline(inputs, tmp_path / "out")
    assert rerun.manifest["damaged_inputs"] == outcome.manifest["damaged_inputs"]
    assert rerun.manifest["counts"] == outcome.manifest["counts"]


def test_blank_lines_do_not_count_toward_shards(tmp_path):
    lines = [line for i in range(5) for line in (record(f"Document {i}.", id=f"d{i}"), b"")]
    outcome = run_lines(tmp_path, lines, docs_per_shard=2)

    assert_accounting(outcome, read=5, written=5, rejected=0)
    assert_counters(outcome, {"blank_lines_skipped": 5})
    shards = sorted((outcome.out / "shards").glob("*.parquet"))
    assert [pq.read_metadata(path).num_rows for path in shards] == [2, 2, 1]


def test_scorer_error_nulls_one_segment(tmp_path, fake_scorer):
    text = f"A fine sentence. This one goes {RAISE_MARK}. Another fine one."
    lines = [record(text, id="doc"), record("Other document.", id="other")]
    outcome = run_lines(tmp_path, lines, scorers=("fake_test",))

    assert_accounting(outcome, read=2, written=2, rejected=0)
    assert_counters(outcome, {f"scorer_errors_{FAKE}": 1})
    row = outcome.row("doc")
    assert row["segments"] == [
        "A fine sentence. ",
        f"This one goes {RAISE_MARK}. ",
        "Another fine one.",
    ]
    assert row[score_column(FAKE)] == [0.017, None, 0.017]
    assert row["labels"][1] == "bad"
    assert outcome.row("other")[score_column(FAKE)] == [0.015]


def test_fail_fast_stops_on_scorer_error(tmp_path, fake_scorer):
    lines = [record(f"This one goes {RAISE_MARK}.")]
    with pytest.raises(Exception, match="the fake scorer cannot score this segment"):
        run_lines(tmp_path, lines, scorers=("fake_test",), fail_fast=True)
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_fail_fast_from_command_line(tmp_path, fake_scorer):
    from typer.testing import CliRunner

    from pipeline.cli import app

    source = tmp_path / "in.jsonl"
    source.write_bytes(record(f"This one goes {RAISE_MARK}.") + b"\n")
    args = ["run", str(source), str(tmp_path / "out"), "--scorers", "fake_test"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, args + ["--fail-fast", "--overwrite"])
    assert result.exit_code == 1
    assert "the fake scorer cannot score this segment" in str(result.exception)


def test_invalid_score_becomes_null(tmp_path, fake_scorer):
    text = f"Scored fine. Scored as {NAN_MARK}."
    outcome = run_lines(tmp_path, [record(text, id="doc")], scorers=("fake_test",))

    assert_accounting(outcome, read=1, written=1, rejected=0)
    assert_counters(outcome, {f"scores_invalid_{FAKE}": 1})
    assert outcome.row("doc")[score_column(FAKE)] == [0.013, None]
    thresholds = json.loads((outcome.out / "thresholds.json").read_text())
    assert thresholds[FAKE]["threshold"] == 0.013


def test_segmentation_error_falls_back_to_lines(tmp_path, monkeypatch):
    original = Segmenter._sentence_spans

    def failing(self, text):
        if "unsplittable" in text:
            raise ValueError("segmenter failure for the test")
        return original(self, text)

    monkeypatch.setattr(Segmenter, "_sentence_spans", failing)
    text = "An unsplittable text. Two sentences\non two lines."
    lines = [record(text, id="odd"), record("Normal one. Fine.", id="normal")]
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=2, written=2, rejected=0)
    assert_counters(outcome, {"segmentation_errors": 1})
    assert outcome.row("odd")["segments"] == [
        "An unsplittable text. Two sentences\n",
        "on two lines.",
    ]
    assert outcome.row("normal")["segments"] == ["Normal one. ", "Fine."]


def test_deep_nesting_and_non_finite_metadata(tmp_path):
    deep = b'{"id": "n", "text": "Deep.", "m": ' + b"[" * 990 + b"]" * 990 + b"}"
    lines = [deep, b'{"id": "f", "text": "Fine here.", "x": NaN, "y": 1.5}']
    outcome = run_lines(tmp_path, lines)

    assert_accounting(outcome, read=2, written=1, rejected=1)
    assert_counters(
        outcome, {"rejected_too_deeply_nested": 1, "repaired_non_finite_numbers_replaced": 1}
    )
    assert [r["reason"] for r in outcome.rejected()] == ["too_deeply_nested"]
    assert json.loads(outcome.row("f")["metadata"]) == {"x": None, "y": 1.5}
