"""Find scorers by name: the built-ins and those registered by other packages.

Third-party packages register a `Scorer` subclass under the entry-point group
``feedback_annotate.scorers``; the entry-point name is the alias users type.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from scorers.base import Scorer

ENTRY_POINT_GROUP = "feedback_annotate.scorers"

_BUILTIN = {
    "toxicity": "scorers.toxicity:DetoxifyToxicityScorer",
    "toxicity_profanity": "scorers.profanity:ProfanityScorer",
    "pii": "scorers.pii:PresidioPiiScorer",
    "code_style": "scorers.code_style:PycodestyleScorer",
}

DEFAULT_SCORERS = ("toxicity", "pii", "code_style")


class UnknownScorerError(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def _load(target: str) -> type[Scorer]:
    module_name, _, attribute = target.partition(":")
    module = __import__(module_name, fromlist=[attribute])
    return getattr(module, attribute)


def scorer_targets() -> dict[str, str]:
    """Map every known alias to its ``module:Class`` target, built-ins first."""
    targets = dict(_BUILTIN)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        targets.setdefault(entry.name, entry.value)
    return targets


def get_scorer_class(name: str) -> type[Scorer]:
    """Return the scorer class for an alias (``toxicity``) or versioned name."""
    targets = scorer_targets()
    if name in targets:
        return _load(targets[name])
    for target in targets.values():
        cls = _load(target)
        if cls.name == name:
            return cls
    raise UnknownScorerError(
        f"unknown scorer {name!r}; available: {', '.join(sorted(targets))} "
        "(run 'annotate scorers' for descriptions)"
    )
