"""Global thresholds: the P-th percentile of each scorer's segment scores, or a fixed value.

Percentiles are taken over all scored segments of the run, across every
shard and worker, with the summaries of Beam's `ApproximateQuantilesCombineFn`
(Manku, Rajagopalan and Lindsay's algorithm) in one pass over the scores.

The exact P-th percentile of n scores is the nearest-rank one: the score of
rank ceil(P / 100 * n) in ascending order (rank 1 for P = 0), which is the
smallest score with at least P % of the scores at or below it. Weighted by
characters, it is the smallest score with at least P % of the characters in
segments at or below it. Beam returns a score whose rank is within
`epsilon * n` of that rank (see `rank_error`).

Beam's combiner returns a result that depends on the order in which it adds
and merges its inputs once its buffers start to collapse. With the default
epsilon of 0.001 that happens above 17 buffers of 15,259 scores, so above
259,403 scores per scorer. A runner chooses that order anew on every run, so a
resumed run could get other thresholds than an uninterrupted one. Here the
order is fixed instead: each shard gets its own summary, built from its rows
in file order, and the summaries are merged in a tree over the shards sorted
by path, each merge with a fresh combiner. The quantiles are then a function
of the scored shards alone, whichever runner, worker count or attempt
produced them.

Every shard's summary contains at most (17 + 1) * 15,259 scores per scorer, or
all of its scores when it has fewer. Given a work directory, summaries are
written there as files and only their paths go through the shuffle, because
Beam's local runner keeps shuffled data in memory, where the summaries of a
large corpus would grow with it.
"""

from __future__ import annotations

import bisect
import logging
import math
import pickle
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

from pipeline import files
from pipeline.shards import iter_shard_batches
from schemas.config import THRESHOLD_PRESETS, LabelOptions
from schemas.output import score_column

logger = logging.getLogger(__name__)

# Quantiles are computed at steps of 0.01 percentage points, so any P given
# with two decimals is looked up exactly. Epsilon sets the rank error.
QUANTILE_STEPS = 10_000

# Rows read from a shard at a time, to bound a worker's memory.
BATCH_ROWS = 65_536

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


@dataclass(frozen=True)
class ThresholdRule:
    """Rule for one scorer's threshold: a percentile of its scores, or a fixed value.

    Attributes:
        percentile: P in percent, or None for a fixed threshold.
        threshold: the fixed threshold, or None for a percentile.
        preset: name of the preset the rule comes from, if any.
    """

    percentile: float | None = None
    threshold: float | None = None
    preset: str | None = None


def threshold_rules(options: LabelOptions, scorer_aliases: Mapping[str, str]) -> dict[str, dict]:
    """Return the rule of each scorer name, as a dict of ThresholdRule's fields.

    A scorer named by --percentile or --threshold (by alias or versioned name)
    uses that option. Otherwise a scorer that the preset names gets the
    preset's fixed value, and any other scorer the default percentile.

    Raises:
        ValueError: --percentile or --threshold names a scorer that is not in the run.
    """
    known = set(scorer_aliases) | set(scorer_aliases.values())
    for option, given in (
        ("--percentile", options.percentiles),
        ("--threshold", options.thresholds),
    ):
        unknown = sorted(set(given) - known)
        if unknown:
            raise ValueError(
                f"{option} names scorer {unknown[0]!r}, which is not in this run; "
                f"scorers in the run: {', '.join(scorer_aliases.values())}"
            )
    preset = THRESHOLD_PRESETS.get(options.preset or "", {})
    rules = {}
    for name, alias in scorer_aliases.items():
        rules[name] = _rule(options, preset, name, alias).__dict__.copy()
    if preset and not any(rule["preset"] for rule in rules.values()):
        logger.warning(
            "preset %s names none of the scorers in this run (%s); each uses the default "
            "percentile",
            options.preset,
            ", ".join(scorer_aliases.values()),
        )
    return rules


def _rule(options: LabelOptions, preset: Mapping[str, float], name: str, alias: str):
    for key in (name, alias):
        if key in options.thresholds:
            return ThresholdRule(threshold=float(options.thresholds[key]))
        if key in options.percentiles:
            return ThresholdRule(percentile=float(options.percentiles[key]))
    for key in (name, alias):
        if key in preset:
            return ThresholdRule(threshold=float(preset[key]), preset=options.preset)
    return ThresholdRule(percentile=float(options.default_percentile))


def percentile_index(percentile: float) -> int:
    """Index of the P-th percentile in a list of QUANTILE_STEPS + 1 evenly spaced quantiles."""
    return round(percentile / 100 * QUANTILE_STEPS)


def choose_threshold(rule: Mapping, quantiles: Sequence[float]) -> float | None:
    """Return one scorer's threshold; None for a percentile when the run has no scores."""
    if rule["threshold"] is not None:
        return rule["threshold"]
    if not quantiles:
        return None
    return quantiles[percentile_index(rule["percentile"])]


def bucket_edges(quantiles: Sequence[float], buckets: int) -> list[float]:
    """Return the k/buckets quantiles for k = 1 .. buckets - 1; empty without scores."""
    if not quantiles:
        return []
    return [quantiles[percentile_index(100 * k / buckets)] for k in range(1, buckets)]


def score_batches(
    path: str, scorer_names: Sequence[str], weighted: bool
) -> Iterator[tuple[str, object]]:
    """Yield (scorer name, scores) per batch of a shard, as Beam's quantiles expect them.

    Scores are the non-null segment scores; weighted, the item is (scores,
    segment lengths in characters).
    """
    columns = [score_column(name) for name in scorer_names]
    if weighted:
        columns.append("segments")
    for batch in iter_shard_batches(path, BATCH_ROWS, columns):
        for name in scorer_names:
            item = _batch_scores(batch, score_column(name), weighted)
            if item is not None:
                yield name, item


def _batch_scores(batch: pa.RecordBatch, column: str, weighted: bool) -> object:
    scores = batch.column(column)
    applies = pc.is_valid(scores)
    values = pc.list_flatten(scores.filter(applies))
    scored = pc.is_valid(values)
    if not weighted:
        result = values.filter(scored).to_pylist()
        return result or None
    segments = pc.list_flatten(batch.column("segments").filter(applies))
    lengths = pc.utf8_length(segments.filter(scored)).to_pylist()
    if not lengths:
        return None
    return values.filter(scored).to_pylist(), lengths


def quantiles_combine_fn(weighted: bool, epsilon: float) -> ApproximateQuantilesCombineFn:
    """Beam's combiner of QUANTILE_STEPS + 1 quantiles, fed batches as `score_batches` yields.

    Its rank error stays below `epsilon` times the number (or weight) of
    scores while there are fewer than 1e9 of them (Beam's default bound).
    """
    return ApproximateQuantilesCombineFn.create(
        num_quantiles=QUANTILE_STEPS + 1,
        epsilon=epsilon,
        weighted=weighted,
        input_batched=True,
    )


def shard_summaries(
    path: str, scorer_names: Sequence[str], weighted: bool, epsilon: float
) -> Iterator[tuple[str, Summary]]:
    """Yield (scorer name, summary of its scores) for one scored shard.

    The shard is read in batches of rows in file order, each summary with its
    own new combiner, so a summary depends only on the shard's content.
    Scorers without scores in the shard yield nothing.
    """
    combiners = {name: quantiles_combine_fn(weighted, epsilon) for name in scorer_names}
    summaries = {name: combiner.create_accumulator() for name, combiner in combiners.items()}
    for name, item in score_batches(path, scorer_names, weighted):
        summaries[name] = combiners[name].add_input(summaries[name], item)
    for name, summary in summaries.items():
        if not summary.is_empty():
            yield name, summary


def merge_in_order(
    summaries: Iterable[tuple[int, Summary]], weighted: bool, epsilon: float
) -> Summary:
    """Merge (position, summary) pairs in the order of their positions, with a new combiner.

    A combiner alternates between rounding up and down when it collapses
    buffers and keeps that state between calls, so a reused combiner would make
    the result depend on what it did before.
    """
    ordered = sorted(summaries, key=lambda item: item[0])
    if len(ordered) == 1:
        return ordered[0][1]
    combiner = quantiles_combine_fn(weighted, epsilon)
    return combiner.merge_accumulators(summary for _, summary in ordered)


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


@dataclass(frozen=True)
class _MergeSettings:
    scorer_names: tuple[str, ...]
    weighted: bool
    epsilon: float
    store: SummaryStore


def _rank_paths(paths: list[str]) -> dict[str, int]:
    return {path: rank for rank, path in enumerate(sorted(paths))}


def _summarize(path: str, ranks: dict[str, int], settings: _MergeSettings):
    rank = ranks[path]
    summaries = shard_summaries(path, settings.scorer_names, settings.weighted, settings.epsilon)
    for name, summary in summaries:
        yield (name, rank), settings.store.put(name, "shard", rank, summary)


def _regroup(item, fan_in: int | None):
    (name, position), summary = item
    group = 0 if fan_in is None else position // fan_in
    return (name, group), (position, summary)


def _merge_group(item, settings: _MergeSettings, level: str):
    (name, group), members = item
    members = sorted(members, key=lambda member: member[0])
    if len(members) == 1:
        return (name, group), members[0][1]
    loaded = ((position, settings.store.get(stored)) for position, stored in members)
    merged = merge_in_order(loaded, settings.weighted, settings.epsilon)
    return (name, group), settings.store.put(name, level, group, merged)


def _extract(item, settings: _MergeSettings):
    (name, _), stored = item
    combiner = quantiles_combine_fn(settings.weighted, settings.epsilon)
    return name, combiner.extract_output(settings.store.get(stored))


class ComputeQuantiles(beam.PTransform):
    """Shard paths in; (scorer name, QUANTILE_STEPS + 1 quantiles) out, for scorers with scores.

    The result does not depend on the order or grouping of the input paths.

    Args:
        scorer_names: scorers whose columns are read.
        weighted: weight each score by its segment's length in characters.
        epsilon: allowed rank error as a fraction of the number (or total weight) of scores.
        work_dir: directory for the summary files; None sends the summaries
            themselves through the shuffle.
    """

    def __init__(
        self,
        scorer_names: Sequence[str],
        weighted: bool,
        epsilon: float,
        work_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.settings = _MergeSettings(
            tuple(scorer_names), weighted, epsilon, SummaryStore(work_dir)
        )

    def expand(self, shard_paths):
        settings = self.settings
        ranks = (
            shard_paths
            | "CollectPaths" >> beam.combiners.ToList()
            | "RankPaths" >> beam.Map(_rank_paths)
        )
        summaries = shard_paths | "Summarize" >> beam.FlatMap(
            _summarize, beam.pvalue.AsSingleton(ranks), settings
        )
        for level in [*range(MERGE_LEVELS), "Final"]:
            fan_in = MERGE_FAN_IN if level != "Final" else None
            summaries = (
                summaries
                | f"Regroup{level}" >> beam.Map(_regroup, fan_in)
                | f"Group{level}" >> beam.GroupByKey()
                | f"Merge{level}" >> beam.Map(_merge_group, settings, f"level{level}")
            )
        return summaries | "Extract" >> beam.Map(_extract, settings)


def fraction_warning(name: str, entry: Mapping) -> str | None:
    """Return a warning when the fraction labelled good is more than 1 point away from P.

    The fraction is of segments, or of characters when the percentile is
    weighted by characters. The warning names the cause: too few segments for
    P to be resolved, or else ties at the threshold.
    """
    percentile = entry.get("percentile")
    unit = entry.get("percentile_weight", "segments")
    fraction = entry.get("fraction_good_characters" if unit == "characters" else "fraction_good")
    if percentile is None or fraction is None or abs(fraction * 100 - percentile) <= 1:
        return None
    found = (
        f"{name}: {fraction:.2%} of the {unit} are labelled good at threshold "
        f"{entry['threshold']:.6g}, the P = {percentile:g} percentile. "
    )
    segments = entry.get("num_segments") or 0
    if _too_few_segments(segments, percentile, fraction, unit):
        return found + (
            f"With {segments} scored segments, each is {100 / segments:.3g}% of them, too "
            f"few to resolve P = {percentile:g} within 1 point; score more segments, or set "
            "a fixed --threshold"
        )
    return found + (
        "The difference is more than 1 point because every segment scoring exactly the "
        "threshold is good (ties); a fixed --threshold states the rule directly"
    )


def _too_few_segments(segments: int, percentile: float, fraction: float, unit: str) -> bool:
    """Whether the segment count alone explains a fraction more than 1 point away from P."""
    if not segments:
        return False
    if unit == "segments":
        # Without ties the fraction is the nearest rank's, a multiple of 1 / segments.
        return abs(fraction - nearest_rank(percentile, segments) / segments) <= 0.01
    return segments * min(percentile, 100 - percentile) < 100


def nearest_rank(percentile: float, total: float) -> float:
    """Rank (1-based; total weight when weighted) of the exact P-th percentile."""
    return max(1.0, math.ceil(percentile / 100 * total - 1e-9))


def rank_error(
    sorted_scores: Sequence[float],
    threshold: float,
    percentile: float,
    cumulative_weights: Sequence[float] | None = None,
) -> float:
    """Distance, as a fraction of all scores (or weight), from a threshold's rank to the exact one.

    With ties a threshold covers a range of ranks: from one above the number
    (or weight) of lower scores up to the number of scores at or below it. The
    error is 0 when the exact nearest rank is in that range, else the number of
    ranks to the range's nearer end, divided by the total.

    Args:
        sorted_scores: every score, ascending.
        threshold: the threshold to check.
        percentile: P in percent.
        cumulative_weights: running totals of the weights in the order of
            `sorted_scores`, for weighted percentiles.
    """
    below = bisect.bisect_left(sorted_scores, threshold)
    at_or_below = bisect.bisect_right(sorted_scores, threshold)
    if cumulative_weights is None:
        total, low, high = len(sorted_scores), below, at_or_below
    else:
        total = cumulative_weights[-1]
        low = cumulative_weights[below - 1] if below else 0
        high = cumulative_weights[at_or_below - 1] if at_or_below else 0
    target = nearest_rank(percentile, total)
    if target <= low:
        return (low + 1 - target) / total
    if target > high:
        return (target - high) / total
    return 0.0
