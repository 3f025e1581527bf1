"""Refinement: segments near a threshold scored again at full precision."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest

from pipeline.refine import (
    REFINED_SHARDS_SKIPPED,
    RefinedShard,
    RefineShardFn,
    RefineStats,
    log_odds,
    near_cut,
    near_threshold,
    refine_scores,
    refinement_lines,
    refinement_summary,
    refinement_warnings,
)
from pipeline.relabel import relabel
from pipeline.run import run
from pipeline.score_stage import SCORER_SETUPS, ShardResult
from pipeline.shards import ParquetShardWriter
from schemas.config import LabelOptions, RunConfig
from schemas.output import SCHEMA_METADATA_KEY, score_column, scored_schema
from scorers.base import PROSE, Refinement, Scorer
from tests.conftest import SAMPLE

NAME = "table_v1"


class TableScorer(Scorer):
    """Exact scores looked up in a table; counts its setups and the segments it scored."""

    name = NAME
    alias = "table"
    kinds = frozenset({PROSE})

    def __init__(self, table: dict[str, float]) -> None:
        super().__init__()
        self.table = table
        self.setups = 0
        self.scored: list[str] = []

    def setup(self) -> None:
        self.setups += 1

    def score_segments(self, segments):
        self.scored += segments
        return [self.table[segment] for segment in segments]


def write_scored_shard(path, documents: list[dict[str, float | None]]) -> str:
    """Write a scored shard with one document per dict of segment -> stored score."""
    segments = [list(document) for document in documents]
    columns = {
        "id": [str(i) for i in range(len(documents))],
        "text": ["".join(parts) for parts in segments],
        "kind": [PROSE] * len(documents),
        "segments": segments,
        "segment_starts": [[0] * len(parts) for parts in segments],
        "segment_ends": [[0] * len(parts) for parts in segments],
        "num_segments": [len(parts) for parts in segments],
        score_column(NAME): [list(document.values()) for document in documents],
        "metadata": ["{}"] * len(documents),
        "input_file": ["in.jsonl"] * len(documents),
        "input_line": list(range(1, len(documents) + 1)),
    }
    writer = ParquetShardWriter(str(path), scored_schema([NAME]), {"scorers": [NAME]})
    writer.write(columns)
    writer.close()
    return str(path)


def test_log_odds_finite_at_zero_and_one():
    assert math.isfinite(log_odds(0.0))
    assert math.isfinite(log_odds(1.0))
    assert log_odds(0.5) == 0.0
    assert log_odds(0.75) == pytest.approx(math.log(3))


def test_near_threshold_measures_log_odds():
    # 0.52 lies 0.08 log-odds above 0.5, 0.6 lies 0.41 above it.
    assert near_threshold(0.52, 0.5, 0.1)
    assert not near_threshold(0.6, 0.5, 0.1)
    assert not near_threshold(None, 0.5, 10.0)


def test_refine_scores_replaces_only_scores_near_threshold():
    exact = TableScorer({"b": 0.49, "c": 0.53})
    scores = [0.1, 0.5, 0.52, 0.9, None]

    refined, stats = refine_scores(scores, ["a", "b", "c", "d", " "], 0.5, Refinement(exact, 0.1))

    assert refined == [0.1, 0.49, 0.53, 0.9, None]
    assert exact.scored == ["b", "c"]
    assert stats.segments == 2
    changes = [log_odds(0.5) - log_odds(0.49), log_odds(0.53) - log_odds(0.52)]
    assert stats.max_change == pytest.approx(max(changes))


@pytest.fixture
def shard(tmp_path):
    documents = [{"far ": 0.1, "near ": 0.51}, {"other ": 0.95}, {"close ": 0.49, " ": None}]
    return ShardResult("s", write_scored_shard(tmp_path / "scored.parquet", documents))


def refine_fn(out, exact: TableScorer, margin: float = 0.1) -> RefineShardFn:
    fn = RefineShardFn(str(out), {NAME: Refinement(exact, margin)})
    fn.setup()
    return fn


def test_shard_written_again_with_exact_scores(shard, tmp_path):
    exact = TableScorer({"near ": 0.47, "close ": 0.52})

    [result] = refine_fn(tmp_path / "out", exact).process(shard, {NAME: 0.5})

    assert result.shard.path == str(tmp_path / "out" / "refined" / "s.parquet")
    table = pq.read_table(result.shard.path)
    assert table.column(score_column(NAME)).to_pylist() == [[0.1, 0.47], [0.95], [0.52, None]]
    assert table.drop([score_column(NAME)]).equals(
        pq.read_table(shard.path).drop([score_column(NAME)])
    )
    stored = json.loads(table.schema.metadata[SCHEMA_METADATA_KEY])
    assert stored["refined"] == {NAME: {"threshold": 0.5, "margin": 0.1}}
    assert result.stats[NAME].segments == 2
    assert result.stats[NAME].max_change == pytest.approx(log_odds(0.51) - log_odds(0.47))


def test_refined_shard_skipped_on_rerun(shard, tmp_path):
    exact = TableScorer({"near ": 0.47, "close ": 0.52})
    [first] = refine_fn(tmp_path / "out", exact).process(shard, {NAME: 0.5})

    again = TableScorer({})
    [second] = refine_fn(tmp_path / "out", again).process(shard, {NAME: 0.5})

    assert second.shard.path == first.shard.path
    assert vars(second.stats[NAME]) == vars(first.stats[NAME])
    assert again.setups == 0
    assert again.scored == []


def refine_once(out, shard: ShardResult, exact: TableScorer, *side_inputs) -> RefinedShard:
    """Run RefineShardFn on one shard to the end; `process` is a generator."""
    [result] = refine_fn(out, exact).process(shard, *side_inputs)
    return result


def test_new_threshold_refines_again(shard, tmp_path):
    first = refine_once(
        tmp_path / "out", shard, TableScorer({"near ": 0.47, "close ": 0.52}), {NAME: 0.5}
    )
    exact = TableScorer({"other ": 0.96})

    [result] = refine_fn(tmp_path / "out", exact).process(shard, {NAME: 0.95})

    assert exact.scored == ["other "]
    assert result.shard.path == first.shard.path
    # The copy is made from the scored shard again, not from the first copy.
    column = pq.read_table(result.shard.path).column(score_column(NAME)).to_pylist()
    assert column == [[0.1, 0.51], [0.96], [0.49, None]]


def test_shard_without_near_segments_kept(shard, tmp_path):
    exact = TableScorer({})

    [result] = refine_fn(tmp_path / "out", exact).process(shard, {NAME: 0.3})

    assert result.shard.path == shard.path
    assert result.stats[NAME].segments == 0
    assert exact.setups == 0
    assert not (tmp_path / "out" / "refined").exists()


def test_new_threshold_without_near_segments_removes_old_copy(shard, tmp_path):
    [first] = refine_fn(tmp_path / "out", TableScorer({"near ": 0.47, "close ": 0.52})).process(
        shard, {NAME: 0.5}
    )

    [second] = refine_fn(tmp_path / "out", TableScorer({})).process(shard, {NAME: 0.3})

    assert first.shard.path != shard.path
    assert second.shard.path == shard.path
    assert not (tmp_path / "out" / "refined" / "s.parquet").exists()


def test_segment_near_bucket_edge_is_refined(shard, tmp_path):
    # "other " (0.95) lies far from the threshold 0.5 but near the bucket edge 0.949.
    exact = TableScorer({"near ": 0.47, "close ": 0.52, "other ": 0.93})
    fn = refine_fn(tmp_path / "out", exact)

    [result] = fn.process(shard, {NAME: 0.5}, {NAME: [0.2, 0.949]})

    assert sorted(exact.scored) == ["close ", "near ", "other "]
    column = pq.read_table(result.shard.path).column(score_column(NAME)).to_pylist()
    assert column == [[0.1, 0.47], [0.93], [0.52, None]]
    stored = json.loads(pq.read_schema(result.shard.path).metadata[SCHEMA_METADATA_KEY])
    assert stored["refined"][NAME]["bucket_edges"] == [0.2, 0.949]


def test_new_bucket_edges_refine_again(shard, tmp_path):
    refine_once(tmp_path / "out", shard, TableScorer({"near ": 0.47, "close ": 0.52}), {NAME: 0.5})
    exact = TableScorer({"near ": 0.47, "close ": 0.52, "other ": 0.93})

    result = refine_once(tmp_path / "out", shard, exact, {NAME: 0.5}, {NAME: [0.949]})

    assert "other " in exact.scored
    column = pq.read_table(result.shard.path).column(score_column(NAME)).to_pylist()
    assert column == [[0.1, 0.47], [0.93], [0.52, None]]


def test_near_cut_checks_nearest_cuts():
    cuts = sorted(log_odds(cut) for cut in (0.2, 0.5, 0.9))

    assert near_cut(0.51, cuts, 0.1)
    assert near_cut(0.21, cuts, 0.1)
    assert near_cut(0.905, cuts, 0.1)
    assert not near_cut(0.7, cuts, 0.1)
    assert not near_cut(0.05, cuts, 0.1)
    assert not near_cut(None, cuts, 10.0)
    assert not near_cut(0.5, [], 10.0)


def run_refine_pipeline(out, shard: ShardResult, exact: TableScorer) -> dict[str, int]:
    """Refine one shard at threshold 0.5 in a Beam pipeline; return the pipeline's counters."""
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    from pipeline.run import work_counters

    fn = RefineShardFn(str(out), {NAME: Refinement(exact, 0.1)})
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = pipeline | beam.Create([shard]) | beam.ParDo(fn, thresholds={NAME: 0.5})
    return work_counters(pipeline.result)


def test_refine_counts_model_loads_and_skipped_shards(shard, tmp_path):
    exact = TableScorer({"near ": 0.47, "close ": 0.52})

    first = run_refine_pipeline(tmp_path / "out", shard, exact)
    second = run_refine_pipeline(tmp_path / "out", shard, exact)

    assert first.get(SCORER_SETUPS) == 1
    assert first.get(REFINED_SHARDS_SKIPPED, 0) == 0
    assert second.get(SCORER_SETUPS, 0) == 0
    assert second.get(REFINED_SHARDS_SKIPPED) == 1


def test_relabel_reads_refined_copies_of_scored_shards(tmp_path):
    from pipeline.relabel import find_scored_shards

    for directory, name in [("scored", "s"), ("scored", "t"), ("refined", "s")]:
        (tmp_path / directory).mkdir(exist_ok=True)
        write_scored_shard(tmp_path / directory / f"{name}.parquet", [{"a ": 0.1}])

    paths = find_scored_shards(str(tmp_path))

    assert sorted(paths) == [
        str(tmp_path / "refined" / "s.parquet"),
        str(tmp_path / "scored" / "t.parquet"),
    ]


def test_report_of_relabelled_phf_run_reads_refined_copies(tmp_path):
    from pipeline.report_data import document_shards

    run_dir, out = tmp_path / "run", tmp_path / "out"
    shards = [("scored", "s"), ("scored", "t"), ("scored", "u"), ("refined", "s")]
    for root, directory, name in [(run_dir, *shard) for shard in shards] + [(out, "refined", "t")]:
        (root / directory).mkdir(parents=True, exist_ok=True)
        write_scored_shard(root / directory / f"{name}.parquet", [{"a ": 0.1}])
    manifest = {"layout": {"name": "phf"}, "relabelled_from": str(run_dir), "scorers": []}

    found = document_shards(str(out), manifest, {NAME: {"threshold": 0.5}})

    # A copy refined by the relabelling wins, then one refined by the relabelled run.
    assert sorted(found.paths) == [
        str(out / "refined" / "t.parquet"),
        str(run_dir / "refined" / "s.parquet"),
        str(run_dir / "scored" / "u.parquet"),
    ]


def test_scorer_without_threshold_is_not_refined(shard, tmp_path):
    exact = TableScorer({})

    [result] = refine_fn(tmp_path / "out", exact).process(shard, {NAME: None})

    assert result.shard.path == shard.path
    assert result.stats == {}


def summary(max_change: float, before: float, after: float, margin: float = 0.1) -> dict:
    plan = {NAME: {"threshold": before, "margin": margin}}
    stats = {NAME: RefineStats(segments=5, max_change=max_change)}
    return refinement_summary(plan, stats, {NAME: after}, {NAME: "table"})


def test_margin_held_when_changes_and_move_fit():
    entry = summary(0.05, 0.5, 0.51)[NAME]

    assert entry["threshold_move"] == pytest.approx(log_odds(0.51))
    assert entry["margin_needed"] == pytest.approx(0.05 + log_odds(0.51))
    assert entry["margin_held"]
    assert refinement_warnings({NAME: entry}) == []


def test_summary_line_gives_segments_and_check():
    [line] = refinement_lines(summary(0.05, 0.5, 0.51))

    assert line.startswith(f"{NAME}: 5 segment(s) near the threshold scored again")
    assert "largest change 0.05 + threshold move 0.04 log-odds, margin 0.1" in line


def test_summary_line_names_bucket_edge_move():
    plan = {NAME: {"threshold": 0.5, "margin": 0.1, "bucket_edges": [0.6]}}
    stats = {NAME: RefineStats(segments=5, max_change=0.01)}

    [line] = refinement_lines(
        refinement_summary(plan, stats, {NAME: 0.5}, {NAME: "table"}, {NAME: [0.65]})
    )

    assert "near the threshold or a bucket edge scored again" in line
    assert "threshold move 0 (bucket edges 0.214) log-odds" in line


def test_summary_counts_bucket_edge_move():
    plan = {NAME: {"threshold": 0.5, "margin": 0.1, "bucket_edges": [0.3, 0.6]}}
    stats = {NAME: RefineStats(segments=5, max_change=0.01)}

    entry = refinement_summary(plan, stats, {NAME: 0.5}, {NAME: "table"}, {NAME: [0.3, 0.62]})[NAME]

    edge_move = log_odds(0.62) - log_odds(0.6)
    assert entry["threshold_move"] == 0.0
    assert entry["bucket_edges_before"] == [0.3, 0.6]
    assert entry["bucket_edges"] == [0.3, 0.62]
    assert entry["bucket_edges_move"] == pytest.approx(edge_move)
    assert entry["margin_needed"] == pytest.approx(0.01 + edge_move)
    assert entry["margin_held"]


def test_bucket_edge_move_beyond_margin_warns():
    plan = {NAME: {"threshold": 0.5, "margin": 0.1, "bucket_edges": [0.6]}}
    stats = {NAME: RefineStats(segments=5, max_change=0.01)}

    summary_ = refinement_summary(plan, stats, {NAME: 0.5}, {NAME: "table"}, {NAME: [0.65]})

    [warning] = refinement_warnings(summary_)
    assert summary_[NAME]["margin_held"] is False
    assert "the bucket edges by up to 0.214" in warning


def test_nothing_refined_leaves_margin_unchecked():
    plan = {NAME: {"threshold": 0.5, "margin": 0.1}}
    stats = {NAME: RefineStats()}

    entry = refinement_summary(plan, stats, {NAME: 0.5}, {NAME: "table"})[NAME]

    [warning] = refinement_warnings({NAME: entry})
    assert entry["segments"] == 0
    assert entry["margin_held"] is None
    assert "could not be checked" in warning
    assert "--scorer-option table.refine_margin" in warning


def test_warning_names_option_and_wider_margin():
    # 0.08 of change plus 0.04 of threshold move need 0.12, more than the margin 0.1.
    entry = summary(0.08, 0.5, 0.51)[NAME]

    [warning] = refinement_warnings({NAME: entry})

    assert not entry["margin_held"]
    assert warning.startswith(f"{NAME}: ")
    assert "--scorer-option table.refine_margin=0.24" in warning


# The pipeline with the tiny Detoxify model in bf16, against the same model in fp32.


def toxicity_run(tiny_checkpoint, out, **options) -> tuple[dict, dict[str, list]]:
    """Run toxicity alone on the bundled sample; return the manifest and labels by id."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    checkpoint, hf_dir = tiny_checkpoint
    toxicity = {"checkpoint": str(checkpoint), "hf_dir": str(hf_dir), "device": "cpu"}
    config = RunConfig(
        inputs=str(SAMPLE),
        output_dir=str(out),
        scorers=("toxicity",),
        scorer_options={"toxicity": toxicity | options},
    )
    manifest = run(config, runner=FnApiRunner())
    return manifest, labels_by_id(out)


def changed_labels(first: dict[str, list], second: dict[str, list]) -> int:
    return sum(a != b for key in first for a, b in zip(first[key], second[key], strict=True))


def labels_by_id(out) -> dict[str, list]:
    table = pq.read_table(out / "shards", columns=["id", "labels"])
    return dict(zip(table["id"].to_pylist(), table["labels"].to_pylist(), strict=True))


@pytest.fixture(scope="module")
def fp32_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp32") / "out"
    toxicity_run(tiny_checkpoint, out)
    return out


@pytest.fixture(scope="module")
def bf16_run(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("bf16") / "out"
    manifest, _ = toxicity_run(tiny_checkpoint, out, precision="bf16")
    return out, manifest


@pytest.fixture(scope="module")
def fp32_labels(fp32_run):
    return labels_by_id(fp32_run)


def test_bf16_run_labels_equal_fp32_run(fp32_labels, bf16_run):
    out, manifest = bf16_run

    entry = manifest["refinement"]["toxicity_detoxify_v1"]
    assert entry["margin"] == 0.04
    assert entry["segments"] > 0
    assert entry["margin_held"]
    assert changed_labels(fp32_labels, labels_by_id(out)) == 0


def test_bf16_run_without_refinement_changes_labels(tiny_checkpoint, fp32_labels, tmp_path):
    # Shows that the sample has segments whose bf16 label differs, which the test above
    # would catch if refinement missed them.
    manifest, labels = toxicity_run(
        tiny_checkpoint, tmp_path / "out", precision="bf16", refine_margin=0
    )

    assert "refinement" not in manifest
    assert changed_labels(fp32_labels, labels) > 0


def relabelled(
    run_dir, out, refine: bool = True, options: LabelOptions | None = None
) -> tuple[dict, dict[str, list]]:
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    options = options or LabelOptions(percentiles={"toxicity": 10.0})
    manifest = relabel(str(run_dir), str(out), options, runner=FnApiRunner(), refine=refine)
    return manifest, labels_by_id(out)


def manifest_threshold(out) -> float:
    thresholds = json.loads((out / "thresholds.json").read_text(encoding="utf-8"))
    return thresholds["toxicity_detoxify_v1"]["threshold"]


def test_relabelled_bf16_run_refines_near_new_threshold(fp32_run, bf16_run, tmp_path):
    _, fp32 = relabelled(fp32_run, tmp_path / "fp32")

    manifest, bf16 = relabelled(bf16_run[0], tmp_path / "bf16")

    entry = manifest["refinement"]["toxicity_detoxify_v1"]
    assert entry["threshold"] == manifest_threshold(tmp_path / "fp32")
    assert entry["segments"] > 0
    assert entry["margin_held"]
    assert changed_labels(fp32, bf16) == 0


def texts_by_id(out) -> dict[str, str]:
    table = pq.read_table(out / "shards", columns=["id", "text"])
    return dict(zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True))


def test_relabelled_bf16_bucket_tokens_equal_fp32(fp32_run, bf16_run, tmp_path):
    # Bucket tokens depend on the bucket edges as labels depend on the threshold.
    options = LabelOptions(token_mode="bucket")
    relabelled(fp32_run, tmp_path / "fp32", options=options)

    manifest, _ = relabelled(bf16_run[0], tmp_path / "bf16", options=options)

    entry = manifest["refinement"]["toxicity_detoxify_v1"]
    fp32_table = json.loads((tmp_path / "fp32" / "thresholds.json").read_text(encoding="utf-8"))
    # fp32 scores of the same segment differ in the last bit between batches.
    expected = fp32_table["toxicity_detoxify_v1"]["bucket_edges"]
    assert entry["bucket_edges"] == pytest.approx(expected, rel=1e-6)
    assert entry["margin_held"]
    assert texts_by_id(tmp_path / "bf16") == texts_by_id(tmp_path / "fp32")


def test_relabel_without_refinement_keeps_refined_labels(bf16_run, tmp_path):
    # The run's labels came from its refined scores, so relabelling with the same
    # options reads those and gives the same labels.
    out, manifest = bf16_run
    options = LabelOptions(**manifest["config"]["label"])

    _, labels = relabelled(out, tmp_path / "out", refine=False, options=options)

    assert changed_labels(labels_by_id(out), labels) == 0
    assert manifest_threshold(tmp_path / "out") == manifest_threshold(out)
    metadata = pq.read_schema(next((tmp_path / "out" / "shards").iterdir())).metadata
    assert "refined" not in json.loads(metadata[SCHEMA_METADATA_KEY])


def test_relabel_conflict_names_refine_option(bf16_run, tmp_path):
    from pipeline.run import OutputConflictError

    relabelled(bf16_run[0], tmp_path / "out", refine=False)

    with pytest.raises(OutputConflictError, match=r"--no-refine\): was \[\], now "):
        relabelled(bf16_run[0], tmp_path / "out")


def test_relabel_without_refinement_loads_no_model(bf16_run, tmp_path, monkeypatch):
    from scorers.toxicity import DetoxifyToxicityScorer

    def fail(self):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(DetoxifyToxicityScorer, "setup", fail)

    manifest, _ = relabelled(bf16_run[0], tmp_path / "out", refine=False)

    assert "refinement" not in manifest


def test_toxicity_refinement_is_fp32_scorer_with_same_options():
    from scorers.toxicity import DetoxifyToxicityScorer

    scorer = DetoxifyToxicityScorer(precision="int8", checkpoint="model.ckpt", threads=1)

    refinement = scorer.refinement()

    assert refinement.margin == 0.08
    assert refinement.exact.options == {"checkpoint": "model.ckpt", "threads": 1}
    assert refinement.exact.refinement() is None


@pytest.mark.parametrize(
    ("options", "margin"),
    [
        ({"precision": "bf16"}, 0.04),
        ({"precision": "bf16", "refine_margin": 0.5}, 0.5),
        ({"fp16": True}, 0.04),
    ],
)
def test_toxicity_refine_margin(options, margin):
    from scorers.toxicity import DetoxifyToxicityScorer

    assert DetoxifyToxicityScorer(**options).refinement().margin == margin


@pytest.mark.parametrize("options", [{}, {"precision": "bf16", "refine_margin": 0}])
def test_toxicity_exact_or_unrefined_has_no_refinement(options):
    from scorers.toxicity import DetoxifyToxicityScorer

    assert DetoxifyToxicityScorer(**options).refinement() is None


def test_toxicity_refine_margin_in_fp32_warns(caplog):
    from scorers.toxicity import DetoxifyToxicityScorer

    assert DetoxifyToxicityScorer(refine_margin=0.1).refinement() is None
    assert "toxicity refine_margin 0.1 is ignored" in caplog.text


@pytest.mark.parametrize("value", [-0.1, "wide", True, float("nan"), float("inf")])
def test_toxicity_invalid_refine_margin(value):
    from scorers.base import ScorerConfigError
    from scorers.toxicity import DetoxifyToxicityScorer

    with pytest.raises(ScorerConfigError, match="invalid toxicity refine_margin"):
        DetoxifyToxicityScorer(precision="bf16", refine_margin=value)


def test_relabel_without_model_names_no_refine(tmp_path):
    import shutil

    from typer.testing import CliRunner

    from pipeline.cli import app
    from scorers.testing import write_detoxify_checkpoint

    checkpoint = write_detoxify_checkpoint(tmp_path / "model", size="tiny", seed=0)
    toxicity_run(checkpoint, tmp_path / "run", precision="bf16")
    shutil.rmtree(checkpoint[1])

    result = CliRunner().invoke(app, ["label", str(tmp_path / "run"), str(tmp_path / "out")])

    assert result.exit_code == 1
    assert "hf_dir" in result.output
    assert "pass --no-refine" in result.output
