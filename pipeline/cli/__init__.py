"""The `annotate` command line: one module per command, registered on one Typer app."""

import pipeline.logs  # noqa: F401  (filters Beam import noise before Beam loads)
from pipeline.cli import (
    run_command,  # noqa: F401  (registers `annotate run`)
    score_command,  # noqa: F401  (registers `annotate score`)
)
from pipeline.cli.app import app

__all__ = ["app"]
