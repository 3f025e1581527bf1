"""Scorer plugins: each module defines one `Scorer` subclass."""

from scorers.base import CODE, PROSE, MissingDependencyError, Scorer, ScorerConfigError
from scorers.registry import DEFAULT_SCORERS, UnknownScorerError, get_scorer_class

__all__ = [
    "CODE",
    "DEFAULT_SCORERS",
    "PROSE",
    "MissingDependencyError",
    "Scorer",
    "ScorerConfigError",
    "UnknownScorerError",
    "get_scorer_class",
]
