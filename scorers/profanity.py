"""Offensive-language probability from alt-profanity-check.

The package ships its linear model (a TF-IDF vectorizer and a calibrated
linear SVM) inside the wheel, so this scorer runs offline and fast. It is a
stand-in for Detoxify where no weights can be fetched, not a reproduction of
the reference toxicity scores.
"""

from __future__ import annotations

from collections.abc import Sequence

from scorers.base import PROSE, Score, Scorer


class ProfanityScorer(Scorer):
    name = "toxicity_profanity_v1"
    alias = "toxicity_profanity"
    kinds = frozenset({PROSE})
    description = "probability of offensive language (alt-profanity-check, offline, fast)"
    requires = ("profanity_check",)
    install_hint = 'pip install "feedback-annotate[profanity]"'

    def setup(self) -> None:
        # The package loads its model at import time, so import it on the worker.
        from profanity_check import predict_prob

        self._predict_prob = predict_prob

    def score_segments(self, segments: Sequence[str]) -> list[Score]:
        if not segments:
            return []
        probabilities = self._predict_prob(list(segments))
        return [float(p) for p in probabilities]
