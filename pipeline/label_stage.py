"""The labelling pass as a Beam DoFn: scored shard in, final shard out.

It needs no model: it reads stored segments and scores, applies the run's
thresholds, and writes the token-inserted text beside them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipeline import files
from pipeline.label import BAD, GOOD, insert_tokens, label_segments
from pipeline.score_stage import METRICS_NAMESPACE, ShardResult, _report
from pipeline.shards import SHARDS_DIR, ParquetShardWriter, iter_shard_batches, marker_path
from schemas.config import LabelOptions
from schemas.output import labelled_schema, score_column

logger = logging.getLogger(__name__)

LABEL_STAGE = "label"
LABELLED_SHARDS_SKIPPED = "labelled_shards_skipped"


class LabelShardFn(beam.DoFn):
    """Writes OUT/shards/NAME.parquet for one scored shard, given the thresholds."""

    def __init__(
        self,
        output_dir: str,
        scorer_names: Sequence[str],
        options: LabelOptions,
        provenance: dict,
    ) -> None:
        self.output_dir = output_dir
        self.scorer_names = list(scorer_names)
        self.options = options
        self.provenance = provenance

    def process(
        self, scored: ShardResult, thresholds: Mapping[str, float | None]
    ) -> Iterator[dict[str, int]]:
        thresholds = {name: thresholds.get(name) for name in self.scorer_names}
        marker = marker_path(self.output_dir, LABEL_STAGE, scored.name)
        if files.exists(marker):
            stored = files.read_json(marker)
            if stored.get("thresholds") == thresholds:
                logger.info("skipping labelled shard %s", scored.name)
                Metrics.counter(METRICS_NAMESPACE, LABELLED_SHARDS_SKIPPED).inc()
                yield stored["counts"]
                return
        path = files.join(self.output_dir, SHARDS_DIR, f"{scored.name}.parquet")
        counts = self._write(scored.path, path, thresholds)
        files.write_json(marker, {"path": path, "thresholds": thresholds, "counts": counts})
        _report(counts)
        yield counts

    def _write(self, source: str, path: str, thresholds: dict[str, float | None]) -> dict:
        schema = labelled_schema(self.scorer_names)
        metadata = dict(self.provenance, thresholds=thresholds)
        writer = ParquetShardWriter(path, schema, metadata)
        counts: Counter[str] = Counter()
        try:
            for batch in iter_shard_batches(source):
                columns = batch.to_pydict()
                self._label_batch(columns, thresholds, counts)
                writer.write({name: columns[name] for name in schema.names})
        except BaseException:
            writer.abort()
            raise
        writer.close()
        counts["documents_written"] = writer.rows
        return dict(counts)

    def _label_batch(self, columns: dict, thresholds: dict, counts: Counter) -> None:
        texts, labels_column = [], []
        for row, segments in enumerate(columns["segments"]):
            scores = {name: columns[score_column(name)][row] for name in self.scorer_names}
            labels = label_segments(segments, scores, thresholds)
            texts.append(insert_tokens(segments, labels, self.options))
            labels_column.append(labels)
            _count_labels(labels, scores, thresholds, counts)
        columns["text"] = texts
        columns["labels"] = labels_column


def _count_labels(labels, scores, thresholds, counts: Counter) -> None:
    counts["segments_good"] += labels.count(GOOD)
    counts["segments_bad"] += labels.count(BAD)
    counts["segments_blank"] += labels.count(None)
    for name, values in scores.items():
        if values is None:
            continue
        threshold = thresholds[name]
        scored = [v for v in values if v is not None]
        counts[f"scored_{name}"] += len(scored)
        if threshold is not None:
            counts[f"good_{name}"] += sum(1 for v in scored if v <= threshold)


__all__ = ["LABEL_STAGE", "LabelShardFn", "METRICS_NAMESPACE", "pa"]
