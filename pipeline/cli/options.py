"""Options shared by the commands that read and score a corpus (`run` and `score`).

Each option is an `Annotated` type, so a command declares it with one line and
every command spells, documents and validates it the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from pipeline.cli.app import UsageError, fail, local_runner, parse_scorer_options
from schemas.config import LabelOptions, ReadOptions, RunConfig, SegmentOptions
from scorers.registry import DEFAULT_SCORERS

SCORING = "Scoring"
INPUT = "Input and segments"
RUN = "Run"

# Typer settings of a command that passes the options it does not know to Beam.
BEAM_ARGS_CONTEXT = {"allow_extra_args": True, "ignore_unknown_options": True}
BEAM_ARGS_EPILOG = (
    "Any other option is passed to Apache Beam unchanged (for example --runner "
    "DataflowRunner --project P --region R --temp_location gs://B/tmp, or "
    "--direct_num_workers 2 --direct_running_mode multi_processing)."
)

DEFAULT_SCORER_LIST = ",".join(DEFAULT_SCORERS)

Inputs = Annotated[
    str,
    typer.Argument(help="JSON Lines file (.jsonl, .gz, .zst) or Parquet file, glob or directory."),
]
OutputDir = Annotated[str, typer.Argument(help="Output directory (local path or gs://, s3://).")]
Runner = Annotated[
    str,
    typer.Option(
        help="Beam runner. DirectRunner runs in this process on Beam's FnApiRunner, offline.",
        rich_help_panel=RUN,
    ),
]
Scorers = Annotated[
    str,
    typer.Option(
        help="Comma-separated scorers to run, in column order; 'annotate scorers' lists them.",
        rich_help_panel=SCORING,
    ),
]
ToxicityModel = Annotated[
    str | None,
    typer.Option(
        help=(
            "Detoxify model: original (default), unbiased, multilingual, original-small, "
            "unbiased-small."
        ),
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
TextField = Annotated[
    str,
    typer.Option(
        help="Input field (JSON Lines) or column (Parquet) holding the document text.",
        rich_help_panel=INPUT,
    ),
]
IdField = Annotated[
    str,
    typer.Option(
        help=(
            "Input field or column holding the document id; without one, the id is FILE:LINE "
            "(FILE:ROW for Parquet, counting from 1)."
        ),
        rich_help_panel=INPUT,
    ),
]
LanguageField = Annotated[
    str,
    typer.Option(
        help=(
            "Metadata field that makes a document code when it names a programming language "
            "(such as python)."
        ),
        rich_help_panel=INPUT,
    ),
]
Kind = Annotated[
    str,
    typer.Option(
        help=(
            "auto: code when the language field names a programming language, else prose; or "
            "force prose or code."
        ),
        rich_help_panel=INPUT,
    ),
]
DocsPerShard = Annotated[
    int,
    typer.Option(
        min=0,
        help="Documents per output shard; 0 writes one shard per input file.",
        rich_help_panel=RUN,
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        help="Replace the output of a different earlier run in OUTPUT_DIR.", rich_help_panel=RUN
    ),
]
FailFast = Annotated[
    bool,
    typer.Option(
        help="Stop on the first scorer error instead of writing a null score.",
        rich_help_panel=RUN,
    ),
]


def toxicity_options(
    model: str | None,
    checkpoint: str | None,
    hf_dir: str | None,
    device: str | None,
    threads: int | None,
    batch_size: int | None,
) -> dict:
    given = {
        "model": model, "checkpoint": checkpoint, "hf_dir": hf_dir, "device": device,
        "threads": threads, "batch_size": batch_size,
    }  # fmt: skip
    return {key: value for key, value in given.items() if value is not None}


def build_config(
    inputs: str,
    output_dir: str,
    scorers: str,
    scorer_option: list[str],
    toxicity: dict,
    pii_spacy_model: str | None,
    read: ReadOptions,
    segment: SegmentOptions,
    docs_per_shard: int,
    fail_fast: bool,
    label: LabelOptions | None = None,
) -> RunConfig:
    """Turn command-line values into a RunConfig; raises UsageError for invalid values."""
    if segment.kind not in ("auto", "prose", "code"):
        raise UsageError(f"--kind must be auto, prose or code, got {segment.kind!r}")
    options = parse_scorer_options(scorer_option)
    if toxicity:
        options["toxicity"] = options.get("toxicity", {}) | toxicity
    if pii_spacy_model:
        options["pii"] = options.get("pii", {}) | {"spacy_model": pii_spacy_model}
    config = RunConfig(
        inputs=inputs,
        output_dir=output_dir.rstrip("/") if output_dir not in ("/",) else output_dir,
        scorers=tuple(name.strip() for name in scorers.split(",") if name.strip()),
        scorer_options=options,
        read=read,
        segment=segment,
        label=label or LabelOptions(),
        docs_per_shard=docs_per_shard,
        fail_fast=fail_fast,
    )
    if not config.scorers:
        raise UsageError("--scorers names no scorer")
    return config


def run_job(
    job: Callable[..., dict], config: RunConfig, beam_args: list[str], runner: str, overwrite: bool
) -> dict:
    """Check the scorers and inputs, then run `job`; known failures exit with code 2."""
    from pipeline.read import list_input_files
    from pipeline.run import OutputConflictError, build_scorers
    from scorers.base import MissingDependencyError, ScorerConfigError
    from scorers.registry import UnknownScorerError

    try:
        build_scorers(config)
        list_input_files(config.inputs)
    except (UnknownScorerError, MissingDependencyError, ScorerConfigError, ValueError) as error:
        fail(str(error), 2)
    except FileNotFoundError as error:
        fail(str(error), 2)
    try:
        return job(config, beam_args, local_runner(runner), overwrite)
    except (OutputConflictError, ValueError) as error:
        fail(str(error), 2)
