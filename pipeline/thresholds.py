"""Global thresholds: the P-th percentile of each scorer's segment scores.

Percentiles are taken over all scored segments of the run, across every
shard and worker, with the summaries of Beam's `ApproximateQuantilesCombineFn`
(Manku, Rajagopalan and Lindsay's algorithm) in one pass over the scores.

Beam's combiner returns a result that depends on the order in which it adds
and merges its inputs once its buffers start to collapse. With the default
epsilon of 0.001 that happens above 17 buffers of 15,259 scores, so above
259,403 scores per scorer. A runner chooses that order anew on every run, so a
resumed run could get other thresholds than an uninterrupted one. Here the
order is fixed instead: each shard gets its own summary, built from its rows
in file order, and the summaries are merged in a tree over the shards sorted
by path, each merge with a fresh combiner. The thresholds are then a function
of the scored shards alone, whichever runner, worker count or attempt
produced them.

Every shard's summary contains at most (17 + 1) * 15,259 scores per scorer, or
all of its scores when it has fewer. Given a work directory, summaries are
written there as files and only their paths go through the shuffle, because
Beam's local runner keeps shuffled data in memory, where the summaries of a
large corpus would grow with it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

from pipeline import files
from pipeline.shards import iter_shard_batches
from schemas.output import score_column

# Quantiles are computed at steps of 0.01 percentage points, so any P given
# with two decimals is looked up exactly; the rank error is set by epsilon.
QUANTILE_STEPS = 10_000

# Summaries merged together at each level of the merge tree. A summary holds
# up to about 275,000 scores with epsilon 0.001, so one merge keeps up to
# MERGE_FAN_IN times that many floats in memory.
MERGE_FAN_IN = 16

# Levels of the merge tree before the final merge: up to 16**4 = 65,536 shards
# reach the final merge as at most 16 summaries. With more shards the final
# merge takes more inputs, which stays deterministic but needs more memory.
MERGE_LEVELS = 4

# A summary of one scorer's scores; opaque outside this module.
Summary = Any


def percentile_index(percentile: float) -> int:
    """Index of the P-th percentile in a list of QUANTILE_STEPS + 1 evenly spaced quantiles."""
    return round(percentile / 100 * QUANTILE_STEPS)


def quantile_combiner(epsilon: float) -> ApproximateQuantilesCombineFn:
    """Create the combiner for one summary or one merge.

    A combiner alternates between rounding up and down when it collapses
    buffers and keeps that state between calls, so reusing one combiner would
    make a result depend on what it did before.
    """
    return ApproximateQuantilesCombineFn.create(
        num_quantiles=QUANTILE_STEPS + 1, epsilon=epsilon, input_batched=True
    )


def shard_summaries(
    path: str, scorer_names: Sequence[str], epsilon: float
) -> Iterator[tuple[str, Summary]]:
    """Yield (scorer name, summary of its non-null scores) for one scored shard.

    The shard is read in batches of rows in file order, so the summary depends
    only on the shard's content. Scorers without scores in the shard yield nothing.
    """
    columns = {name: score_column(name) for name in scorer_names}
    combiners = {name: quantile_combiner(epsilon) for name in scorer_names}
    summaries = {name: combiner.create_accumulator() for name, combiner in combiners.items()}
    for batch in iter_shard_batches(path, columns=list(columns.values())):
        for name, column in columns.items():
            values = batch.column(column).flatten().drop_null().to_pylist()
            summaries[name] = combiners[name].add_input(summaries[name], values)
    for name, summary in summaries.items():
        if not summary.is_empty():
            yield name, summary


def merge_in_order(summaries: Iterable[tuple[int, Summary]], epsilon: float) -> Summary:
    """Merge (position, summary) pairs in the order of their positions."""
    ordered = sorted(summaries, key=lambda item: item[0])
    if len(ordered) == 1:
        return ordered[0][1]
    return quantile_combiner(epsilon).merge_accumulators(summary for _, summary in ordered)


def pick_threshold(summary: Summary, percentile: float, epsilon: float) -> float:
    quantiles = quantile_combiner(epsilon).extract_output(summary)
    return quantiles[percentile_index(percentile)]


class SummaryStore:
    """Storage of summaries between merge steps: the shuffle itself, or files in `work_dir`.

    File names are derived from the scorer and the summary's place in the merge
    tree, so a rerun overwrites the files of an earlier attempt.
    """

    def __init__(self, work_dir: str | None) -> None:
        self.work_dir = work_dir

    def put(self, name: str, level: str, position: int, summary: Summary) -> Any:
        if self.work_dir is None:
            return summary
        path = files.join(self.work_dir, f"{name}-{level}-{position:09d}.pickle")
        data = pickle.dumps(summary, protocol=pickle.HIGHEST_PROTOCOL)
        files.write_atomically(path, lambda stream: stream.write(data))
        return path

    def get(self, stored: Any) -> Summary:
        if self.work_dir is None:
            return stored
        with files.open_read(stored) as stream:
            # The file was written by `put` in this run, so unpickling it is safe.
            return pickle.loads(stream.read())


def _rank_paths(paths: list[str]) -> dict[str, int]:
    return {path: rank for rank, path in enumerate(sorted(paths))}


def _summarize(
    path: str, ranks: dict[str, int], scorer_names: list[str], epsilon: float, store: SummaryStore
):
    rank = ranks[path]
    for name, summary in shard_summaries(path, scorer_names, epsilon):
        yield (name, rank), store.put(name, "shard", rank, summary)


def _regroup(item, fan_in: int | None):
    (name, position), summary = item
    group = 0 if fan_in is None else position // fan_in
    return (name, group), (position, summary)


def _merge_group(item, epsilon: float, store: SummaryStore, level: str):
    (name, group), members = item
    members = sorted(members, key=lambda member: member[0])
    if len(members) == 1:
        return (name, group), members[0][1]
    loaded = ((position, store.get(stored)) for position, stored in members)
    return (name, group), store.put(name, level, group, merge_in_order(loaded, epsilon))


def _pick(item, percentiles: Mapping[str, float], epsilon: float, store: SummaryStore):
    (name, _), stored = item
    return name, pick_threshold(store.get(stored), percentiles[name], epsilon)


class ComputeThresholds(beam.PTransform):
    """Shard paths in; one (scorer name, threshold) pair per scorer that has scores out.

    The result does not depend on the order or grouping of the input paths.

    Args:
        scorer_names: scorers whose columns are read.
        percentiles: scorer name -> P, in percent.
        epsilon: allowed rank error as a fraction of the number of scores.
        work_dir: directory for the summary files; None sends the summaries
            themselves through the shuffle.
    """

    def __init__(
        self,
        scorer_names: Sequence[str],
        percentiles: Mapping[str, float],
        epsilon: float,
        work_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.scorer_names = list(scorer_names)
        self.percentiles = dict(percentiles)
        self.epsilon = epsilon
        self.store = SummaryStore(work_dir)

    def expand(self, shard_paths):
        epsilon, store = self.epsilon, self.store
        ranks = (
            shard_paths
            | "CollectPaths" >> beam.combiners.ToList()
            | "RankPaths" >> beam.Map(_rank_paths)
        )
        summaries = shard_paths | "Summarize" >> beam.FlatMap(
            _summarize, beam.pvalue.AsSingleton(ranks), self.scorer_names, epsilon, store
        )
        for level in [*range(MERGE_LEVELS), "Final"]:
            fan_in = MERGE_FAN_IN if level != "Final" else None
            summaries = (
                summaries
                | f"Regroup{level}" >> beam.Map(_regroup, fan_in)
                | f"Group{level}" >> beam.GroupByKey()
                | f"Merge{level}" >> beam.Map(_merge_group, epsilon, store, f"level{level}")
            )
        return summaries | "PickPercentile" >> beam.Map(_pick, self.percentiles, epsilon, store)
