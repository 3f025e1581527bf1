"""The refinement pass: segments near a threshold scored again at full precision.

A scorer run in reduced precision (bf16, fp16 or int8) moves every score a
little. Far from a threshold that changes no label; near it, it does. Once the
thresholds have been taken from the reduced-precision scores, this pass scores
again, with the scorer at full precision (`scorers.base.Refinement`), every
segment whose log-odds lie within the scorer's margin of its threshold. Shards
with such segments are written again under OUT/refined/ with the new scores.
The thresholds are then taken anew from the refined shards, and the labels
from them. With ``--token-mode bucket`` the bucket edges decide tokens as the
threshold decides labels, so segments near an edge are refined as well, and
everything below about the threshold holds for each edge.

Why the labels then equal those of a full-precision run: let every score move
by at most `e` log-odds, let the threshold taken from the reduced scores be t0
and the one taken from the refined scores t. A segment left alone lies more
than the margin from t0; if the margin is at least e + |t - t0|, its reduced
and exact scores lie on the same side of t. The refined scores and the exact
ones then order the same way around t, so t is also the exact scores'
percentile, and every label matches.

The pass cannot know `e` for the segments it leaves alone, so it checks the
condition on those it refines, which are the ones nearest the threshold. The
manifest records the largest change seen and the threshold's move, and a
warning names a wider margin when their sum exceeds it. When no segment lies
within the margin, nothing is measured, so the check is recorded as not made
(``margin_held`` null) and a warning is logged.
"""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.metrics import Metrics

from pipeline import files
from pipeline.score_stage import METRICS_NAMESPACE, SCORER_SETUPS, ShardResult
from pipeline.shards import (
    REFINED_DIR,
    SHARD_BATCH_ROWS,
    ParquetShardWriter,
    iter_shard_batches,
    marker_path,
)
from schemas.output import SCHEMA_METADATA_KEY, score_column
from scorers.base import Refinement, Score

logger = logging.getLogger(__name__)

REFINE_STAGE = "refine"
REFINED_SHARDS_SKIPPED = "refined_shards_skipped"

# Scores are clipped to [LOG_ODDS_CLIP, 1 - LOG_ODDS_CLIP] before taking log-odds, so
# that a score or threshold of exactly 0 or 1 has finite log-odds.
LOG_ODDS_CLIP = 1e-12


def log_odds(score: float) -> float:
    """Return log(score / (1 - score)), with the score clipped away from 0 and 1."""
    clipped = min(max(score, LOG_ODDS_CLIP), 1 - LOG_ODDS_CLIP)
    return math.log(clipped / (1 - clipped))


def near_threshold(score: Score, threshold: float, margin: float) -> bool:
    """Check whether a score lies within `margin` log-odds of the threshold."""
    return near_cut(score, [log_odds(threshold)], margin)


def cut_log_odds(entry: Mapping) -> list[float]:
    """Return the sorted log-odds of a plan entry's threshold and bucket edges."""
    cuts = [entry["threshold"], *entry.get("bucket_edges", ())]
    return sorted(log_odds(cut) for cut in cuts)


def near_cut(score: Score, cuts: Sequence[float], margin: float) -> bool:
    """Check whether a score lies within `margin` log-odds of any of the sorted `cuts`."""
    if score is None or not cuts:
        return False
    value = log_odds(score)
    index = bisect.bisect_left(cuts, value)
    neighbours = cuts[max(index - 1, 0) : index + 1]
    return any(abs(value - cut) <= margin for cut in neighbours)


@dataclass
class RefineStats:
    """Counts of one scorer's refinement.

    Attributes:
        segments: segments scored again at full precision.
        max_change: the largest change of their log-odds.
    """

    segments: int = 0
    max_change: float = 0.0

    def add(self, old: float, new: float) -> None:
        self.segments += 1
        self.max_change = max(self.max_change, abs(log_odds(new) - log_odds(old)))

    def merge(self, other: RefineStats) -> None:
        self.segments += other.segments
        self.max_change = max(self.max_change, other.max_change)


def refine_scores(
    scores: Sequence[Score],
    segments: Sequence[str],
    threshold: float,
    refinement: Refinement,
) -> tuple[list[Score], RefineStats]:
    """Score the segments near `threshold` again; return all scores, those near replaced.

    ``refinement.exact`` must be set up. The pipeline's pass does the same per shard.
    """
    margin = refinement.margin
    near = [i for i, score in enumerate(scores) if near_threshold(score, threshold, margin)]
    exact = refinement.exact.score_segments([segments[i] for i in near]) if near else []
    refined = list(scores)
    stats = RefineStats()
    for i, score in zip(near, exact, strict=True):
        stats.add(scores[i], score)
        refined[i] = score
    return refined, stats


@dataclass(frozen=True)
class RefinedShard:
    """A shard after refinement: the scored shard itself when nothing in it was near."""

    shard: ShardResult
    stats: dict[str, RefineStats] = field(default_factory=dict)


def refine_plan(
    refinements: Mapping[str, Refinement],
    thresholds: Mapping[str, float | None],
    bucket_edges: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, dict]:
    """Return {scorer name: {threshold, margin}} for the refined scorers that have a threshold.

    With `bucket_edges` (``--token-mode bucket``), each entry also lists the
    scorer's bucket edges, which are refined around as the threshold is.
    """
    plan = {}
    for name, refinement in refinements.items():
        if thresholds.get(name) is None:
            continue
        plan[name] = {"threshold": thresholds[name], "margin": refinement.margin}
        if bucket_edges is not None:
            plan[name]["bucket_edges"] = list(bucket_edges.get(name, []))
    return plan


class RefineShardFn(beam.DoFn):
    """Writes OUT/refined/NAME.parquet for a scored shard with segments near a threshold.

    The exact scorers are set up on first use, so a worker whose shards have no
    such segments loads no model. A marker records each refined shard, and a
    rerun with the same thresholds and margins skips it.
    """

    def __init__(self, output_dir: str, refinements: Mapping[str, Refinement]) -> None:
        self.output_dir = output_dir
        self.refinements = dict(refinements)
        self._set_up: set[str] = set()

    def setup(self) -> None:
        self._set_up = set()

    def teardown(self) -> None:
        for name in self._set_up:
            self.refinements[name].exact.teardown()
        self._set_up = set()

    def process(
        self,
        scored: ShardResult,
        thresholds: Mapping[str, float | None],
        bucket_edges: Mapping[str, Sequence[float]] | None = None,
    ) -> Iterator[RefinedShard]:
        plan = refine_plan(self.refinements, thresholds, bucket_edges)
        marker = marker_path(self.output_dir, REFINE_STAGE, scored.name)
        if files.exists(marker):
            stored = files.read_json(marker)
            if stored.get("source") == scored.path and stored.get("plan") == plan:
                Metrics.counter(METRICS_NAMESPACE, REFINED_SHARDS_SKIPPED).inc()
                stats = {name: RefineStats(**value) for name, value in stored["stats"].items()}
                yield RefinedShard(ShardResult(scored.name, stored["path"]), stats)
                return
        path, stats = self._refine(scored, plan)
        record = {name: vars(value) for name, value in stats.items()}
        stored = {"source": scored.path, "path": path, "plan": plan, "stats": record}
        files.write_json(marker, stored)
        yield RefinedShard(ShardResult(scored.name, path), stats)

    def _refine(self, scored: ShardResult, plan: Mapping[str, Mapping]):
        near = self._near_segments(scored.path, plan)
        stats = {name: RefineStats() for name in plan}
        path = files.join(self.output_dir, REFINED_DIR, f"{scored.name}.parquet")
        if not any(near.values()):
            # A copy from an attempt with other thresholds would be read by the report.
            files.remove(path)
            return scored.path, stats
        exact = {name: self._exact_scores(name, positions) for name, positions in near.items()}
        _write_refined(scored.path, path, plan, exact, stats)
        counts = ", ".join(f"{value.segments} for {name}" for name, value in stats.items())
        logger.debug("refined segments of shard %s at full precision: %s", scored.name, counts)
        return path, stats

    def _near_segments(self, path: str, plan: Mapping[str, Mapping]) -> dict[str, dict]:
        """Return {scorer name: {(row, segment index): segment}} for the segments near."""
        near: dict[str, dict] = {name: {} for name in plan}
        columns = ["segments", *(score_column(name) for name in plan)]
        row = 0
        for batch in iter_shard_batches(path, columns=columns):
            for name, entry in plan.items():
                near[name].update(_near_in_batch(batch, score_column(name), entry, row))
            row += batch.num_rows
        return near

    def _exact_scores(self, name: str, positions: Mapping[tuple[int, int], str]) -> dict:
        if not positions:
            return {}
        exact = self.refinements[name].exact
        if name not in self._set_up:
            exact.setup()
            self._set_up.add(name)
            Metrics.counter(METRICS_NAMESPACE, SCORER_SETUPS).inc()
        scores = exact.score_segments(list(positions.values()))
        return dict(zip(positions, scores, strict=True))


def _near_in_batch(batch: pa.RecordBatch, column: str, entry: Mapping, first_row: int) -> dict:
    """Return {(row, segment index): segment} for one scorer's segments near a cut point.

    Only the segments near are converted to Python strings, because they are few.
    """
    near = {}
    cuts = cut_log_odds(entry)
    segments = batch.column("segments")
    for offset, scores in enumerate(batch.column(column).to_pylist()):
        for index, score in enumerate(scores or ()):
            if near_cut(score, cuts, entry["margin"]):
                near[(first_row + offset, index)] = segments[offset][index].as_py()
    return near


def _write_refined(
    source: str,
    path: str,
    plan: Mapping[str, Mapping],
    exact: Mapping[str, Mapping[tuple[int, int], float]],
    stats: Mapping[str, RefineStats],
) -> None:
    """Copy the shard at `source` to `path` with the exact scores put in."""
    with files.open_read(source) as stream:
        parquet = pq.ParquetFile(stream)
        schema = parquet.schema_arrow
        metadata = json.loads((schema.metadata or {}).get(SCHEMA_METADATA_KEY, b"{}"))
        metadata["refined"] = dict(plan)
        writer = ParquetShardWriter(path, schema.remove_metadata(), metadata)
        row = 0
        try:
            for batch in parquet.iter_batches(batch_size=SHARD_BATCH_ROWS):
                columns = batch.to_pydict()
                for name, replacements in exact.items():
                    _replace_scores(columns[score_column(name)], row, replacements, stats[name])
                writer.write(columns)
                row += batch.num_rows
        except BaseException:
            writer.abort()
            raise
    writer.close()


def _replace_scores(column: list, first_row: int, replacements: Mapping, stats: RefineStats):
    for offset, scores in enumerate(column):
        for index, score in enumerate(scores or ()):
            new = replacements.get((first_row + offset, index))
            if new is not None:
                stats.add(score, new)
                scores[index] = new


def merge_refine_stats(items: Iterable[Mapping[str, RefineStats]]) -> dict[str, RefineStats]:
    """Merge the per-shard stats of every shard into one RefineStats per scorer."""
    merged: dict[str, RefineStats] = {}
    for item in items:
        for name, value in item.items():
            merged.setdefault(name, RefineStats()).merge(value)
    return merged


def refinement_summary(
    plan: Mapping[str, Mapping],
    stats: Mapping[str, RefineStats],
    thresholds: Mapping[str, float | None],
    aliases: Mapping[str, str],
    bucket_edges: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, dict]:
    """Return the manifest's ``refinement`` section, with the check of each margin.

    ``margin_held`` is None when no segment was refined, because then no change
    was measured to check the margin against.

    Args:
        plan: the refine plan: thresholds (and bucket edges) before refinement, and margins.
        stats: merged RefineStats per scorer.
        thresholds: the final thresholds, taken from the refined scores.
        aliases: scorer name -> alias, for the option named in warnings.
        bucket_edges: the final bucket edges, for a plan with bucket edges.
    """
    summary = {}
    for name, entry in plan.items():
        value = stats.get(name, RefineStats())
        final = thresholds.get(name)
        move = _move(entry["threshold"], final) if final is not None else 0.0
        summary[name] = {
            "alias": aliases.get(name, name),
            "margin": entry["margin"],
            "threshold_before": entry["threshold"],
            "threshold": final,
            "threshold_move": move,
        }
        if "bucket_edges" in entry:
            edges = list((bucket_edges or {}).get(name, []))
            summary[name]["bucket_edges_before"] = entry["bucket_edges"]
            summary[name]["bucket_edges"] = edges
            summary[name]["bucket_edges_move"] = max(
                map(_move, entry["bucket_edges"], edges), default=0.0
            )
            move = max(move, summary[name]["bucket_edges_move"])
        needed = value.max_change + move
        summary[name] |= {
            "segments": value.segments,
            "max_change": value.max_change,
            "margin_needed": needed,
            "margin_held": needed <= entry["margin"] if value.segments else None,
        }
    return summary


def _move(before: float, after: float) -> float:
    return abs(log_odds(after) - log_odds(before))


def refinement_lines(summary: Mapping[str, Mapping]) -> list[str]:
    """Return one line per refined scorer: segments scored again, and the margin's check."""
    lines = []
    for name, entry in summary.items():
        near, move = "the threshold", f"threshold move {entry['threshold_move']:.3g}"
        if "bucket_edges_move" in entry:
            near += " or a bucket edge"
            move += f" (bucket edges {entry['bucket_edges_move']:.3g})"
        lines.append(
            f"{name}: {entry['segments']} segment(s) near {near} scored again at full "
            f"precision; largest change {entry['max_change']:.3g} + {move} log-odds, "
            f"margin {entry['margin']:g}"
        )
    return lines


def refinement_warnings(summary: Mapping[str, Mapping]) -> list[str]:
    """Return one warning per scorer whose margin was narrower than the changes seen.

    A scorer with no segment within its margin gets a warning too, because its
    margin was not checked.
    """
    warnings = []
    for name, entry in summary.items():
        if entry["margin_held"] is None:
            warnings.append(_unchecked_warning(name, entry))
        elif not entry["margin_held"]:
            warnings.append(_narrow_warning(name, entry))
    return warnings


def _narrow_warning(name: str, entry: Mapping) -> str:
    moved = f"moved the threshold by {entry['threshold_move']:.3g}"
    if "bucket_edges_move" in entry:
        moved += f" and the bucket edges by up to {entry['bucket_edges_move']:.3g}"
    return (
        f"{name}: scoring again at full precision changed log-odds by up to "
        f"{entry['max_change']:.3g} and {moved}, more than the margin {entry['margin']:g}, "
        "so labels of segments farther from the threshold may differ from a full-precision "
        "run. Rerun with a wider margin, such as --scorer-option "
        f"{entry['alias']}.refine_margin={2 * entry['margin_needed']:.2g}"
    )


def _unchecked_warning(name: str, entry: Mapping) -> str:
    cuts = f"the threshold {entry['threshold']:.6g}"
    if entry.get("bucket_edges"):
        cuts += " or a bucket edge"
    return (
        f"{name}: no segment scored within the margin {entry['margin']:g} (log-odds) of "
        f"{cuts}, so no score was refined and the margin could not be checked. Labels "
        "equal a full-precision run only if reduced precision moved no score across it; "
        f"to check, rerun with a wider --scorer-option {entry['alias']}.refine_margin"
    )
