"""Label segments against thresholds and write control tokens in front of them.

A segment is good when every scorer that applies to it scored at or below
that scorer's threshold; it is bad when any of them scored above it or could
not score it. Blank segments (empty or whitespace only) get no label and no
token, so removing the tokens from the text gives back the input exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from schemas.config import LabelOptions
from scorers.base import Score

GOOD = "good"
BAD = "bad"


def segment_label(
    index: int,
    scores: Mapping[str, Sequence[Score] | None],
    thresholds: Mapping[str, float | None],
) -> str:
    """Label of segment `index` given each scorer's scores (None: scorer does not apply)."""
    for name, values in scores.items():
        if values is None:
            continue
        score, threshold = values[index], thresholds.get(name)
        if score is None or threshold is None or score > threshold:
            return BAD
    return GOOD


def label_segments(
    segments: Sequence[str],
    scores: Mapping[str, Sequence[Score] | None],
    thresholds: Mapping[str, float | None],
) -> list[str | None]:
    """One label per segment; None for blank segments."""
    return [
        segment_label(i, scores, thresholds) if segment.strip() else None
        for i, segment in enumerate(segments)
    ]


def insert_tokens(
    segments: Sequence[str], labels: Sequence[str | None], options: LabelOptions
) -> str:
    """The document text with each labelled segment preceded by its control token."""
    tokens = {GOOD: options.good_token, BAD: options.bad_token}
    return "".join(
        segment if label is None else tokens[label] + segment
        for segment, label in zip(segments, labels, strict=True)
    )


def remove_tokens(text: str, options: LabelOptions) -> str:
    """Inverse of `insert_tokens` for text whose input held no control-token strings."""
    return text.replace(options.good_token, "").replace(options.bad_token, "")
