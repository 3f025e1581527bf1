"""Scorer options shared by `annotate run` and `annotate explain`.

Each command declares the parameters below with these types, so the flags, their help
and their parsing are the same in both.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from pipeline.cli.app import UsageError, parse_scorer_options
from scorers.registry import DEFAULT_SCORERS
from scorers.toxicity import MODEL_NAMES

SCORING = "Scoring"

DEFAULT_SCORER_LIST = ",".join(DEFAULT_SCORERS)

ScorerList = Annotated[
    str,
    typer.Option(
        "--scorers",
        help="Comma-separated scorers to run, in column order; 'annotate scorers' lists them.",
        rich_help_panel=SCORING,
    ),
]
ToxicityModel = Annotated[
    str | None,
    typer.Option(
        help=f"Detoxify model: {', '.join(MODEL_NAMES)}. Default: {MODEL_NAMES[0]}.",
        rich_help_panel=SCORING,
    ),
]
ToxicityCheckpoint = Annotated[
    str | None,
    typer.Option(
        help=(
            "Local path or URI of a checkpoint in Detoxify's format, instead of downloading "
            "the release file."
        ),
        rich_help_panel=SCORING,
    ),
]
ToxicityHfDir = Annotated[
    str | None,
    typer.Option(
        help=(
            "Directory with the model's Hugging Face config and tokenizer files, for loading "
            "without internet."
        ),
        rich_help_panel=SCORING,
    ),
]
ToxicityDevice = Annotated[
    str | None,
    typer.Option(
        help="Torch device for Detoxify (default: cuda when available, else cpu).",
        rich_help_panel=SCORING,
    ),
]
ToxicityThreads = Annotated[
    int | None,
    typer.Option(min=1, help="Torch CPU threads per worker for Detoxify.", rich_help_panel=SCORING),
]
ToxicityBatchSize = Annotated[
    int | None,
    typer.Option(min=1, help="Maximum segments per Detoxify batch.", rich_help_panel=SCORING),
]
ToxicityMaxTokens = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Maximum tokens per Detoxify batch, padding included (default 8192).",
        rich_help_panel=SCORING,
    ),
]
ToxicityFp16 = Annotated[
    bool,
    typer.Option(
        "--toxicity-fp16",
        help="Run Detoxify in float16 (CUDA only); scores then differ by float16 rounding.",
        rich_help_panel=SCORING,
    ),
]
PiiSpacyModel = Annotated[
    str | None,
    typer.Option(
        help=(
            "Installed spaCy model adding NER (PERSON, LOCATION, ...) to the PII scorer; "
            "default: pattern recognizers only."
        ),
        rich_help_panel=SCORING,
    ),
]
ScorerOption = Annotated[
    list[str],
    typer.Option(
        help="SCORER.KEY=VALUE option for any scorer, VALUE as JSON or text. Repeatable.",
        rich_help_panel=SCORING,
    ),
]


def parse_scorer_list(text: str) -> tuple[str, ...]:
    """Split ``--scorers`` into names, raising UsageError when it names none."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise UsageError("--scorers names no scorer")
    return names


def build_scorer_options(
    *,
    toxicity_model: str | None = None,
    toxicity_checkpoint: str | None = None,
    toxicity_hf_dir: str | None = None,
    toxicity_device: str | None = None,
    toxicity_threads: int | None = None,
    toxicity_batch_size: int | None = None,
    toxicity_max_tokens: int | None = None,
    toxicity_fp16: bool = False,
    pii_spacy_model: str | None = None,
    scorer_option: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Merge the scorer flags into ``{scorer alias: options}``.

    The named flags override ``--scorer-option`` values for the same option.
    """
    options = parse_scorer_options(scorer_option or [])
    toxicity = {
        "model": toxicity_model,
        "checkpoint": toxicity_checkpoint,
        "hf_dir": toxicity_hf_dir,
        "device": toxicity_device,
        "threads": toxicity_threads,
        "batch_size": toxicity_batch_size,
        "max_tokens": toxicity_max_tokens,
        "fp16": toxicity_fp16 or None,
    }
    toxicity = {key: value for key, value in toxicity.items() if value is not None}
    if toxicity:
        options["toxicity"] = options.get("toxicity", {}) | toxicity
    if pii_spacy_model:
        options["pii"] = options.get("pii", {}) | {"spacy_model": pii_spacy_model}
    return options
