"""`annotate run`: the whole job, from JSON Lines to token-inserted Parquet shards."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from pipeline.cli.app import (
    UsageError,
    app,
    check_beam_args,
    fail,
    local_runner,
    parse_scorer_options,
)
from pipeline.cli.label_options import with_label_options
from schemas.config import LabelOptions, ReadOptions, RunConfig, SegmentOptions
from scorers.registry import DEFAULT_SCORERS

logger = logging.getLogger(__name__)

SCORING = "Scoring"
INPUT = "Input and segments"
RUN = "Run"


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


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=(
        "Any other option is passed to Apache Beam unchanged (for example --runner "
        "DataflowRunner --project P --region R --temp_location gs://B/tmp, or "
        "--direct_num_workers 2 --direct_running_mode multi_processing)."
    ),
)
@with_label_options
def run_command(
    ctx: typer.Context,
    inputs: Annotated[
        str, typer.Argument(help="JSON Lines file (.jsonl, .gz, .zst), glob or directory.")
    ],
    output_dir: Annotated[
        str, typer.Argument(help="Output directory (local path or gs://, s3://).")
    ],
    runner: Annotated[
        str,
        typer.Option(
            help="Beam runner. DirectRunner runs in this process on Beam's FnApiRunner, offline.",
            rich_help_panel=RUN,
        ),
    ] = "DirectRunner",
    scorers: Annotated[
        str,
        typer.Option(
            help="Comma-separated scorers to run, in column order; 'annotate scorers' lists them.",
            rich_help_panel=SCORING,
        ),
    ] = ",".join(DEFAULT_SCORERS),
    toxicity_model: Annotated[
        str | None,
        typer.Option(
            help=(
                "Detoxify model: original (default), unbiased, multilingual, original-small, "
                "unbiased-small."
            ),
            rich_help_panel=SCORING,
        ),
    ] = None,
    toxicity_checkpoint: Annotated[
        str | None,
        typer.Option(
            help=(
                "Local path or URI of a checkpoint in Detoxify's format, instead of downloading "
                "the release file."
            ),
            rich_help_panel=SCORING,
        ),
    ] = None,
    toxicity_hf_dir: Annotated[
        str | None,
        typer.Option(
            help=(
                "Directory with the model's Hugging Face config and tokenizer files, for loading "
                "without internet."
            ),
            rich_help_panel=SCORING,
        ),
    ] = None,
    toxicity_device: Annotated[
        str | None,
        typer.Option(
            help="Torch device for Detoxify (default: cuda when available, else cpu).",
            rich_help_panel=SCORING,
        ),
    ] = None,
    toxicity_threads: Annotated[
        int | None,
        typer.Option(
            min=1, help="Torch CPU threads per worker for Detoxify.", rich_help_panel=SCORING
        ),
    ] = None,
    toxicity_batch_size: Annotated[
        int | None,
        typer.Option(min=1, help="Maximum segments per Detoxify batch.", rich_help_panel=SCORING),
    ] = None,
    pii_spacy_model: Annotated[
        str | None,
        typer.Option(
            help=(
                "Installed spaCy model adding NER (PERSON, LOCATION, ...) to the PII scorer; "
                "default: pattern recognizers only."
            ),
            rich_help_panel=SCORING,
        ),
    ] = None,
    scorer_option: Annotated[
        list[str],
        typer.Option(
            help="SCORER.KEY=VALUE option for any scorer, VALUE as JSON or text. Repeatable.",
            rich_help_panel=SCORING,
        ),
    ] = [],  # noqa: B006
    text_field: Annotated[
        str, typer.Option(help="Input field holding the document text.", rich_help_panel=INPUT)
    ] = "text",
    id_field: Annotated[
        str,
        typer.Option(
            help="Input field holding the document id; without one, the id is FILE:LINE.",
            rich_help_panel=INPUT,
        ),
    ] = "id",
    language_field: Annotated[
        str,
        typer.Option(
            help=(
                "Metadata field that makes a document code when it names a programming language "
                "(such as python)."
            ),
            rich_help_panel=INPUT,
        ),
    ] = "lang",
    kind: Annotated[
        str,
        typer.Option(
            help=(
                "auto: code when the language field names a programming language, else prose; or "
                "force prose or code."
            ),
            rich_help_panel=INPUT,
        ),
    ] = "auto",
    docs_per_shard: Annotated[
        int,
        typer.Option(
            min=0,
            help="Documents per output shard; 0 writes one shard per input file.",
            rich_help_panel=RUN,
        ),
    ] = 0,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace the output of a different earlier run in OUTPUT_DIR.", rich_help_panel=RUN
        ),
    ] = False,
    fail_fast: Annotated[
        bool,
        typer.Option(
            help="Stop on the first scorer error instead of writing a null score.",
            rich_help_panel=RUN,
        ),
    ] = False,
    *,
    label_options: LabelOptions,
) -> None:
    """Run the whole job: read, segment, score, threshold, label, write Parquet shards."""
    try:
        if kind not in ("auto", "prose", "code"):
            raise UsageError(f"--kind must be auto, prose or code, got {kind!r}")
        check_beam_args(ctx.args)
        options = parse_scorer_options(scorer_option)
        toxicity = toxicity_options(
            toxicity_model, toxicity_checkpoint, toxicity_hf_dir, toxicity_device,
            toxicity_threads, toxicity_batch_size,
        )  # fmt: skip
        if toxicity:
            options["toxicity"] = options.get("toxicity", {}) | toxicity
        if pii_spacy_model:
            options["pii"] = options.get("pii", {}) | {"spacy_model": pii_spacy_model}
        config = RunConfig(
            inputs=inputs,
            output_dir=output_dir.rstrip("/") if output_dir not in ("/",) else output_dir,
            scorers=tuple(name.strip() for name in scorers.split(",") if name.strip()),
            scorer_options=options,
            read=ReadOptions(text_field=text_field, id_field=id_field),
            segment=SegmentOptions(language_field=language_field, kind=kind),
            label=label_options,
            docs_per_shard=docs_per_shard,
            fail_fast=fail_fast,
        )
        if not config.scorers:
            raise UsageError("--scorers names no scorer")
    except UsageError as error:
        fail(str(error), 2)
    execute(config, ["--runner", runner, *ctx.args], runner, overwrite)


def execute(config: RunConfig, beam_args: list[str], runner: str, overwrite: bool) -> None:
    """Run the pipeline, turning known failures into one-line messages and exit codes."""
    from pipeline.read import list_input_files
    from pipeline.run import OutputConflictError, build_scorers, run
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
        manifest = run(config, beam_args, local_runner(runner), overwrite)
    except (OutputConflictError, ValueError) as error:
        fail(str(error), 2)
    print_summary(config.output_dir, manifest)


def print_summary(output_dir: str, manifest: dict) -> None:
    """Print where the output is and what it contains; exit 1 if the counts do not balance."""
    from pipeline import files
    from pipeline.run import THRESHOLDS_FILE

    counts = manifest["counts"]
    typer.echo(f"Output: {output_dir}")
    layout = manifest["layout"]
    if layout["name"] == "phf":
        content = f"in the phf layout for {layout['scorer']}"
    else:
        content = "with control tokens"
    typer.echo(
        f"  shards/*.parquet   {counts['documents_written']} documents {content} "
        f"({counts['segments_good']} good, {counts['segments_bad']} bad, "
        f"{counts['segments_blank']} blank segments)"
    )
    thresholds = files.read_json(files.join(output_dir, THRESHOLDS_FILE))
    for name, entry in thresholds.items():
        typer.echo(f"  thresholds.json    {name}: {threshold_summary(entry)}")
    typer.echo("  special_tokens.json  the control tokens, to add to a tokenizer")
    typer.echo(
        f"  manifest.json      {counts['documents_read']} read, "
        f"{counts['documents_rejected']} rejected (see rejected/), "
        f"{counts['documents_duplicates']} duplicates removed"
    )
    if not counts["balanced"]:
        logger.error("document counts do not balance: %s", counts)
        raise typer.Exit(1)


def threshold_summary(entry: dict) -> str:
    """Format one entry of thresholds.json: rule, threshold and fraction good."""
    threshold = entry["threshold"]
    fraction = entry["fraction_good"]
    if entry["percentile"] is not None:
        rule = f"P={entry['percentile']:g}"
    elif entry["preset"]:
        rule = f"preset {entry['preset']}"
    else:
        rule = "fixed"
    return (
        f"{rule} -> threshold {'none' if threshold is None else f'{threshold:.6g}'}, "
        f"{'-' if fraction is None else f'{fraction:.1%}'} of "
        f"{entry['num_segments']} segments good"
    )
