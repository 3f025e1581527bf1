"""Segment documents and score every segment with every scorer that applies.

`DocumentScorer` is plain Python, so it also serves `annotate explain` and
notebooks; `pipeline.shards` wraps it in the Beam stage that writes scored
shards.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.read import Document
from pipeline.segment import Segmenter, Span, document_kind, line_spans
from schemas.config import SegmentOptions
from scorers.base import Score, Scorer

logger = logging.getLogger(__name__)


@dataclass
class ScoredDocument:
    """A document with its segments and, per scorer name, one score per segment.

    `scores[name]` is None when the scorer does not apply to the document's kind.
    """

    document: Document
    kind: str
    spans: list[Span]
    scores: dict[str, list[Score] | None]

    @property
    def segments(self) -> list[str]:
        return [self.document.text[start:end] for start, end in self.spans]


class DocumentScorer:
    """Segments and scores batches of documents, counting what it does in `counts`."""

    def __init__(
        self,
        scorers: Sequence[Scorer],
        segment_options: SegmentOptions | None = None,
        fail_fast: bool = False,
    ) -> None:
        self.scorers = list(scorers)
        self.segmenter = Segmenter(segment_options)
        self.fail_fast = fail_fast
        self.counts: Counter[str] = Counter()
        self._scorer_stats: dict[str, dict[str, int]] = {}

    def setup(self) -> None:
        for scorer in self.scorers:
            scorer.setup()

    def teardown(self) -> None:
        for scorer in self.scorers:
            scorer.teardown()

    def segment(self, document: Document) -> tuple[str, list[Span]]:
        """Return the document's kind and segment spans.

        If sentence segmentation raises, the document is cut into lines instead
        and counted in ``segmentation_errors``, unless `fail_fast` is set.
        """
        kind = document_kind(document.metadata, self.segmenter.options)
        try:
            return kind, self.segmenter.spans(document.text, kind)
        except Exception as error:
            if self.fail_fast:
                raise
            logger.warning(
                "segmenting document %s (%s line %d) failed, cutting it into lines: %r",
                document.id, document.input_file, document.input_line, error,
            )  # fmt: skip
            self.counts["segmentation_errors"] += 1
            return kind, line_spans(document.text)

    def score(self, documents: Sequence[Document]) -> list[ScoredDocument]:
        """Segment and score a batch; one ScoredDocument per input document, in order."""
        scored = []
        for document in documents:
            kind, spans = self.segment(document)
            scored.append(ScoredDocument(document, kind, spans, {}))
            self.counts[f"segments_{kind}"] += len(spans)
        for scorer in self.scorers:
            self._apply(scorer, scored)
            self._collect_stats(scorer)
        return scored

    def _collect_stats(self, scorer: Scorer) -> None:
        """Add what the scorer counted since the last batch, as ``<scorer name>_<count>``."""
        current = scorer.stats()
        previous = self._scorer_stats.get(scorer.name, {})
        for key, value in current.items():
            if value != previous.get(key, 0):
                self.counts[f"{scorer.name}_{key}"] += value - previous.get(key, 0)
        self._scorer_stats[scorer.name] = dict(current)

    def _apply(self, scorer: Scorer, batch: list[ScoredDocument]) -> None:
        applicable = [doc for doc in batch if scorer.applies_to(doc.kind)]
        for doc in batch:
            doc.scores[scorer.name] = None
        if not applicable:
            return
        segments = [doc.segments for doc in applicable]
        results = self._score_with_fallback(scorer, segments)
        for doc, doc_segments, scores in zip(applicable, segments, results, strict=True):
            # Blank segments get no label, so they get no score either.
            doc.scores[scorer.name] = [
                None if not segment.strip() else self._finite_score(score, scorer)
                for segment, score in zip(doc_segments, scores, strict=True)
            ]

    def _finite_score(self, score: object, scorer: Scorer) -> Score:
        """Return the score as a float, or None, counted, when it is not a finite number."""
        if score is None:
            return None
        if isinstance(score, numbers.Real) and not isinstance(score, bool):
            if math.isfinite(score):
                return float(score)
        if self.fail_fast:
            raise ValueError(f"scorer {scorer.name} returned {score!r}, not a finite number")
        self.counts[f"scores_invalid_{scorer.name}"] += 1
        return None

    def _score_with_fallback(self, scorer: Scorer, documents: list[list[str]]) -> list[list[Score]]:
        """Score a batch; if it raises, retry document by document, then segment by segment."""
        try:
            return _checked(scorer.score_documents(documents), documents, scorer)
        except Exception as error:
            if self.fail_fast:
                raise
            logger.warning(
                "scorer %s failed on a batch, retrying per document: %r", scorer.name, error
            )
        results = []
        for segments in documents:
            try:
                results.append(_checked(scorer.score_documents([segments]), [segments], scorer)[0])
            except Exception as error:  # noqa: BLE001 - recorded as null scores and a counter
                logger.warning("scorer %s failed on a document: %r", scorer.name, error)
                results.append(self._score_segments_one_by_one(scorer, segments))
        return results

    def _score_segments_one_by_one(self, scorer: Scorer, segments: list[str]) -> list[Score]:
        scores: list[Score] = []
        for segment in segments:
            if not segment.strip():
                scores.append(None)
                continue
            try:
                scores.append(scorer.score_segments([segment])[0])
            except Exception:  # noqa: BLE001 - recorded as a null score and a counter
                self.counts[f"scorer_errors_{scorer.name}"] += 1
                scores.append(None)
        return scores


def _checked(
    results: list[list[Score]], documents: list[list[str]], scorer: Scorer
) -> list[list[Score]]:
    if len(results) != len(documents) or any(
        len(r) != len(d) for r, d in zip(results, documents, strict=False)
    ):
        raise RuntimeError(f"scorer {scorer.name} returned the wrong number of scores")
    return results
