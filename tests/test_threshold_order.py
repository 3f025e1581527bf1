"""Quantiles, and so thresholds, do not depend on the order in which the runner delivers shards."""

import json
import random

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

from pipeline.thresholds import (
    ComputeQuantiles,
    percentile_index,
    quantiles_combine_fn,
)
from schemas.output import score_column

NAMES = ("toxicity_profanity_v1", "pii_presidio_v1")

# A scorer that applies to no document of the shards: it gets no quantiles.
UNUSED = "code_style_pycodestyle_v1"

# With epsilon 0.1 Beam's summaries keep 24 buffers of 120 scores, so the
# roughly 24,000 scores per scorer below force collapses, where the order of
# inputs starts to matter.
COARSE_EPSILON = 0.1


def write_score_shards(directory, shards: int, rows: int, seed: int):
    """Write Parquet files holding segments and score columns.

    Returns the paths and, per scorer, the list of each shard's non-null scores.
    """
    rng = random.Random(seed)
    names = [*NAMES, UNUSED]
    fields = [("segments", pa.list_(pa.string()))]
    fields += [(score_column(name), pa.list_(pa.float64())) for name in names]
    paths, per_shard = [], {name: [] for name in NAMES}
    for index in range(shards):
        sizes = [rng.randint(1, 9) for _ in range(rows)]
        columns = {"segments": [["x" * rng.randint(1, 50) for _ in range(n)] for n in sizes]}
        columns[score_column(UNUSED)] = [None] * rows
        for name in NAMES:
            column = [[rng.random() for _ in range(n)] for n in sizes]
            column[0] = None  # a document the scorer does not apply to
            column[1][0] = None  # a segment the scorer failed on
            columns[score_column(name)] = column
            per_shard[name].append([v for row in column if row for v in row if v is not None])
        path = directory / f"shard-{index:03d}.parquet"
        pq.write_table(pa.table(columns, pa.schema(fields)), path, row_group_size=97)
        paths.append(str(path))
    return paths, per_shard


def quantiles(paths, epsilon, result_file, weighted=False, work_dir=None) -> dict:
    """Run ComputeQuantiles on `paths`, delivered in the given order, on the local runner."""
    work_dir = str(work_dir) if work_dir else None
    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        _ = (
            pipeline
            | beam.Create(paths)
            | ComputeQuantiles([*NAMES, UNUSED], weighted, epsilon, work_dir)
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
    for shards in (per_shard[NAMES[0]], per_shard[NAMES[0]][::-1]):
        combiner = quantiles_combine_fn(False, COARSE_EPSILON)
        summary = combiner.create_accumulator()
        for scores in shards:
            summary = combiner.add_input(summary, scores)
        results.append(combiner.extract_output(summary)[percentile_index(5.0)])
    assert results[0] != results[1]


@pytest.mark.parametrize("weighted", [False, True])
def test_quantiles_same_in_any_shard_order(coarse_shards, tmp_path, weighted):
    paths, _ = coarse_shards
    shuffled = list(paths)
    random.Random(3).shuffle(shuffled)
    first = quantiles(paths, COARSE_EPSILON, tmp_path / "first.json", weighted)
    assert sorted(first) == sorted(NAMES)
    assert len(first[NAMES[0]]) == 10_001
    reverse = quantiles(paths[::-1], COARSE_EPSILON, tmp_path / "reversed.json", weighted)
    assert reverse == first
    assert quantiles(shuffled, COARSE_EPSILON, tmp_path / "shuffled.json", weighted) == first


def test_summary_files_give_same_quantiles(coarse_shards, tmp_path):
    paths, _ = coarse_shards
    work_dir = tmp_path / "summaries"
    in_shuffle = quantiles(paths, COARSE_EPSILON, tmp_path / "shuffle.json")
    in_files = quantiles(paths[::-1], COARSE_EPSILON, tmp_path / "files.json", work_dir=work_dir)
    assert in_files == in_shuffle
    shard_files = sorted(work_dir.glob(f"{NAMES[0]}-shard-*.pickle"))
    assert len(shard_files) == len(paths)
    assert (work_dir / f"{NAMES[0]}-level0-000000000.pickle").exists()


def test_quantiles_within_rank_error(coarse_shards, tmp_path):
    paths, per_shard = coarse_shards
    found = quantiles(paths, COARSE_EPSILON, tmp_path / "result.json")
    for name in NAMES:
        scores = sorted(v for shard in per_shard[name] for v in shard)
        for percentile in (5.0, 50.0, 95.0):
            value = found[name][percentile_index(percentile)]
            rank = sum(1 for v in scores if v <= value) / len(scores)
            assert abs(rank - percentile / 100) <= COARSE_EPSILON, (name, percentile)


def test_quantiles_exact_below_one_summary(tmp_path):
    # 20 shards of 200 rows hold far fewer scores than one summary keeps at
    # epsilon 0.001, so the result equals a single pass over all scores.
    paths, per_shard = write_score_shards(tmp_path, shards=20, rows=200, seed=11)
    expected = {}
    for name in NAMES:
        combiner = quantiles_combine_fn(False, 0.001)
        everything = [v for shard in per_shard[name] for v in shard]
        summary = combiner.add_input(combiner.create_accumulator(), everything)
        expected[name] = combiner.extract_output(summary)
    assert quantiles(paths, 0.001, tmp_path / "result.json") == expected
