"""Name what differs between the run recorded in OUT/_progress/run.json and a new run.

A rerun resumes only when its fingerprint equals the recorded one. When it does
not, the user needs to know which option or input changed, so the recorded
options are compared with the new ones and each difference is named by the
command-line option that sets it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Maximum length of a value shown in a difference, in characters.
MAX_VALUE_CHARS = 100

# Option names that differ from "--" plus the field name with dashes.
OPTION_NAMES = {
    "inputs": "INPUTS",
    "label.percentiles": "--percentile",
    "label.thresholds": "--threshold",
    "label.layout_scorer": "--scorer",
    "dedup.method": "--dedup",
    "dedup.threshold": "--dedup-threshold",
    "dedup.num_perm": "--dedup-num-perm",
    "dedup.ngram_size": "--dedup-ngram",
    "dedup.seed": "--dedup-seed",
    "batch_documents": "batch_documents",
}
# Sections of RunConfig whose fields are options of their own.
SECTIONS = ("read", "segment", "label", "dedup")
SCORER_OPTIONS = "scorer_options"
# Marks an option that one of the two records does not have.
_MISSING = object()


def describe_differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Describe each difference between two run records, such as '--dedup: was "none", now "exact"'.

    A record has the run's `config` (`RunConfig.to_dict()`) and, where known,
    its `command`, `scorer_names`, `relabelled_from`, `source_fingerprint` and
    `refined_scorers`.
    Returns an empty list when no recorded field differs, for example when the
    stored record comes from an older version that recorded less.
    """
    # run.json stores JSON, so tuples come back as lists.
    current = json.loads(json.dumps(current))
    old_command, new_command = _command(stored), _command(current)
    if old_command and new_command and old_command != new_command:
        # The options of different commands are not comparable.
        return [f"it was written by 'annotate {old_command}', not 'annotate {new_command}'"]

    differences = []
    if _both_differ(stored, current, "relabelled_from"):
        differences.append(
            _difference("RUN_DIR", stored["relabelled_from"], current["relabelled_from"])
        )
    elif _both_differ(stored, current, "source_fingerprint"):
        differences.append(
            f"the run in {current['relabelled_from']} changed since it was labelled from there"
        )

    old_options = flatten_options(stored.get("config", {}))
    new_options = flatten_options(current.get("config", {}))
    changed = []
    for path in old_options.keys() | new_options.keys():
        old, new = old_options.get(path, _MISSING), new_options.get(path, _MISSING)
        if path != "output_dir" and old != new:
            changed.append((option_name(path), old, new))
    # INPUTS first, because a changed input pattern explains the other differences.
    changed.sort(key=lambda item: (item[0] != OPTION_NAMES["inputs"], item[0]))
    differences.extend(_difference(*item) for item in changed)
    if _both_differ(stored, current, "refined_scorers"):
        differences.append(
            _difference(
                "scorers refined in fp32 (--refine, --no-refine)",
                stored["refined_scorers"],
                current["refined_scorers"],
            )
        )

    if not differences and _both_differ(stored, current, "scorer_names"):
        differences.append(
            _difference("scorer versions", stored["scorer_names"], current["scorer_names"])
        )
    return differences


def flatten_options(config: Mapping[str, Any]) -> dict[str, Any]:
    """Map each option of a `RunConfig.to_dict()` to its value, keyed by its dotted path.

    Sections such as `label` are flattened one level ("label.good_token"), and
    scorer options two levels ("scorer_options.toxicity.device").
    """
    options = {}
    for key, value in config.items():
        if key in SECTIONS and isinstance(value, Mapping):
            options.update({f"{key}.{field}": item for field, item in value.items()})
        elif key == SCORER_OPTIONS and isinstance(value, Mapping):
            for scorer, scorer_options in value.items():
                for field, item in scorer_options.items():
                    options[f"{key}.{scorer}.{field}"] = item
        else:
            options[key] = value
    return options


def option_name(path: str) -> str:
    """Return the command-line option that sets the config field at `path`."""
    if path in OPTION_NAMES:
        return OPTION_NAMES[path]
    if path.startswith(f"{SCORER_OPTIONS}."):
        return f"--scorer-option {path.removeprefix(f'{SCORER_OPTIONS}.')}"
    field = path.rpartition(".")[2]
    return "--" + field.replace("_", "-")


def _command(record: Mapping[str, Any]) -> str | None:
    # Records of `annotate label` written before they stored their command have
    # relabelled_from instead.
    if "command" in record:
        return record["command"]
    return "label" if "relabelled_from" in record else None


def _both_differ(stored: Mapping, current: Mapping, key: str) -> bool:
    return key in stored and key in current and stored[key] != current[key]


def _difference(name: str, old: Any, new: Any) -> str:
    return f"{name}: was {format_value(old)}, now {format_value(new)}"


def format_value(value: Any) -> str:
    """Format a recorded value as JSON (None as "null"), at most MAX_VALUE_CHARS long.

    A longer value loses its middle, which keeps both the start and the end of a
    path, where two paths usually differ.
    """
    if value is _MISSING:
        return "not set"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) > MAX_VALUE_CHARS:
        head = (MAX_VALUE_CHARS - 3) // 2
        tail = MAX_VALUE_CHARS - 3 - head
        text = f"{text[:head]}...{text[-tail:]}"
    return text
