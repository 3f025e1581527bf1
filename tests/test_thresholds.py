"""Thresholds do not depend on the order in which the runner delivers shards."""

import json
import random

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.thresholds import ComputeThresholds, pick_threshold, quantile_combiner
from schemas.output import score_column

PERCENTILES = {"toxicity_profanity_v1": 5.0, "pii_presidio_v1": 50.0}

# A scorer that applies to no document of the shards: it gets no threshold.
UNUSED = "code_style_pycodestyle_v1"

# With epsilon 0.1 Beam's summaries keep 24 buffers of 120 scores, so the
# roughly 24,000 scores per scorer below force collapses, where the order of
# inputs starts to matter.
COARSE_EPSILON = 0.1


def write_score_shards(directory, shards: int, rows: int, seed: int):
    """Write Parquet files holding only score columns.

    Returns the paths and, per scorer, the list of each shard's non-null scores.
    """
    rng = random.Random(seed)
    names = [*PERCENTILES, UNUSED]
    schema = pa.schema([(score_column(name), pa.list_(pa.float64())) for name in names])
    paths, per_shard = [], {name: [] for name in PERCENTILES}
    for index in range(shards):
        columns = {score_column(UNUSED): [None] * rows}
        for name in PERCENTILES:
            column = [[rng.random() for _ in range(rng.randint(1, 9))] for _ in range(rows)]
            column[0] = None  # a document the scorer does not apply to
            column[1].append(None)  # a blank segment
            columns[score_column(name)] = column
            per_shard[name].append([v for row in column if row for v in row if v is not None])
        path = directory / f"shard-{index:03d}.parquet"
        pq.write_table(pa.table(columns, schema), path, row_group_size=97)
        paths.append(str(path))
    return paths, per_shard


def thresholds(paths: list[str], epsilon: float, result_file, work_dir=None) -> dict[str, float]:
    """Run ComputeThresholds on `paths`, delivered in the given order, on the local runner."""
    percentiles = PERCENTILES | {UNUSED: 5.0}
    work_dir = str(work_dir) if work_dir else None
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | beam.Create(paths)
            | ComputeThresholds([*PERCENTILES, UNUSED], percentiles, epsilon, work_dir)
            | beam.combiners.ToList()
            | beam.Map(lambda pairs: result_file.write_text(json.dumps(dict(pairs))))
        )
    return json.loads(result_file.read_text())


@pytest.fixture(scope="module")
def coarse_shards(tmp_path_factory):
    return write_score_shards(tmp_path_factory.mktemp("scores"), shards=40, rows=120, seed=7)


def test_beam_combiner_depends_on_order(coarse_shards):
    # The hazard that the fixed merge order removes: adding the same shards'
    # scores to one summary in another order gives another 5th percentile.
    _, per_shard = coarse_shards
    results = []
    for shards in (per_shard["toxicity_profanity_v1"], per_shard["toxicity_profanity_v1"][::-1]):
        combiner = quantile_combiner(COARSE_EPSILON)
        summary = combiner.create_accumulator()
        for scores in shards:
            summary = combiner.add_input(summary, scores)
        results.append(pick_threshold(summary, 5.0, COARSE_EPSILON))
    assert results[0] != results[1]


def test_threshold_same_in_any_shard_order(coarse_shards, tmp_path):
    paths, _ = coarse_shards
    shuffled = list(paths)
    random.Random(3).shuffle(shuffled)
    first = thresholds(paths, COARSE_EPSILON, tmp_path / "first.json")
    assert sorted(first) == sorted(PERCENTILES)
    assert thresholds(paths[::-1], COARSE_EPSILON, tmp_path / "reversed.json") == first
    assert thresholds(shuffled, COARSE_EPSILON, tmp_path / "shuffled.json") == first


def test_summary_files_give_same_thresholds(coarse_shards, tmp_path):
    paths, _ = coarse_shards
    work_dir = tmp_path / "summaries"
    in_shuffle = thresholds(paths, COARSE_EPSILON, tmp_path / "shuffle.json")
    in_files = thresholds(paths[::-1], COARSE_EPSILON, tmp_path / "files.json", work_dir)
    assert in_files == in_shuffle
    shard_files = sorted(work_dir.glob("toxicity_profanity_v1-shard-*.pickle"))
    assert len(shard_files) == len(paths)
    assert (work_dir / "toxicity_profanity_v1-level0-000000000.pickle").exists()


def test_threshold_within_rank_error(coarse_shards, tmp_path):
    paths, per_shard = coarse_shards
    found = thresholds(paths, COARSE_EPSILON, tmp_path / "result.json")
    for name, percentile in PERCENTILES.items():
        scores = [v for shard in per_shard[name] for v in shard]
        rank = sum(1 for v in scores if v <= found[name]) / len(scores)
        assert abs(rank - percentile / 100) <= COARSE_EPSILON, name


def test_threshold_exact_below_one_summary(tmp_path):
    # 20 shards of 200 rows hold far fewer scores than one summary keeps at
    # epsilon 0.001, so the result equals a single pass over all scores.
    paths, per_shard = write_score_shards(tmp_path, shards=20, rows=200, seed=11)
    expected = {}
    for name, percentile in PERCENTILES.items():
        combiner = quantile_combiner(0.001)
        everything = [v for shard in per_shard[name] for v in shard]
        summary = combiner.add_input(combiner.create_accumulator(), everything)
        expected[name] = pick_threshold(summary, percentile, 0.001)
    assert thresholds(paths, 0.001, tmp_path / "result.json") == expected
