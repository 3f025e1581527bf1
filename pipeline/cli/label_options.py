"""Threshold, token and layout options shared by `annotate run` and `annotate label`.

`with_label_options` adds the options to a command's signature, so both
commands declare them once, here, and receive them as one LabelOptions.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import typer

from pipeline.cli.app import (
    UsageError,
    check_percentile,
    fail,
    parse_assignments,
    parse_percentiles,
)
from schemas.config import (
    DEFAULT_BAD_TOKEN,
    DEFAULT_GOOD_TOKEN,
    DEFAULT_PERCENTILE,
    DEFAULT_SCORER_TOKEN_FORMAT,
    LAYOUTS,
    THRESHOLD_PRESETS,
    TOKEN_MODES,
    WEIGHTS,
    LabelOptions,
)

THRESHOLDS = "Thresholds"
TOKENS = "Control tokens and layout"


def _choices(name: str, values) -> type[Enum]:
    """Make a str Enum of the allowed values, so that Typer lists and checks them."""
    return Enum(name, {value: value for value in values}, type=str)


def _option(name: str, annotation: Any, default: Any, help_text: str, panel: str, **kwargs):
    option = typer.Option(help=help_text, rich_help_panel=panel, **kwargs)
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=default,
        annotation=Annotated[annotation, option],
    )


LABEL_PARAMETERS = [
    _option(
        "percentile",
        list[str],
        [],
        "SCORER=P, P in percent (0 to 100): the threshold is the P-th percentile of that "
        "scorer's scores over the whole run, and segments at or below it are good. Repeatable.",
        THRESHOLDS,
    ),
    _option(
        "threshold",
        list[str],
        [],
        "SCORER=T: a fixed threshold T in the scorer's own unit; segments scoring at or "
        "below T are good. Repeatable.",
        THRESHOLDS,
    ),
    _option(
        "preset",
        _choices("Preset", THRESHOLD_PRESETS) | None,
        None,
        f"Named fixed thresholds for the scorers it names ({', '.join(THRESHOLD_PRESETS)}). "
        "phf: toxicity 0.00056, pii 0.0, code_style 0.0, as in Korbak et al. (2023). "
        "--percentile and --threshold override it per scorer.",
        THRESHOLDS,
    ),
    _option(
        "default_percentile",
        float,
        DEFAULT_PERCENTILE,
        "P, in percent (0 to 100), for scorers that no other option names.",
        THRESHOLDS,
    ),
    _option(
        "percentile_weight",
        _choices("PercentileWeight", WEIGHTS),
        "segments",
        f"What a percentile counts: {' or '.join(WEIGHTS)} (each segment weighted by its "
        "length in characters).",
        THRESHOLDS,
    ),
    _option(
        "quantile_epsilon",
        float,
        0.001,
        "Allowed rank error of the approximate percentiles, as a fraction of the number of "
        "segments (0.001 = 0.1 %).",
        THRESHOLDS,
        min=1e-6,
        max=0.1,
    ),
    _option("good_token", str, DEFAULT_GOOD_TOKEN, "Control token of good segments.", TOKENS),
    _option("bad_token", str, DEFAULT_BAD_TOKEN, "Control token of bad segments.", TOKENS),
    _option(
        "document_token",
        str | None,
        None,
        "Token written at the start of every document that has a non-blank segment, such "
        "as <|endoftext|>. Default: none.",
        TOKENS,
    ),
    _option(
        "token_mode",
        _choices("TokenMode", TOKEN_MODES),
        "label",
        f"{', '.join(TOKEN_MODES)}: one good or bad token per segment; one good or bad token "
        "per scorer that applies; or one token per scorer naming the score's percentile "
        "bucket.",
        TOKENS,
    ),
    _option(
        "scorer_token_format",
        str,
        DEFAULT_SCORER_TOKEN_FORMAT,
        "Token of the scorer and bucket modes; {scorer} is the scorer alias, {label} is good, "
        "bad or the bucket number.",
        TOKENS,
    ),
    _option(
        "buckets",
        int,
        10,
        "Number of equal-frequency score buckets in bucket mode; bucket 0 has the lowest scores.",
        TOKENS,
        min=2,
    ),
    _option(
        "drop_token_fraction",
        float,
        0.0,
        "Fraction (0 to 1) of non-blank segments written without a token, chosen by a seeded "
        "hash of document id and segment index.",
        TOKENS,
        min=0,
        max=1,
    ),
    _option("drop_token_seed", int, 0, "Seed of the --drop-token-fraction hash.", TOKENS),
    _option(
        "layout",
        _choices("Layout", LAYOUTS),
        "tokens",
        f"Shard layout: {' or '.join(LAYOUTS)}. phf writes the columns the reference trainer "
        "reads (texts, meta, scores, avg_score, num_sents) for the one scorer --scorer.",
        TOKENS,
    ),
    _option(
        "scorer",
        str | None,
        None,
        "With --layout phf: the scorer (alias or name) whose scores are written.",
        TOKENS,
    ),
]


def label_options_from(values: dict[str, Any]) -> LabelOptions:
    """Build LabelOptions from the parsed command-line values.

    Raises:
        UsageError: an option value is invalid, naming the option.
    """
    values = {key: v.value if isinstance(v, Enum) else v for key, v in values.items()}
    default = values["default_percentile"]
    check_percentile(f"--default-percentile {default:g}", default)
    percentiles = parse_percentiles(values.pop("percentile"))
    thresholds = parse_thresholds(values.pop("threshold"))
    layout_scorer = values.pop("scorer")
    try:
        return LabelOptions(
            percentiles=percentiles, thresholds=thresholds, layout_scorer=layout_scorer, **values
        )
    except ValueError as error:
        raise UsageError(str(error)) from None


def parse_thresholds(values: list[str]) -> dict[str, float]:
    result = {}
    for name, text in parse_assignments(values, "--threshold").items():
        try:
            result[name] = float(text)
        except ValueError:
            raise UsageError(f"--threshold {name}={text}: {text!r} is not a number") from None
    return result


def with_label_options(command: Callable) -> Callable:
    """Add the threshold, token and layout options to a Typer command.

    The command declares a keyword parameter `label_options` and receives the
    options in it as a LabelOptions. An invalid value exits with code 2 before
    the command runs.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.name != "label_options"]
    names = [parameter.name for parameter in LABEL_PARAMETERS]

    @functools.wraps(command)
    def command_with_label_options(*args, **kwargs):
        values = {name: kwargs.pop(name) for name in names}
        try:
            kwargs["label_options"] = label_options_from(values)
        except UsageError as error:
            fail(str(error), 2)
        return command(*args, **kwargs)

    command_with_label_options.__signature__ = signature.replace(parameters=own + LABEL_PARAMETERS)
    return command_with_label_options
