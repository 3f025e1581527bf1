"""A scorer of the share of letters written in capitals, registered as a plugin."""

from __future__ import annotations

from collections.abc import Sequence

from scorers.base import PROSE, Scorer


class ShoutingScorer(Scorer):
    name = "shouting_uppercase_v1"  # Column score_shouting_uppercase_v1; bump v1 on change.
    alias = "shouting"  # The name that users type after --scorers.
    kinds = frozenset({PROSE})
    description = "share of cased letters that are upper case, 0 to 1"

    def __init__(self, **options) -> None:
        super().__init__(**options)  # Rejects options not in option_names().
        self.min_letters = int(options.get("min_letters", 1))

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("min_letters",)

    def setup(self) -> None:
        # Load models here: setup runs once per worker, after the scorer is pickled.
        self.scored = 0

    def score_segments(self, segments: Sequence[str]) -> list[float | None]:
        self.scored += len(segments)
        return [self.score_one(segment) for segment in segments]

    def score_one(self, segment: str) -> float:
        cased = [c for c in segment if c.isupper() or c.islower()]
        if len(cased) < self.min_letters:
            return 0.0
        return sum(c.isupper() for c in cased) / len(cased)

    def stats(self) -> dict[str, int]:
        # The manifest reports it as shouting_uppercase_v1_segments_scored.
        return {"segments_scored": self.scored}
