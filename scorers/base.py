"""The scorer family: one score per segment, from a model or a rule.

Scorers know nothing of Beam. A scorer works from a notebook or a plain loop::

    scorer = ProfanityScorer()
    scorer.setup()
    scorer.score_segments(["Hello there.", "Some text."])

and the pipeline wraps the same object in a DoFn.
"""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

PROSE = "prose"
CODE = "code"
SEGMENT_KINDS = (PROSE, CODE)

Score = float | None


class MissingDependencyError(ImportError):
    """A scorer's optional dependency is not installed."""


class ScorerConfigError(ValueError):
    """A scorer option has an invalid value."""


@dataclass(frozen=True)
class Refinement:
    """How to score again, exactly, the segments whose approximate score lies near a threshold.

    A scorer that trades exactness for speed (a model run in reduced precision)
    returns one from `Scorer.refinement`. The pipeline's refinement pass
    (`pipeline.refine`) uses it once the thresholds are known.

    Attributes:
        exact: the same scorer at full precision, not set up.
        margin: segments whose score lies within this distance of the threshold, in
            log-odds (the logit of the score), are scored again by ``exact``.
    """

    exact: Scorer
    margin: float


class Scorer(ABC):
    """Base class of all scorers.

    Subclasses set the class attributes below and implement `score_segments`.
    The constructor only stores options, because it runs on the launcher and
    the object is pickled to the workers; models are loaded in `setup`, once
    per worker.

    Class attributes:
        name: versioned name, such as ``toxicity_detoxify_v1``. It is written
            into output column names, thresholds.json and the manifest. A
            changed score definition gets a new version, never a new meaning.
        alias: short name that users type on the command line, such as
            ``toxicity``.
        kinds: segment kinds the scorer applies to (``prose``, ``code``).
        description: one line shown by ``annotate scorers``.
        requires: importable modules the scorer needs beyond the core install.
        install_hint: the command that installs ``requires``.
        lower_is_safer: always True for built-in scorers; thresholds label a
            segment good when its score is at or below the threshold.
    """

    name: ClassVar[str]
    alias: ClassVar[str]
    kinds: ClassVar[frozenset[str]]
    description: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    install_hint: ClassVar[str] = ""

    def __init__(self, **options: Any) -> None:
        unknown = set(options) - set(self.option_names())
        if unknown:
            raise ScorerConfigError(
                f"scorer {self.alias!r} has no option {sorted(unknown)[0]!r}; "
                f"valid options: {', '.join(self.option_names()) or 'none'}"
            )
        self.options = options

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Names of the keyword options the constructor accepts."""
        return ()

    @classmethod
    def check_dependencies(cls) -> None:
        """Raise MissingDependencyError naming the install command if a module is missing."""
        missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if missing:
            raise MissingDependencyError(
                f"scorer {cls.alias!r} needs {', '.join(missing)}, which is not installed; "
                f"install it with: {cls.install_hint}"
            )

    def applies_to(self, kind: str) -> bool:
        return kind in self.kinds

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models and other per-worker state. Called once per worker."""

    def teardown(self) -> None:  # noqa: B027 - optional hook
        """Release what `setup` loaded."""

    @abstractmethod
    def score_segments(self, segments: Sequence[str]) -> list[Score]:
        """Return one score per segment, in order; None where a segment cannot be scored."""

    def score_documents(self, documents: Sequence[Sequence[str]]) -> list[list[Score]]:
        """Score the segments of several documents at once.

        The default flattens the non-blank segments of all documents into one
        `score_segments` call, so model scorers batch across documents, and
        returns None for blank segments. Scorers that need the whole document
        (code style checks a file at once) override this.
        """
        flat = [segment for segments in documents for segment in segments if segment.strip()]
        scores = self.score_segments(flat) if flat else []
        if len(scores) != len(flat):
            raise RuntimeError(
                f"scorer {self.name} returned {len(scores)} scores for {len(flat)} segments"
            )
        position = iter(scores)
        return [
            [next(position) if segment.strip() else None for segment in segments]
            for segments in documents
        ]

    def stats(self) -> dict[str, int]:
        """Counts the scorer kept since setup, such as truncated segments."""
        return {}

    def refinement(self) -> Refinement | None:
        """Return how to make this scorer's labels exact, or None when its scores are exact."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options!r})"
