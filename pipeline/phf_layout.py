"""The ``phf`` shard layout: the columns the reference trainer reads, for one scorer.

The reference code of Korbak et al. (2023) trains on rows with ``texts`` (the
segments), ``meta`` (the input's metadata as a struct), ``scores`` (one per
segment), ``avg_score`` and ``num_sents``, and inserts the control tokens
itself. Conditional training, filtering, unlikelihood and reward-weighted
objectives all read these columns.

Two things differ from the default shards. The trainer compares every score
with a threshold, so each blank segment is appended to the segment before it
(or, at the start of a document, prepended to the next one) and every text
has a score. A document of blank segments only gets no texts. And ``meta``
needs one declared type for the whole run, so `MergeFieldKinds` collects the
JSON types of every metadata field first (see `meta_fields`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence

import apache_beam as beam
import pyarrow as pa

from pipeline.shards import iter_shard_batches
from schemas.output import score_column
from scorers.base import Score

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# Arrow type of a meta field by its declared type name. A "json" field
# contains the JSON text of values whose types vary or that are lists or objects.
META_TYPES = {
    "string": pa.string(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "json": pa.string(),
}


def phf_schema(meta_fields: Mapping[str, str]) -> pa.Schema:
    """Schema of a ``phf`` shard; `meta_fields` maps each meta field to a META_TYPES name."""
    meta = pa.struct([pa.field(key, META_TYPES[kind]) for key, kind in meta_fields.items()])
    return pa.schema(
        [
            pa.field("texts", pa.list_(pa.string()), nullable=False),
            pa.field("meta", meta, nullable=False),
            pa.field("scores", pa.list_(pa.float64())),
            pa.field("avg_score", pa.float64()),
            pa.field("num_sents", pa.int64(), nullable=False),
        ]
    )


def value_kind(value: object) -> str:
    """JSON type of a metadata value: null, bool, int, bigint (beyond int64), float, string
    or complex (list or object)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int" if INT64_MIN <= value <= INT64_MAX else "bigint"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "complex"


def field_kinds(metadata_texts: Sequence[str]) -> dict[str, set[str]]:
    """Map each metadata key of a batch to the JSON types of its values."""
    kinds: dict[str, set[str]] = {}
    for text in metadata_texts:
        for key, value in json.loads(text).items():
            kinds.setdefault(key, set()).add(value_kind(value))
    return kinds


def shard_field_kinds(path: str) -> Iterator[dict[str, set[str]]]:
    for batch in iter_shard_batches(path, 65_536, ["metadata"]):
        yield field_kinds(batch.column("metadata").to_pylist())


class MergeFieldKinds(beam.CombineFn):
    """Union of `field_kinds` results: key -> every JSON type seen, over the whole run."""

    def create_accumulator(self) -> dict[str, set[str]]:
        return {}

    def add_input(self, accumulator: dict, kinds: dict) -> dict:
        for key, found in kinds.items():
            accumulator.setdefault(key, set()).update(found)
        return accumulator

    def merge_accumulators(self, accumulators) -> dict:
        merged: dict[str, set[str]] = {}
        for accumulator in accumulators:
            self.add_input(merged, accumulator)
        return merged

    def extract_output(self, accumulator: dict) -> dict[str, list[str]]:
        return {key: sorted(found) for key, found in accumulator.items()}


def meta_fields(kinds: Mapping[str, Sequence[str]], id_field: str) -> dict[str, str]:
    """Declare the meta struct: the document id first, then every metadata key, sorted.

    A key whose values are all strings, all booleans or all integers within
    int64 gets that type, and integers mixed with floats give float64. Any
    field may contain nulls, and a key with only nulls is a string. Any other
    mix, lists and objects become "json", the values' JSON text.
    """
    fields = {id_field: "string"}
    for key in sorted(kinds):
        if key != id_field:
            fields[key] = _field_type(set(kinds[key]) - {"null"})
    return fields


def _field_type(kinds: set[str]) -> str:
    if not kinds or kinds == {"string"}:
        return "string"
    if kinds == {"bool"}:
        return "bool"
    if kinds == {"int"}:
        return "int64"
    if kinds <= {"int", "float"}:
        return "float64"
    return "json"


def meta_value(metadata_text: str, document_id: str, fields: Mapping[str, str]) -> dict:
    """Build the meta struct of one document, typed as `fields` declares."""
    metadata = json.loads(metadata_text)
    id_field = next(iter(fields))
    metadata[id_field] = document_id
    result = {}
    for key, kind in fields.items():
        value = metadata.get(key)
        if value is not None and kind == "json":
            value = json.dumps(value, ensure_ascii=False, sort_keys=True)
        elif value is not None and kind == "float64":
            value = float(value)
        result[key] = value
    return result


def merge_blank_segments(
    segments: Sequence[str], scores: Sequence[Score] | None
) -> tuple[list[str], list[Score] | None]:
    """Attach blank segments to a neighbour, so every text has the score of its non-blank part."""
    texts: list[str] = []
    merged_scores: list[Score] = []
    leading = ""
    for index, segment in enumerate(segments):
        if segment.strip():
            texts.append(leading + segment)
            merged_scores.append(scores[index] if scores is not None else None)
            leading = ""
        elif texts:
            texts[-1] += segment
        else:
            leading += segment
    return texts, (merged_scores if scores is not None else None)


def average_score(scores: Sequence[Score] | None) -> float | None:
    """Unweighted mean of the non-null scores; None when there are none."""
    values = [score for score in scores or () if score is not None]
    return sum(values) / len(values) if values else None


def phf_columns(columns: Mapping[str, list], scorer_name: str, fields: Mapping[str, str]) -> dict:
    """Columns of a ``phf`` shard for a batch of scored-shard columns."""
    result: dict[str, list] = {
        "texts": [],
        "meta": [],
        "scores": [],
        "avg_score": [],
        "num_sents": [],
    }
    rows = zip(
        columns["id"],
        columns["segments"],
        columns[score_column(scorer_name)],
        columns["metadata"],
        strict=True,
    )
    for document_id, segments, scores, metadata in rows:
        texts, kept = merge_blank_segments(segments, scores)
        result["texts"].append(texts)
        result["meta"].append(meta_value(metadata, document_id, fields))
        result["scores"].append(kept)
        result["avg_score"].append(average_score(kept))
        result["num_sents"].append(len(texts))
    return result
