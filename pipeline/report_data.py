"""The data of the run report, read from an output directory without matplotlib.

It comes from OUT/manifest.json, OUT/thresholds.json and the final shards, which are read
in two streaming passes over a few columns: the first collects labels and the range of
each scorer's scores, the second fills histograms whose bins fit that range. Final shards
in the ``phf`` layout lack these columns, so the scored shards are read instead and the
labels computed from the thresholds (see `document_batches`).
"""

from __future__ import annotations

import json
import math
import posixpath
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import files
from pipeline.label import label_segments
from pipeline.run import MANIFEST_FILE, THRESHOLDS_FILE
from pipeline.shards import SCORED_DIR, SHARDS_DIR, iter_shard_batches, with_refined_copies
from schemas.output import score_column

DEFAULT_SOURCE_FIELD = "source"
# Groups shown in the "labels by source" plot; smaller sources are summed into one bar.
MAX_SOURCES = 15
HISTOGRAM_BINS = 60
# Positive scores spread over at least this ratio (max / min) get logarithmic bins.
LOG_RANGE_RATIO = 1000


class NotAnOutputDirectoryError(FileNotFoundError):
    """A directory contains no manifest.json of a finished run."""


@dataclass
class ScoreRange:
    """Count and range of one scorer's non-null segment scores."""

    count: int = 0
    zeros: int = 0
    minimum: float = math.inf
    maximum: float = -math.inf
    min_positive: float = math.inf

    def update(self, values: np.ndarray) -> None:
        if not len(values):
            return
        self.count += len(values)
        self.zeros += int(np.count_nonzero(values == 0))
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        positive = values[values > 0]
        if len(positive):
            self.min_positive = min(self.min_positive, float(positive.min()))


@dataclass
class RunData:
    """Report data gathered from one output directory."""

    output_dir: str
    manifest: dict
    thresholds: dict
    scorer_names: list[str]
    ranges: dict[str, ScoreRange] = field(default_factory=dict)
    histograms: dict[str, tuple[np.ndarray, np.ndarray, bool]] = field(default_factory=dict)
    labels_by_kind: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    labels_by_source: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    shards: DocumentShards | None = None


@dataclass
class DocumentShards:
    """The shards that hold a run's documents with the default columns.

    Attributes:
        paths: the final shards, or the scored shards when the final ones are in the
            ``phf`` layout.
        thresholds: scorer name -> threshold, to compute the labels of scored shards;
            None when the shards have a ``labels`` column.
    """

    paths: list[str]
    thresholds: dict[str, float | None] | None = None


class NoDocumentShardsError(ValueError):
    """The final shards are in the phf layout and no scored shards are left to read."""


def document_shards(output_dir: str, manifest: Mapping, thresholds: Mapping) -> DocumentShards:
    """Find the shards of a finished run that hold its documents with the default columns.

    For the ``phf`` layout these are the scored shards: OUT/scored/, or for the output
    of ``annotate label``, the scored or final shards of the run it relabelled. Each
    is replaced by its copy in OUT/refined/ where refinement wrote one, and a scored
    shard of the relabelled run first by its copy in that run's refined/, as
    `pipeline.relabel.find_scored_shards` reads it.

    Raises:
        NoDocumentShardsError: the layout is ``phf`` and no such shards exist.
    """
    if manifest.get("layout", {}).get("name") != "phf":
        return DocumentShards(files.match(files.join(output_dir, SHARDS_DIR, "*.parquet")))
    names = [scorer["name"] for scorer in manifest.get("scorers", [])] or list(thresholds)
    labels_from = {name: thresholds.get(name, {}).get("threshold") for name in names}
    # Each directory, with the relabelled run whose refined/ copies replace its shards.
    directories = [(files.join(output_dir, SCORED_DIR), None)]
    if manifest.get("relabelled_from"):
        source = manifest["relabelled_from"]
        directories += [
            (files.join(source, SCORED_DIR), source),
            (files.join(source, SHARDS_DIR), None),
        ]
    for directory, refined_in in directories:
        paths = files.match(files.join(directory, "*.parquet"))
        if paths and "segments" in _column_names(paths[0]):
            if refined_in is not None:
                paths = with_refined_copies(refined_in, paths)
            paths = with_refined_copies(output_dir, paths)
            return DocumentShards(paths, labels_from)
    raise NoDocumentShardsError(
        f"the shards of {output_dir} are in the phf layout, which has no labels or kinds, "
        "and no scored shards are left to read them from (looked in "
        f"{', '.join(directory for directory, _ in directories)})"
    )


def _column_names(path: str) -> list[str]:
    with files.open_read(path) as stream:
        return pq.read_schema(stream).names


def document_batches(shards: DocumentShards, columns: Sequence[str]) -> Iterator[pa.RecordBatch]:
    """Yield the documents' `columns` in batches, in shard order, computing labels if needed."""
    if shards.thresholds is None or "labels" not in columns:
        yield from _batches(shards.paths, columns)
        return
    score_columns = [score_column(name) for name in shards.thresholds]
    read_columns = list(dict.fromkeys([c for c in columns if c != "labels"] + ["segments"]))
    for batch in _batches(shards.paths, read_columns + score_columns):
        rows = batch.select(["segments", *score_columns]).to_pydict()
        labels = [
            label_segments(
                segments,
                {name: rows[score_column(name)][row] for name in shards.thresholds},
                shards.thresholds,
            )
            for row, segments in enumerate(rows["segments"])
        ]
        batch = batch.append_column("labels", pa.array(labels, pa.list_(pa.string())))
        yield batch.select(list(columns))


def load_run(output_dir: str, source_field: str = DEFAULT_SOURCE_FIELD) -> RunData:
    """Read a finished run's run files and, in two passes, its shards.

    Args:
        output_dir: output directory of `annotate run`.
        source_field: metadata field that names a document's source; documents without
            it are grouped by input file.

    Raises:
        NotAnOutputDirectoryError: `output_dir` contains no manifest.json.
    """
    manifest, thresholds = load_run_files(output_dir)
    names = [scorer["name"] for scorer in manifest.get("scorers", [])] or list(thresholds)
    data = RunData(output_dir, manifest, thresholds, names)
    data.shards = document_shards(output_dir, manifest, thresholds)
    collect_labels_and_ranges(data, data.shards, source_field)
    collect_histograms(data, data.shards)
    return data


def load_run_files(output_dir: str) -> tuple[dict, dict]:
    """Read manifest.json and thresholds.json (empty when missing) of an output directory.

    Raises:
        NotAnOutputDirectoryError: `output_dir` contains no manifest.json.
    """
    manifest_path = files.join(output_dir, MANIFEST_FILE)
    if not files.exists(manifest_path):
        raise NotAnOutputDirectoryError(
            f"{MANIFEST_FILE} not found in {output_dir}; pass the output directory of a "
            "finished 'annotate run'"
        )
    manifest = files.read_json(manifest_path)
    thresholds_path = files.join(output_dir, THRESHOLDS_FILE)
    thresholds = files.read_json(thresholds_path) if files.exists(thresholds_path) else {}
    return manifest, thresholds


def collect_labels_and_ranges(data: RunData, shards: DocumentShards, source_field: str):
    """First pass: segment labels by kind and by source, and each scorer's score range."""
    data.ranges = {name: ScoreRange() for name in data.scorer_names}
    columns = ["kind", "labels", "metadata", "input_file"]
    columns += [score_column(name) for name in data.scorer_names]
    for batch in document_batches(shards, columns):
        rows = batch.to_pydict()
        for kind, labels, metadata, input_file in zip(
            rows["kind"], rows["labels"], rows["metadata"], rows["input_file"], strict=True
        ):
            counts = Counter("blank" if label is None else label for label in labels)
            data.labels_by_kind[kind].update(counts)
            data.labels_by_source[document_source(metadata, input_file, source_field)].update(
                counts
            )
        for name in data.scorer_names:
            data.ranges[name].update(_scores(batch, name))


def collect_histograms(data: RunData, shards: DocumentShards) -> None:
    """Second pass: one histogram per scorer, over bins chosen from the first pass."""
    bins = {}
    for name, score_range in data.ranges.items():
        if score_range.count:
            threshold = data.thresholds.get(name, {}).get("threshold")
            bins[name] = histogram_bins(score_range, threshold)
    counts = {name: np.zeros(len(edges) - 1, dtype=np.int64) for name, (edges, _) in bins.items()}
    for batch in document_batches(shards, [score_column(name) for name in bins]):
        for name, (edges, log_x) in bins.items():
            values = _scores(batch, name)
            if log_x:
                values = values[values > 0]
            counts[name] += np.histogram(values, bins=edges)[0]
    data.histograms = {name: (edges, counts[name], log_x) for name, (edges, log_x) in bins.items()}


def histogram_bins(score_range: ScoreRange, threshold: float | None) -> tuple[np.ndarray, bool]:
    """Bin edges that cover every score and the threshold, and whether they are logarithmic.

    Bins are logarithmic when no score is negative and the positive scores spread over at
    least LOG_RANGE_RATIO, as probabilities of rare classes do. Zeros then fall outside the
    axis, so the report states how many there are.
    """
    low, high = score_range.minimum, score_range.maximum
    positive_spread = score_range.maximum / score_range.min_positive
    if low >= 0 and math.isfinite(positive_spread) and positive_spread >= LOG_RANGE_RATIO:
        low = score_range.min_positive
        if threshold is not None and threshold > 0:
            low = min(low, threshold)
        edges = np.geomspace(low, max(high, threshold or 0), HISTOGRAM_BINS + 1)
        return edges, True
    if threshold is not None:
        low, high = min(low, threshold), max(high, threshold)
    if low == high:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, HISTOGRAM_BINS + 1), False


def document_source(metadata: str, input_file: str, source_field: str) -> str:
    """Return the document's `source_field` value, or its input file's name without one."""
    if f'"{source_field}"' in metadata:
        value = json.loads(metadata).get(source_field)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    return posixpath.basename(input_file)


def top_groups(groups: Mapping[str, Counter], limit: int) -> tuple[dict[str, Counter], list[str]]:
    """Keep the `limit` - 1 groups with most segments and sum the rest into one group."""
    order = sorted(groups, key=lambda name: (-sum(groups[name].values()), name))
    if len(order) <= limit:
        return dict(groups), order
    kept, rest = order[: limit - 1], order[limit - 1 :]
    other = f"other ({len(rest)} sources)"
    result = {name: groups[name] for name in kept}
    result[other] = sum((groups[name] for name in rest), Counter())
    return result, [*kept, other]


def _batches(shard_paths: Iterable[str], columns: Sequence[str]) -> Iterable[pa.RecordBatch]:
    for path in shard_paths:
        yield from iter_shard_batches(path, columns=list(columns))


def _scores(batch: pa.RecordBatch, name: str) -> np.ndarray:
    column = batch.column(score_column(name))
    return column.flatten().drop_null().to_numpy(zero_copy_only=False)
