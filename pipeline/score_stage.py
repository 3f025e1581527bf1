"""The scoring pass as a Beam DoFn: input file in, scored shards out.

Each input file is read, segmented and scored in bounded batches by one
worker, which streams the rows into Parquet shards. A shard is renamed into
place and then marked complete, with its counts in the marker; a rerun skips
marked shards and reports their stored counts, so counts add up across
attempts.

Documents that the duplicate-removal pass removed are read and counted
(``documents_duplicates``) but neither segmented nor scored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import files
from pipeline.dedup import DocumentKey
from pipeline.progress import ProgressWriter
from pipeline.read import DAMAGED_INPUT, Document, InputIssue, Rejection, read_records
from pipeline.score import DocumentScorer
from pipeline.shards import (
    DUPLICATES_DIR,
    REJECTED_DIR,
    SCORED_DIR,
    ParquetShardWriter,
    RejectionWriter,
    document_counts,
    marker_path,
    scored_columns,
    shard_name,
    write_duplicates,
)
from schemas.config import RunConfig
from schemas.output import scored_schema
from scorers.base import SEGMENT_KINDS, Scorer

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "feedback_annotate"
SCORE_STAGE = "score"
# Counters of DocumentScorer that count segments, one per segment kind.
SEGMENT_COUNTS = tuple(f"segments_{kind}" for kind in SEGMENT_KINDS)

# Beam counters of the work done by one attempt, as opposed to the counts of a
# shard, which are stored in its marker and are the same in every attempt.
SCORER_SETUPS = "scorer_setups"
SCORED_SHARDS_SKIPPED = "scored_shards_skipped"


class WorkerShutdownError(RuntimeError):
    """The DoFn was torn down while it still scored a shard."""


@dataclass
class ShardResult:
    """A completed shard: its name, path, counts and the damage found in its input.

    `damaged_inputs` has one entry per damaged input file, with the keys
    input_file, lines_read and error.
    """

    name: str
    path: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: bool = False
    damaged_inputs: list[dict] = field(default_factory=list)


class ScoreFileFn(beam.DoFn):
    """Reads one input file and writes its scored shards under OUT/scored/.

    Elements are (input file, {line: kept document key}) pairs, the second
    naming the file's documents removed as duplicates.

    With a `progress_dir` (local runs only), it also counts the documents and segments
    it has done into a file there; see `pipeline.progress`.
    """

    def __init__(
        self,
        config: RunConfig,
        scorers: Sequence[Scorer],
        provenance: dict,
        progress_dir: str | None = None,
    ) -> None:
        self.config = config
        self.scorers = list(scorers)
        self.provenance = provenance
        self.scorer_names = [s.name for s in self.scorers]
        self.progress_dir = progress_dir
        self._scorer: DocumentScorer | None = None
        self._progress: ProgressWriter | None = None
        self._torn_down = False

    def setup(self) -> None:
        # The models are loaded by the first shard that needs scoring, so that a resumed
        # run whose shards are all complete loads none.
        self._torn_down = False
        self._scorer = DocumentScorer(self.scorers, self.config.segment, self.config.fail_fast)
        self._models_loaded = False
        if self.progress_dir:
            self._progress = ProgressWriter(self.progress_dir)

    def finish_bundle(self) -> None:
        if self._progress is not None:
            self._progress.flush()

    def teardown(self) -> None:
        # Beam 2.77's SDK worker, when its runner shuts it down (as after Ctrl-C),
        # tears DoFns down while a bundle may still run in another thread. The
        # flag is set first, so `_write_shard` cannot complete a shard whose
        # documents were scored after the models were released.
        self._torn_down = True
        if self._scorer is not None and self._models_loaded:
            self._scorer.teardown()
            self._models_loaded = False

    def process(self, element: tuple[str, Mapping[int, DocumentKey]]) -> Iterator[ShardResult]:
        input_file, duplicates = element
        for index, items in _chunks(input_file, self.config):
            name = shard_name(input_file, index)
            marker = marker_path(self.config.output_dir, SCORE_STAGE, name)
            if files.exists(marker):
                _drain(items)
                completed = _completed(name, marker)
                self._add_progress(completed.counts.get("documents_read", 0), completed.counts)
                yield completed
                continue
            self._load_models()
            result = self._write_shard(name, items, duplicates)
            stored = {"name": name, "path": result.path, "counts": result.counts}
            files.write_json(marker, stored | {"damaged_inputs": result.damaged_inputs})
            _report(result.counts)
            yield result

    def _load_models(self) -> None:
        if self._models_loaded:
            return
        if self._torn_down:
            raise WorkerShutdownError(
                "the worker is shutting down, so its scorers are not loaded again; the "
                "remaining shards are left for a rerun"
            )
        self._scorer.setup()
        self._models_loaded = True
        Metrics.counter(METRICS_NAMESPACE, SCORER_SETUPS).inc()

    def _write_shard(
        self,
        name: str,
        items: Iterator[Document | Rejection | InputIssue],
        duplicates: Mapping[int, DocumentKey],
    ) -> ShardResult:
        path = files.join(self.config.output_dir, SCORED_DIR, f"{name}.parquet")
        writer = ParquetShardWriter(path, scored_schema(self.scorer_names), self.provenance)
        rejected = RejectionWriter(
            files.join(self.config.output_dir, REJECTED_DIR, f"{name}.jsonl")
        )
        result = ShardResult(name, path)
        counts: Counter[str] = Counter(documents_read=0)
        removed: list[tuple[Document, DocumentKey]] = []
        try:
            for batch in _batches(items, self.config.batch_documents):
                self._write_batch(batch, writer, rejected, counts, duplicates, removed)
                if self._torn_down:
                    raise WorkerShutdownError(
                        f"the scorers were torn down while shard {name} was scored, because "
                        "the worker is shutting down; the shard is left for a rerun"
                    )
                result.damaged_inputs.extend(_damage_entries(batch))
        except BaseException:
            writer.abort()
            rejected.abort()
            raise
        rejected.close()
        if removed and self.config.dedup.write_duplicates:
            removed_path = files.join(self.config.output_dir, DUPLICATES_DIR, f"{name}.jsonl")
            write_duplicates(removed_path, removed)
        writer.close()
        counts["documents_scored"] = writer.rows
        counts["documents_rejected"] = rejected.count
        counts["documents_duplicates"] = len(removed)
        result.counts = dict(counts)
        logger.debug(
            "scored shard %s: %d documents read, %d scored, %d rejected, %d duplicates",
            name,
            counts["documents_read"],
            writer.rows,
            rejected.count,
            len(removed),
        )
        return result

    def _write_batch(
        self,
        batch: list[Document | Rejection | InputIssue],
        writer: ParquetShardWriter,
        rejected: RejectionWriter,
        counts: Counter[str],
        duplicates: Mapping[int, DocumentKey],
        removed: list[tuple[Document, DocumentKey]],
    ) -> None:
        """Score the batch's documents into the shard and write its rejections."""
        rejections = [item for item in batch if isinstance(item, Rejection)]
        read = sum(1 for item in batch if isinstance(item, Document)) + len(rejections)
        documents = _remove_duplicates(batch, duplicates, removed)
        counts.update(document_counts(batch))
        counts["documents_read"] += read
        rejected.write(rejections)
        self._scorer.counts.clear()
        scored = self._scorer.score(documents)
        counts.update(self._scorer.counts)
        writer.write(scored_columns(scored, self.scorer_names))
        self._add_progress(read, self._scorer.counts)

    def _add_progress(self, documents: int, counts: dict[str, int]) -> None:
        if self._progress is not None:
            segments = sum(v for k, v in counts.items() if k in SEGMENT_COUNTS)
            self._progress.add(documents, segments)


def _remove_duplicates(
    batch: list[Document | Rejection | InputIssue],
    duplicates: Mapping[int, DocumentKey],
    removed: list[tuple[Document, DocumentKey]],
) -> list[Document]:
    """Return the batch's documents to score; append removed ones with their kept key."""
    documents = []
    for item in batch:
        if not isinstance(item, Document):
            continue
        kept_key = duplicates.get(item.input_line)
        if kept_key is None:
            documents.append(item)
        else:
            removed.append((item, kept_key))
    return documents


def _damage_entries(batch: Sequence[Document | Rejection | InputIssue]) -> Iterator[dict]:
    for item in batch:
        if isinstance(item, InputIssue) and item.reason == DAMAGED_INPUT:
            yield {
                "input_file": item.input_file,
                "lines_read": item.input_line,
                "error": item.detail,
            }


def _completed(name: str, marker: str) -> ShardResult:
    stored = files.read_json(marker)
    logger.info("skipping completed shard %s", name)
    Metrics.counter(METRICS_NAMESPACE, SCORED_SHARDS_SKIPPED).inc()
    damaged = stored.get("damaged_inputs", [])
    return ShardResult(name, stored["path"], stored["counts"], skipped=True, damaged_inputs=damaged)


def _report(counts: dict[str, int]) -> None:
    for key, value in counts.items():
        Metrics.counter(METRICS_NAMESPACE, key).inc(value)


def _drain(items: Iterator) -> None:
    for _ in items:
        pass


def _chunks(
    input_file: str, config: RunConfig
) -> Iterator[tuple[int, Iterator[Document | Rejection | InputIssue]]]:
    """Split a file's records into consecutive shards of `docs_per_shard` (0: one shard)."""
    records = read_records(input_file, config.read)
    size = config.docs_per_shard
    if size <= 0:
        yield 0, records
        return
    index = 0
    while True:
        chunk = _take(records, size)
        first = next(chunk, None)
        if first is None:
            if index == 0:
                yield 0, iter(())
            return
        yield index, _prepend(first, chunk)
        _drain(chunk)
        index += 1


def _take(iterator: Iterator, count: int) -> Iterator:
    """Yield items until `count` documents, rejected or not, have passed; InputIssues are free."""
    documents = 0
    while documents < count:
        item = next(iterator, None)
        if item is None:
            return
        if not isinstance(item, InputIssue):
            documents += 1
        yield item


def _prepend(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _batches(
    items: Iterator[Document | Rejection | InputIssue], max_documents: int
) -> Iterator[list]:
    """Group items into batches of roughly `max_documents` characters' worth of work.

    Segments are not known before segmentation, so a batch is closed after
    `max_documents` records or 1,000,000 characters of text, whichever
    comes first; that bounds memory for any mix of short and huge documents.
    """
    batch: list[Document | Rejection | InputIssue] = []
    characters = 0
    for item in items:
        batch.append(item)
        if isinstance(item, Document):
            characters += len(item.text)
        if len(batch) >= max_documents or characters >= 1_000_000:
            yield batch
            batch, characters = [], 0
    if batch:
        yield batch
