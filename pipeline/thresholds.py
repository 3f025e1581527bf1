"""Global thresholds: the P-th percentile of each scorer's segment scores.

Percentiles are taken over all scored segments of the run, across every
shard and worker, with Beam's approximate quantiles in one pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import apache_beam as beam
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

from pipeline.shards import read_shard
from schemas.output import score_column

# Quantiles are computed at steps of 0.01 percentage points, so any P given
# with two decimals is looked up exactly; the rank error is set by epsilon.
QUANTILE_STEPS = 10_000


def percentile_index(percentile: float) -> int:
    """Index of the P-th percentile in a list of QUANTILE_STEPS + 1 evenly spaced quantiles."""
    return round(percentile / 100 * QUANTILE_STEPS)


def shard_scores(path: str, scorer_names: Sequence[str]) -> Iterator[tuple[str, list[float]]]:
    """Yield (scorer name, non-null segment scores) for one scored shard."""
    table = read_shard(path, [score_column(name) for name in scorer_names])
    for name in scorer_names:
        column = table.column(score_column(name)).combine_chunks()
        values = column.flatten().drop_null().to_pylist() if len(column) else []
        if values:
            yield name, values


class ComputeThresholds(beam.PTransform):
    """Shard paths in; one (scorer name, threshold) pair per scorer that has scores out.

    Args:
        scorer_names: scorers whose columns are read.
        percentiles: scorer name -> P, in percent.
        epsilon: allowed rank error as a fraction of the number of scores.
    """

    def __init__(
        self, scorer_names: Sequence[str], percentiles: Mapping[str, float], epsilon: float
    ) -> None:
        super().__init__()
        self.scorer_names = list(scorer_names)
        self.percentiles = dict(percentiles)
        self.epsilon = epsilon

    def expand(self, shard_paths):
        combine = ApproximateQuantilesCombineFn.create(
            num_quantiles=QUANTILE_STEPS + 1, epsilon=self.epsilon, input_batched=True
        )
        percentiles = self.percentiles
        return (
            shard_paths
            | "ReadScores" >> beam.FlatMap(shard_scores, self.scorer_names)
            | "Quantiles" >> beam.CombinePerKey(combine)
            | "PickPercentile"
            >> beam.MapTuple(
                lambda name, quantiles: (name, quantiles[percentile_index(percentiles[name])])
            )
        )
