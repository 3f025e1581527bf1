"""Explicit Parquet schemas of the scored and the labelled shards.

Both schemas are built from the list of scorer names, never inferred from
data, so a shard of empty documents has the same columns and types as any
other shard.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

SCORE_COLUMN_PREFIX = "score_"

# Written into each shard's key-value metadata, as JSON provenance.
SCHEMA_METADATA_KEY = b"feedback_annotate"


def score_column(scorer_name: str) -> str:
    """Name of the list<float64> column holding one scorer's segment scores."""
    return f"{SCORE_COLUMN_PREFIX}{scorer_name}"


def scorer_names_from_schema(schema: pa.Schema) -> list[str]:
    """Return the scorer names whose score columns a schema holds, in column order."""
    return [
        name[len(SCORE_COLUMN_PREFIX) :]
        for name in schema.names
        if name.startswith(SCORE_COLUMN_PREFIX)
    ]


def _document_fields() -> list[pa.Field]:
    return [
        pa.field("id", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("segments", pa.list_(pa.string()), nullable=False),
        pa.field("segment_starts", pa.list_(pa.int64()), nullable=False),
        pa.field("segment_ends", pa.list_(pa.int64()), nullable=False),
        pa.field("num_segments", pa.int64(), nullable=False),
    ]


def _score_fields(scorer_names: Sequence[str]) -> list[pa.Field]:
    # A null list means the scorer does not apply to the document's kind; a
    # null item means that one segment was not scored (blank, or it failed).
    return [pa.field(score_column(name), pa.list_(pa.float64())) for name in scorer_names]


def _provenance_fields() -> list[pa.Field]:
    return [
        pa.field("metadata", pa.string(), nullable=False),
        pa.field("input_file", pa.string(), nullable=False),
        pa.field("input_line", pa.int64(), nullable=False),
    ]


def scored_schema(scorer_names: Sequence[str]) -> pa.Schema:
    """Schema of the scoring pass's shards: `text` is the input document as read."""
    return pa.schema(_document_fields() + _score_fields(scorer_names) + _provenance_fields())


def labelled_schema(scorer_names: Sequence[str]) -> pa.Schema:
    """Schema of the final shards: `text` contains the control tokens, `labels` one per segment.

    A label is ``good``, ``bad``, or null for a blank segment, which gets no token.
    """
    fields = _document_fields()
    fields.insert(6, pa.field("labels", pa.list_(pa.string()), nullable=False))
    return pa.schema(fields + _score_fields(scorer_names) + _provenance_fields())
