"""`annotate run`: the whole job, from JSON Lines to token-inserted Parquet shards."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from pipeline.cli import options as opt
from pipeline.cli.app import UsageError, app, check_beam_args, fail, parse_percentiles
from schemas.config import (
    DEFAULT_BAD_TOKEN,
    DEFAULT_GOOD_TOKEN,
    DEFAULT_PERCENTILE,
    LabelOptions,
    ReadOptions,
    RunConfig,
    SegmentOptions,
)

logger = logging.getLogger(__name__)

LABELS = "Thresholds and tokens"


@app.command("run", context_settings=opt.BEAM_ARGS_CONTEXT, epilog=opt.BEAM_ARGS_EPILOG)
def run_command(
    ctx: typer.Context,
    inputs: opt.Inputs,
    output_dir: opt.OutputDir,
    runner: opt.Runner = "DirectRunner",
    scorers: opt.Scorers = opt.DEFAULT_SCORER_LIST,
    percentile: Annotated[
        list[str],
        typer.Option(
            help=(
                "SCORER=P: segments scoring at or below the P-th percentile (0-100, in percent) "
                "of that scorer's scores over the whole run are safe. Repeatable."
            ),
            rich_help_panel=LABELS,
        ),
    ] = [],  # noqa: B006
    default_percentile: Annotated[
        float,
        typer.Option(
            min=0,
            max=100,
            help="P, in percent, for scorers without --percentile.",
            rich_help_panel=LABELS,
        ),
    ] = DEFAULT_PERCENTILE,
    quantile_epsilon: Annotated[
        float,
        typer.Option(
            min=1e-6,
            max=0.1,
            help=(
                "Allowed rank error of the approximate percentiles, as a fraction of the number "
                "of segments."
            ),
            rich_help_panel=LABELS,
        ),
    ] = 0.001,
    good_token: Annotated[
        str, typer.Option(help="Control token in front of good segments.", rich_help_panel=LABELS)
    ] = DEFAULT_GOOD_TOKEN,
    bad_token: Annotated[
        str, typer.Option(help="Control token in front of bad segments.", rich_help_panel=LABELS)
    ] = DEFAULT_BAD_TOKEN,
    toxicity_model: opt.ToxicityModel = None,
    toxicity_checkpoint: opt.ToxicityCheckpoint = None,
    toxicity_hf_dir: opt.ToxicityHfDir = None,
    toxicity_device: opt.ToxicityDevice = None,
    toxicity_threads: opt.ToxicityThreads = None,
    toxicity_batch_size: opt.ToxicityBatchSize = None,
    pii_spacy_model: opt.PiiSpacyModel = None,
    scorer_option: opt.ScorerOption = [],  # noqa: B006
    text_field: opt.TextField = "text",
    id_field: opt.IdField = "id",
    language_field: opt.LanguageField = "lang",
    kind: opt.Kind = "auto",
    docs_per_shard: opt.DocsPerShard = 0,
    overwrite: opt.Overwrite = False,
    fail_fast: opt.FailFast = False,
) -> None:
    """Run the whole job: read, segment, score, threshold, label, write Parquet shards."""
    try:
        check_beam_args(ctx.args)
        toxicity = opt.toxicity_options(
            toxicity_model, toxicity_checkpoint, toxicity_hf_dir, toxicity_device,
            toxicity_threads, toxicity_batch_size,
        )  # fmt: skip
        config = opt.build_config(
            inputs, output_dir, scorers, scorer_option, toxicity, pii_spacy_model,
            read=ReadOptions(text_field=text_field, id_field=id_field),
            segment=SegmentOptions(language_field=language_field, kind=kind),
            docs_per_shard=docs_per_shard,
            fail_fast=fail_fast,
            label=LabelOptions(
                percentiles=parse_percentiles(percentile),
                default_percentile=default_percentile,
                good_token=good_token,
                bad_token=bad_token,
                quantile_epsilon=quantile_epsilon,
            ),
        )  # fmt: skip
    except UsageError as error:
        fail(str(error), 2)
    execute(config, ["--runner", runner, *ctx.args], runner, overwrite)


def execute(config: RunConfig, beam_args: list[str], runner: str, overwrite: bool) -> None:
    """Run the pipeline, turning known failures into one-line messages and exit codes."""
    from pipeline.run import run

    manifest = opt.run_job(run, config, beam_args, runner, overwrite)
    print_summary(config.output_dir, manifest)


def print_summary(output_dir: str, manifest: dict) -> None:
    from pipeline import files
    from pipeline.run import THRESHOLDS_FILE

    counts = manifest["counts"]
    typer.echo(f"Output: {output_dir}")
    typer.echo(
        f"  shards/*.parquet   {counts['documents_written']} documents with control tokens "
        f"({counts['segments_good']} good, {counts['segments_bad']} bad, "
        f"{counts['segments_blank']} blank segments)"
    )
    thresholds = files.read_json(files.join(output_dir, THRESHOLDS_FILE))
    for name, entry in thresholds.items():
        threshold = entry["threshold"]
        fraction = entry["fraction_good"]
        typer.echo(
            f"  thresholds.json    {name}: P={entry['percentile']:g} -> threshold "
            f"{'none' if threshold is None else f'{threshold:.6g}'}, "
            f"{'-' if fraction is None else f'{fraction:.1%}'} of "
            f"{entry['num_segments']} segments good"
        )
    typer.echo(
        f"  manifest.json      {counts['documents_read']} read, "
        f"{counts['documents_rejected']} rejected (see rejected/), "
        f"{counts['documents_duplicates']} duplicates removed"
    )
    if not counts["balanced"]:
        logger.error("document counts do not balance: %s", counts)
        raise typer.Exit(1)
