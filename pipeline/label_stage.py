"""The labelling pass as a Beam DoFn: scored shard in, final shard out.

It needs no model: it reads stored segments and scores, applies the run's
thresholds, and writes the token-inserted text beside them, or the ``phf``
layout's columns.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import apache_beam as beam
import pyarrow as pa
from apache_beam.metrics import Metrics

from pipeline import files
from pipeline.label import BAD, GOOD, TokenWriter, scorer_label
from pipeline.phf_layout import phf_columns, phf_schema
from pipeline.score_stage import METRICS_NAMESPACE, ShardResult, _report
from pipeline.shards import SHARDS_DIR, ParquetShardWriter, iter_shard_batches, marker_path
from schemas.config import LabelOptions
from schemas.output import labelled_schema, score_column

logger = logging.getLogger(__name__)

LABEL_STAGE = "label"
LABELLED_SHARDS_SKIPPED = "labelled_shards_skipped"


@dataclass(frozen=True)
class LabelJob:
    """Inputs of the labelling pass other than the thresholds.

    Attributes:
        output_dir: directory receiving shards/.
        options: thresholds, tokens and layout.
        scorer_aliases: scorer name -> alias, in column order.
        provenance: written into every shard's Parquet metadata.
        layout_scorer: the versioned name of the scorer of the ``phf`` layout.
        id_field: name of the document id in the ``phf`` layout's meta struct.
    """

    output_dir: str
    options: LabelOptions
    scorer_aliases: dict[str, str]
    provenance: dict = field(default_factory=dict)
    layout_scorer: str | None = None
    id_field: str = "id"

    @property
    def scorer_names(self) -> list[str]:
        return list(self.scorer_aliases)


class LabelShardFn(beam.DoFn):
    """Writes OUT/shards/NAME.parquet for one scored shard, given the label plan.

    The plan is a dict with ``thresholds`` (scorer name -> threshold),
    ``bucket_edges`` (scorer name -> edges) and ``meta_fields`` (the ``phf``
    layout's declared meta struct, else None).
    """

    def __init__(self, job: LabelJob) -> None:
        self.job = job

    def process(self, scored: ShardResult, plan: Mapping) -> Iterator[dict[str, int]]:
        marker = marker_path(self.job.output_dir, LABEL_STAGE, scored.name)
        if files.exists(marker):
            stored = files.read_json(marker)
            if stored.get("plan") == plan:
                logger.info("skipping labelled shard %s", scored.name)
                Metrics.counter(METRICS_NAMESPACE, LABELLED_SHARDS_SKIPPED).inc()
                yield stored["counts"]
                return
        path = files.join(self.job.output_dir, SHARDS_DIR, f"{scored.name}.parquet")
        counts = self._write(scored.path, path, plan)
        files.write_json(marker, {"path": path, "plan": plan, "counts": counts})
        _report(counts)
        yield counts

    def _write(self, source: str, path: str, plan: Mapping) -> dict:
        job = self.job
        token_writer = TokenWriter(
            job.options, job.scorer_aliases, plan["thresholds"], plan["bucket_edges"]
        )
        if job.options.layout == "phf":
            schema = phf_schema(plan["meta_fields"])
        else:
            schema = labelled_schema(job.scorer_names)
        metadata = dict(job.provenance, thresholds=plan["thresholds"])
        writer = ParquetShardWriter(path, schema, metadata)
        counts: Counter[str] = Counter()
        try:
            for batch in iter_shard_batches(source):
                columns = batch.to_pydict()
                self._label_batch(columns, token_writer, counts)
                writer.write(self._output_columns(columns, schema, plan))
        except BaseException:
            writer.abort()
            raise
        writer.close()
        counts["documents_written"] = writer.rows
        return dict(counts)

    def _output_columns(self, columns: dict, schema: pa.Schema, plan: Mapping) -> dict:
        if self.job.options.layout == "phf":
            return phf_columns(columns, self.job.layout_scorer, plan["meta_fields"])
        return {name: columns[name] for name in schema.names}

    def _label_batch(self, columns: dict, token_writer: TokenWriter, counts: Counter) -> None:
        texts, labels_column = [], []
        for row, segments in enumerate(columns["segments"]):
            scores = {name: columns[score_column(name)][row] for name in self.job.scorer_names}
            labels, text = token_writer.write(columns["id"][row], segments, scores, counts)
            texts.append(text)
            labels_column.append(labels)
            _count_labels(segments, labels, scores, token_writer.thresholds, counts)
        columns["text"] = texts
        columns["labels"] = labels_column


def _count_labels(segments, labels, scores, thresholds, counts: Counter) -> None:
    counts["segments_good"] += labels.count(GOOD)
    counts["segments_bad"] += labels.count(BAD)
    counts["segments_blank"] += labels.count(None)
    for name, values in scores.items():
        if values is None:
            continue
        for segment, score in zip(segments, values, strict=True):
            if score is None:
                continue
            counts[f"scored_{name}"] += 1
            counts[f"scored_characters_{name}"] += len(segment)
            if scorer_label(score, thresholds[name]) == GOOD:
                counts[f"good_{name}"] += 1
                counts[f"good_characters_{name}"] += len(segment)


__all__ = ["LABEL_STAGE", "LabelJob", "LabelShardFn", "METRICS_NAMESPACE"]
