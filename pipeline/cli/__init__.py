"""The `annotate` command line: one module per command, registered on one Typer app."""

import pipeline.logs  # noqa: F401  (filters Beam import noise before Beam loads)
from pipeline.cli import (  # noqa: F401  (each module registers its command)
    explain_command,
    inspect_command,
    label_command,
    report_command,
    run_command,
    score_command,
    scorers_command,
)
from pipeline.cli.app import app

__all__ = ["app"]
