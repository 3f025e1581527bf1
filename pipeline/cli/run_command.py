"""`annotate run`: the whole job, from JSON Lines to token-inserted Parquet shards."""

from __future__ import annotations

import logging
import re
from typing import Annotated

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
from pipeline.cli.config_file import (
    CONFIG_BEAM_ARGS_KEY,
    CONFIG_PATH_KEY,
    effective_config_toml,
    load_config_file,
    merge_beam_arguments,
)
from pipeline.cli.interrupt import ExitOnInterrupt
from pipeline.cli.label_options import with_label_options
from pipeline.cli.run_options import (
    RUN,
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
from pipeline.logs import SCORER_SETUP_ERRORS
from schemas.config import DedupOptions, LabelOptions, RunConfig, SegmentOptions

logger = logging.getLogger(__name__)


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog=(
        "Any other option is passed to Apache Beam unchanged (for example --runner "
        "DataflowRunner --project P --region R --temp_location gs://B/tmp, or "
        "--direct_num_workers 2 --direct_running_mode multi_processing).\n\n"
        "A --config TOML file contains any of these options, keyed by the option name "
        "without its dashes (default-percentile = 10), and Beam options in a \\[beam] table. "
        "Options on the command line override it; INPUTS and OUTPUT_DIR stay on the command "
        "line. Exit codes: 0 success, 1 run failure, 2 usage error, 130 interrupted (Ctrl-C)."
    ),
)
@with_label_options
def run_command(
    ctx: typer.Context,
    inputs: Inputs,
    output_dir: OutputDir,
    config_file: Annotated[
        str | None,
        typer.Option(
            "--config",
            metavar="FILE",
            is_eager=True,
            callback=load_config_file,
            help="TOML file with options of this command; options given here override it.",
            rich_help_panel=RUN,
        ),
    ] = None,
    print_config: Annotated[
        bool,
        typer.Option(
            "--print-config",
            help="Print the effective options as a TOML file for --config, and exit.",
            rich_help_panel=RUN,
        ),
    ] = False,
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
    report: Annotated[
        bool,
        typer.Option(
            help="Write OUTPUT_DIR/report.html with plots of scores and labels at the end.",
            rich_help_panel=RUN,
        ),
    ] = True,
    *,
    label_options: LabelOptions,
) -> None:
    """Run the whole job: read, segment, score, threshold, label, write Parquet shards."""
    try:
        beam_args = merge_beam_arguments(ctx.meta.get(CONFIG_BEAM_ARGS_KEY, []), ctx.args)
        check_beam_args(beam_args)
        config = build_run_config(ctx.params, label_options)
    except UsageError as error:
        fail(str(error), 2)
    if print_config:
        typer.echo(effective_config_toml(ctx, beam_args), nl=False)
        return
    if progress is None:
        progress = not ctx.find_root().params.get("quiet", False)
    with ExitOnInterrupt("annotate run", config.output_dir, verbosity(ctx)):
        execute(
            config,
            ["--runner", runner, *beam_args],
            runner,
            overwrite,
            progress=progress and runner.lower() in LOCAL_RUNNERS,
            report=report,
            config_file=ctx.meta.get(CONFIG_PATH_KEY),
        )


def execute(
    config: RunConfig,
    beam_args: list[str],
    runner: str,
    overwrite: bool,
    progress: bool = False,
    report: bool = True,
    config_file: str | None = None,
) -> None:
    """Run the pipeline, turning known failures into one-line messages and exit codes.

    Options and locations are checked before the run starts, so a usage error
    (exit code 2) leaves no output behind. Ctrl-C is left to the caller
    (`ExitOnInterrupt`).

    Args:
        progress: show the scoring pass's progress on stderr; only for local runners.
        report: write OUT/report.html at the end, unless matplotlib is missing.
        config_file: the --config file, recorded in the manifest.
    """
    from pipeline.run import OutputConflictError, run

    input_files = check_before_run(config)
    try:
        with progress_display(input_files, progress) as display:
            progress_dir = display.directory if display else None
            beam_runner = local_runner(runner)
            manifest = run(config, beam_args, beam_runner, overwrite, progress_dir, config_file)
    except OutputConflictError as error:
        fail(str(error), 2)
    except Exception as error:
        fail_on_scorer_setup(error)
        raise
    report_path = write_report(config.output_dir) if report else None
    print_summary(config.output_dir, manifest, report_path)


_SETUP_ERROR_LINE = re.compile(rf"\b(?:{'|'.join(SCORER_SETUP_ERRORS)}): (.+)")


def fail_on_scorer_setup(error: BaseException, hint: str = "") -> None:
    """Exit with code 1 and one line, `hint` appended, when `error` comes from a scorer's setup.

    Beam wraps an exception raised in a worker, sometimes keeping only its text, so
    the chain of causes is searched first, and then the message.
    """
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if type(current).__name__ in SCORER_SETUP_ERRORS:
            fail((_first_line(str(current)) or type(current).__name__) + hint, 1)
        current = current.__cause__ or current.__context__
    found = _SETUP_ERROR_LINE.search(str(error))
    if found:
        fail(_first_line(found.group(1)) + hint, 1)


def _first_line(message: str) -> str:
    """The message's first line, without the step name that Beam appends."""
    line = message.strip().split("\n", 1)[0]
    return re.sub(r" \[while running '[^']*'\]$", "", line)


def counts_summary(counts: dict) -> str:
    """Documents read, rejected and removed as duplicates; names rejected/ when it has any."""
    rejected = counts["documents_rejected"]
    see = " (see rejected/)" if rejected else ""
    return (
        f"{counts['documents_read']} read, {rejected} rejected{see}, "
        f"{counts['documents_duplicates']} duplicates removed"
    )


def check_before_run(config: RunConfig) -> list[str]:
    """Return the input files, or exit with code 2 on an invalid scorer, input or output."""
    from pipeline.locations import check_output_location
    from pipeline.read import list_input_files
    from pipeline.run import build_scorers, dedup_bands, prepare_label_job, provenance
    from scorers.base import MissingDependencyError, ScorerConfigError
    from scorers.registry import UnknownScorerError

    try:
        scorers = build_scorers(config)
    except ScorerConfigError as error:
        fail(str(error), 2)
    except (UnknownScorerError, MissingDependencyError, ValueError) as error:
        fail(f"--scorers: {error}", 2)
    try:
        check_spacy_language(config.segment.spacy_language)
        dedup_bands(config)
        stamp = provenance(config, scorers)
        prepare_label_job(config.output_dir, config.label, stamp, config.read.id_field)
        input_files = list_input_files(config.inputs)
        check_output_location(config.inputs, input_files, config.output_dir)
    except FileNotFoundError as error:
        fail(f"INPUTS: {error}", 2)
    except ValueError as error:  # OutputLocationError, --percentile or --dedup options
        fail(str(error), 2)
    return input_files


def check_spacy_language(language: str) -> None:
    """Raise ValueError naming --spacy-language when spaCy has no such language."""
    import spacy

    try:
        spacy.util.get_lang_class(language)
    except (ImportError, KeyError) as error:
        raise ValueError(
            f"--spacy-language {language!r} is not a language spaCy knows ({error}); "
            "use a code such as en, de, fr or xx"
        ) from None


def progress_display(input_files: list[str], enabled: bool):
    """Return a `ProgressDisplay` when enabled, else a context that yields None."""
    from contextlib import nullcontext

    from pipeline.progress import ProgressDisplay

    return ProgressDisplay(input_files) if enabled else nullcontext()


def write_report(output_dir: str) -> str | None:
    """Write OUT/report.html; warn and skip it when matplotlib or the data it plots is missing."""
    from pipeline.report import ReportDependencyError, build_report
    from pipeline.report_data import NoDocumentShardsError

    try:
        return build_report(output_dir)
    except (ReportDependencyError, NoDocumentShardsError) as error:
        logger.warning("no report.html: %s", error)
        return None


def print_summary(output_dir: str, manifest: dict, report_path: str | None = None) -> None:
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
    typer.echo(f"  manifest.json      {counts_summary(counts)}")
    if report_path:
        typer.echo("  report.html        plots of scores and labels, and the counts")
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
