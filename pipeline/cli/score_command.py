"""`annotate score`: the scoring pass alone, writing scored shards without labels."""

from __future__ import annotations

import logging

import typer

from pipeline.cli.app import (
    LOCAL_RUNNERS,
    UsageError,
    app,
    check_beam_args,
    fail,
    local_runner,
    verbosity,
)
from pipeline.cli.interrupt import ExitOnInterrupt
from pipeline.cli.run_command import (
    check_before_run,
    counts_summary,
    fail_on_scorer_setup,
    progress_display,
)
from pipeline.cli.run_options import (
    Dedup,
    DedupNgram,
    DedupNumPerm,
    DedupSeed,
    DedupThreshold,
    DocsPerShard,
    FailFast,
    IdField,
    Inputs,
    Kind,
    LanguageField,
    OutputDir,
    Overwrite,
    Progress,
    Runner,
    SpacyLanguage,
    TextField,
    WriteDuplicates,
    build_run_config,
)
from pipeline.cli.scorer_options import (
    DEFAULT_SCORER_LIST,
    PiiSpacyModel,
    ScorerList,
    ScorerOption,
    ToxicityBatchSize,
    ToxicityCheckpoint,
    ToxicityDevice,
    ToxicityFp16,
    ToxicityHfDir,
    ToxicityMaxTokens,
    ToxicityModel,
    ToxicityThreads,
)
from schemas.config import DedupOptions, RunConfig, SegmentOptions

logger = logging.getLogger(__name__)


@app.command(
    "score",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=(
        "Any other option is passed to Apache Beam unchanged, as with 'annotate run'. "
        "'annotate label SCORED OUT' then chooses thresholds and writes the final shards."
    ),
)
def score_command(
    ctx: typer.Context,
    inputs: Inputs,
    output_dir: OutputDir,
    runner: Runner = "DirectRunner",
    scorers: ScorerList = DEFAULT_SCORER_LIST,
    toxicity_model: ToxicityModel = None,
    toxicity_checkpoint: ToxicityCheckpoint = None,
    toxicity_hf_dir: ToxicityHfDir = None,
    toxicity_device: ToxicityDevice = None,
    toxicity_threads: ToxicityThreads = None,
    toxicity_batch_size: ToxicityBatchSize = None,
    toxicity_max_tokens: ToxicityMaxTokens = None,
    toxicity_fp16: ToxicityFp16 = False,
    pii_spacy_model: PiiSpacyModel = None,
    scorer_option: ScorerOption = [],  # noqa: B006
    text_field: TextField = "text",
    id_field: IdField = "id",
    language_field: LanguageField = "lang",
    kind: Kind = "auto",
    spacy_language: SpacyLanguage = SegmentOptions.spacy_language,
    docs_per_shard: DocsPerShard = 0,
    overwrite: Overwrite = False,
    fail_fast: FailFast = False,
    dedup: Dedup = "none",
    dedup_threshold: DedupThreshold = DedupOptions.threshold,
    dedup_num_perm: DedupNumPerm = DedupOptions.num_perm,
    dedup_ngram: DedupNgram = DedupOptions.ngram_size,
    dedup_seed: DedupSeed = DedupOptions.seed,
    write_duplicates: WriteDuplicates = False,
    progress: Progress = None,
) -> None:
    """Read, segment and score: write segments, offsets and raw scores per shard, no labels.

    The output directory receives scored/*.parquet, rejected/*.jsonl and
    manifest.json. A rerun of the same command skips the shards that are complete.
    """
    try:
        check_beam_args(ctx.args, "score")
        config = build_run_config(ctx.params)
    except UsageError as error:
        fail(str(error), 2)
    if progress is None:
        progress = not ctx.find_root().params.get("quiet", False)
    progress = progress and runner.lower() in LOCAL_RUNNERS
    with ExitOnInterrupt("annotate score", config.output_dir, verbosity(ctx)):
        execute_score(config, ["--runner", runner, *ctx.args], runner, overwrite, progress)


def execute_score(
    config: RunConfig, beam_args: list[str], runner: str, overwrite: bool, progress: bool
) -> None:
    """Run the scoring pass, turning known failures into one-line messages and exit codes."""
    from pipeline.run import OutputConflictError
    from pipeline.score_pass import score

    input_files = check_before_run(config)
    try:
        with progress_display(input_files, progress) as display:
            progress_dir = display.directory if display else None
            manifest = score(config, beam_args, local_runner(runner), overwrite, progress_dir)
    except OutputConflictError as error:
        fail(str(error), 2)
    except Exception as error:
        fail_on_scorer_setup(error)
        raise
    print_score_summary(config.output_dir, manifest)


def print_score_summary(output_dir: str, manifest: dict) -> None:
    """Print where the scored shards are and what they contain; exit 1 if counts do not balance."""
    counts = manifest["counts"]
    typer.echo(f"Output: {output_dir}")
    typer.echo(
        f"  scored/*.parquet   {counts['documents_scored']} documents with segments and scores "
        f"({counts['segments_prose']} prose, {counts['segments_code']} code segments)"
    )
    typer.echo(f"  manifest.json      {counts_summary(counts)}")
    if not counts["balanced"]:
        logger.error("document counts do not balance: %s", counts)
        raise typer.Exit(1)
