"""The scoring pass as a Beam DoFn: input file in, scored shards out.

Each input file is read, segmented and scored in bounded batches by one
worker, which streams the rows into Parquet shards. A shard is renamed into
place and then marked complete, with its counts in the marker; a rerun skips
marked shards and reports their stored counts, so counts add up across
attempts.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import apache_beam as beam
from apache_beam.metrics import Metrics

from pipeline import files
from pipeline.read import (
    Document,
    InputDamagedError,
    Rejection,
    is_parquet,
    parse_record,
    read_lines,
    read_parquet,
)
from pipeline.score import DocumentScorer
from pipeline.shards import (
    REJECTED_DIR,
    SCORED_DIR,
    ParquetShardWriter,
    document_counts,
    marker_path,
    scored_columns,
    shard_name,
    write_rejections,
)
from schemas.config import RunConfig
from schemas.output import scored_schema
from scorers.base import Scorer

logger = logging.getLogger(__name__)

METRICS_NAMESPACE = "feedback_annotate"
SCORE_STAGE = "score"

# Beam counters of the work done by one attempt, as opposed to the counts of a
# shard, which are stored in its marker and are the same in every attempt.
SCORER_SETUPS = "scorer_setups"
SCORED_SHARDS_SKIPPED = "scored_shards_skipped"


@dataclass
class ShardResult:
    """A completed shard: its name, path and counts."""

    name: str
    path: str
    counts: dict[str, int] = field(default_factory=dict)
    skipped: bool = False


class ScoreFileFn(beam.DoFn):
    """Reads one input file and writes its scored shards under OUT/scored/."""

    def __init__(self, config: RunConfig, scorers: Sequence[Scorer], provenance: dict) -> None:
        self.config = config
        self.scorers = list(scorers)
        self.provenance = provenance
        self.scorer_names = [s.name for s in self.scorers]
        self._scorer: DocumentScorer | None = None

    def setup(self) -> None:
        self._scorer = DocumentScorer(self.scorers, self.config.segment, self.config.fail_fast)
        self._scorer.setup()
        self._setup_counted = False

    def teardown(self) -> None:
        if self._scorer is not None:
            self._scorer.teardown()

    def process(self, input_file: str) -> Iterator[ShardResult]:
        if not self._setup_counted:
            # Counted here because Beam keeps no counters during setup.
            Metrics.counter(METRICS_NAMESPACE, SCORER_SETUPS).inc()
            self._setup_counted = True
        for index, items in _chunks(input_file, self.config):
            name = shard_name(input_file, index)
            marker = marker_path(self.config.output_dir, SCORE_STAGE, name)
            if files.exists(marker):
                _drain(items)
                yield _completed(name, marker)
                continue
            result = self._write_shard(name, items)
            files.write_json(marker, {"name": name, "path": result.path, "counts": result.counts})
            _report(result.counts)
            yield result

    def _write_shard(self, name: str, items: Iterator[Document | Rejection]) -> ShardResult:
        path = files.join(self.config.output_dir, SCORED_DIR, f"{name}.parquet")
        writer = ParquetShardWriter(path, scored_schema(self.scorer_names), self.provenance)
        counts: Counter[str] = Counter()
        rejections: list[Rejection] = []
        try:
            for batch in _batches(items, self.config.batch_documents):
                counts.update(document_counts(batch))
                documents = [item for item in batch if isinstance(item, Document)]
                rejections.extend(item for item in batch if isinstance(item, Rejection))
                counts["documents_read"] += len(batch)
                self._scorer.counts.clear()
                scored = self._scorer.score(documents)
                counts.update(self._scorer.counts)
                writer.write(scored_columns(scored, self.scorer_names))
        except BaseException:
            writer.abort()
            raise
        if rejections:
            rejected = files.join(self.config.output_dir, REJECTED_DIR, f"{name}.jsonl")
            write_rejections(rejected, rejections)
        writer.close()
        counts["documents_scored"] = writer.rows
        counts["documents_rejected"] = len(rejections)
        return ShardResult(name, path, dict(counts))


def _completed(name: str, marker: str) -> ShardResult:
    stored = files.read_json(marker)
    logger.info("skipping completed shard %s", name)
    Metrics.counter(METRICS_NAMESPACE, SCORED_SHARDS_SKIPPED).inc()
    return ShardResult(name, stored["path"], stored["counts"], skipped=True)


def _report(counts: dict[str, int]) -> None:
    for key, value in counts.items():
        Metrics.counter(METRICS_NAMESPACE, key).inc(value)


def _drain(items: Iterator) -> None:
    for _ in items:
        pass


def _records(input_file: str, config: RunConfig) -> Iterator[Document | Rejection]:
    try:
        if is_parquet(input_file):
            yield from read_parquet(input_file, config.read)
            return
        for line_number, raw in read_lines(input_file):
            yield parse_record(raw, input_file, line_number, config.read)
    except InputDamagedError as error:
        logger.error("%s", error)
        yield Rejection("damaged_input", str(error), input_file, error.last_good_line + 1, "")


def _chunks(
    input_file: str, config: RunConfig
) -> Iterator[tuple[int, Iterator[Document | Rejection]]]:
    """Split a file's records into consecutive shards of `docs_per_shard` (0: one shard)."""
    records = _records(input_file, config)
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
    for _ in range(count):
        item = next(iterator, None)
        if item is None:
            return
        yield item


def _prepend(first, rest: Iterator) -> Iterator:
    yield first
    yield from rest


def _batches(items: Iterator[Document | Rejection], max_documents: int) -> Iterator[list]:
    """Group items into batches of roughly `max_documents` characters' worth of work.

    Segments are not known before segmentation, so a batch is closed after
    `max_documents` records or 1,000,000 characters of text, whichever
    comes first; that bounds memory for any mix of short and huge documents.
    """
    batch: list[Document | Rejection] = []
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
