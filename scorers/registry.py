"""Find scorers by name: the built-ins and those registered by other packages.

Third-party packages register a `Scorer` subclass under the entry-point group
``feedback_annotate.scorers``; the entry-point name is the alias users type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import Any

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


def load_scorer_class(target: str) -> type[Scorer]:
    """Import a ``module:Class`` target and check that it names a Scorer subclass.

    Raises:
        ImportError: the module cannot be imported.
        AttributeError: the module has no such attribute.
        TypeError: the attribute is not a Scorer subclass.
    """
    cls = _load(target)
    if not (isinstance(cls, type) and issubclass(cls, Scorer)):
        raise TypeError(f"{target} is not a subclass of scorers.base.Scorer")
    return cls


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
    """Return the scorer class for an alias (``toxicity``) or versioned name.

    Raises:
        UnknownScorerError: no scorer has that alias or name, or the class registered
            under that alias cannot be loaded.
    """
    targets = scorer_targets()
    if name in targets:
        try:
            return load_scorer_class(targets[name])
        except (ImportError, AttributeError, TypeError) as error:
            raise UnknownScorerError(
                f"scorer {name!r} is registered as {targets[name]} but could not be loaded: {error}"
            ) from error
    for target in targets.values():
        try:
            cls = load_scorer_class(target)
        except (ImportError, AttributeError, TypeError):
            continue  # `annotate scorers` reports the error
        if cls.name == name:
            return cls
    raise UnknownScorerError(
        f"unknown scorer {name!r}; available: {', '.join(sorted(targets))} "
        "(run 'annotate scorers' for descriptions)"
    )


def create_scorers(names: Sequence[str], options: Mapping[str, Mapping[str, Any]]) -> list[Scorer]:
    """Instantiate scorers by alias or versioned name, with their options.

    ``options`` maps an alias or a versioned name to keyword options; both apply, the
    versioned name's last.

    Raises:
        UnknownScorerError: a name is neither an alias nor a versioned name.
        MissingDependencyError: a scorer's optional dependency is not installed.
        ScorerConfigError: an option is unknown or invalid.
        ValueError: a scorer is listed twice.
    """
    scorers = []
    for name in names:
        cls = get_scorer_class(name)
        cls.check_dependencies()
        scorers.append(cls(**{**options.get(cls.alias, {}), **options.get(cls.name, {})}))
    versioned = [scorer.name for scorer in scorers]
    if len(set(versioned)) != len(versioned):
        raise ValueError(f"a scorer is listed twice in {', '.join(names)}")
    return scorers
