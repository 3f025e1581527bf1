"""`python -m pipeline.cli` runs the `annotate` command."""

from pipeline.cli import app

app(prog_name="annotate")
