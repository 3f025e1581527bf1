"""`annotate label`: new thresholds, tokens or layout for an earlier run, without scoring."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import UsageError, app, check_beam_args, fail, local_runner, verbosity
from pipeline.cli.interrupt import ExitOnInterrupt
from pipeline.cli.label_options import with_label_options
from pipeline.cli.run_command import fail_on_scorer_setup, print_summary, write_report
from schemas.config import LabelOptions


@app.command(
    "label",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    epilog="Any other option is passed to Apache Beam unchanged, as with 'annotate run'.",
)
@with_label_options
def label_command(
    ctx: typer.Context,
    run_dir: Annotated[
        str,
        typer.Argument(help="Output directory of an earlier 'annotate run' or 'annotate label'."),
    ],
    output_dir: Annotated[
        str, typer.Argument(help="New output directory (local path or gs://, s3://).")
    ],
    runner: Annotated[
        str,
        typer.Option(help="Beam runner. DirectRunner runs in this process, offline."),
    ] = "DirectRunner",
    overwrite: Annotated[
        bool, typer.Option(help="Replace the output of a different earlier run in OUTPUT_DIR.")
    ] = False,
    report: Annotated[
        bool,
        typer.Option(
            help="Write OUTPUT_DIR/report.html with plots of scores and labels at the end."
        ),
    ] = True,
    refine: Annotated[
        bool,
        typer.Option(
            help="For scorers the earlier run ran in reduced precision (bf16, int8), score "
            "the segments near each new threshold again in fp32, which loads their models. "
            "--no-refine labels from the stored scores alone."
        ),
    ] = True,
    *,
    label_options: LabelOptions,
) -> None:
    """Relabel an earlier run from its stored segments and scores.

    Reads RUN_DIR/scored/*.parquet (or RUN_DIR/shards/*.parquet), computes the
    thresholds again and writes shards, thresholds.json, special_tokens.json,
    manifest.json and, unless --no-report, report.html to OUTPUT_DIR. No model
    is loaded, except to refine scores of reduced precision (see --refine).
    """
    from pipeline.relabel import relabel
    from pipeline.run import OutputConflictError

    try:
        check_beam_args(ctx.args, "label")
    except UsageError as error:
        fail(str(error), 2)
    with ExitOnInterrupt("annotate label", output_dir, verbosity(ctx)):
        try:
            manifest = relabel(
                run_dir,
                output_dir,
                label_options,
                ["--runner", runner, *ctx.args],
                local_runner(runner),
                overwrite,
                refine,
            )
        except OutputConflictError as error:
            fail(str(error), 2)
        except Exception as error:
            # The only models relabelling loads are those of the refinement pass, whose
            # setup errors (ScorerConfigError is a ValueError) exit with 1 and a hint.
            hint = " (to label from the stored scores without the model, pass --no-refine)"
            fail_on_scorer_setup(error, hint if refine else "")
            if isinstance(error, ValueError):
                fail(str(error), 2)
            raise
        report_path = write_report(output_dir) if report else None
        print_summary(output_dir, manifest, report_path)
