"""`annotate report`: rebuild OUT/report.html from an output directory."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.app import app, fail
from pipeline.report_data import DEFAULT_SOURCE_FIELD


@app.command("report")
def report_command(
    output_dir: Annotated[str, typer.Argument(help="Output directory of 'annotate run'.")],
    source_field: Annotated[
        str,
        typer.Option(
            help=(
                "Metadata field that names a document's source, for the labels-by-source plot; "
                "documents without it are grouped by input file."
            )
        ),
    ] = DEFAULT_SOURCE_FIELD,
) -> None:
    """Write OUTPUT_DIR/report.html: score histograms, labels by kind and source, counts."""
    from pipeline.report import ReportDependencyError, build_report
    from pipeline.report_data import NoDocumentShardsError, NotAnOutputDirectoryError

    try:
        path = build_report(output_dir.rstrip("/") or "/", source_field)
    except (ReportDependencyError, NotAnOutputDirectoryError, NoDocumentShardsError) as error:
        fail(str(error), 2)
    typer.echo(f"Report: {path}")
