"""`annotate score`: the scoring pass alone, writing scored shards without labels."""

from __future__ import annotations

import logging

import typer

from pipeline.cli import options as opt
from pipeline.cli.app import UsageError, app, check_beam_args, fail
from schemas.config import ReadOptions, SegmentOptions

logger = logging.getLogger(__name__)


@app.command("score", context_settings=opt.BEAM_ARGS_CONTEXT, epilog=opt.BEAM_ARGS_EPILOG)
def score_command(
    ctx: typer.Context,
    inputs: opt.Inputs,
    output_dir: opt.OutputDir,
    runner: opt.Runner = "DirectRunner",
    scorers: opt.Scorers = opt.DEFAULT_SCORER_LIST,
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
    """Read, segment and score: write segments, offsets and raw scores per shard, no labels.

    The output directory receives scored/*.parquet, rejected/*.jsonl and
    manifest.json. A rerun of the same command skips the shards that are complete.
    """
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
        )  # fmt: skip
    except UsageError as error:
        fail(str(error), 2)
    from pipeline.score_pass import score

    manifest = opt.run_job(score, config, ["--runner", runner, *ctx.args], runner, overwrite)
    print_score_summary(config.output_dir, manifest)


def print_score_summary(output_dir: str, manifest: dict) -> None:
    counts = manifest["counts"]
    typer.echo(f"Output: {output_dir}")
    typer.echo(
        f"  scored/*.parquet   {counts['documents_scored']} documents with segments and scores "
        f"({counts['segments_prose']} prose, {counts['segments_code']} code segments)"
    )
    typer.echo(
        f"  manifest.json      {counts['documents_read']} read, "
        f"{counts['documents_rejected']} rejected (see rejected/), "
        f"{counts['documents_duplicates']} duplicates removed"
    )
    if not counts["balanced"]:
        logger.error("document counts do not balance: %s", counts)
        raise typer.Exit(1)
