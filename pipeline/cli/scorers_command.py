"""`annotate scorers`: list the built-in scorers and those that other packages register."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from pipeline.cli.app import app
from scorers.base import MissingDependencyError
from scorers.registry import ENTRY_POINT_GROUP, load_scorer_class, scorer_targets

COLUMNS = ("ALIAS", "NAME", "KINDS", "INSTALLED", "DESCRIPTION")


@dataclass(frozen=True)
class ScorerRow:
    """One line of the listing, and a note printed under the table when there is one."""

    alias: str
    name: str
    kinds: str
    installed: str
    description: str
    note: str = ""


def describe_scorer(alias: str, target: str) -> ScorerRow:
    """Load one registered scorer class and describe it, or the reason it cannot be loaded."""
    try:
        cls = load_scorer_class(target)
    except (ImportError, AttributeError, TypeError) as error:
        return ScorerRow(alias, "-", "-", "error", f"cannot load {target}", f"{alias}: {error}")

    installed, note = "yes", ""
    try:
        cls.check_dependencies()
    except MissingDependencyError:
        installed, note = "no", f"{alias}: install with: {cls.install_hint}"
    kinds = ",".join(sorted(cls.kinds))
    return ScorerRow(alias, cls.name, kinds, installed, cls.description, note)


def format_table(rows: list[ScorerRow]) -> list[str]:
    cells = [COLUMNS] + [(r.alias, r.name, r.kinds, r.installed, r.description) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in cells]


@app.command(
    "scorers",
    help=(
        "List the scorers that --scorers accepts: alias, versioned name, kinds, whether "
        "their dependencies are installed, and a description.\n\nThe versioned name is the "
        "one written into score columns, thresholds.json and the manifest."
    ),
)
def scorers_command() -> None:
    rows = [describe_scorer(alias, target) for alias, target in scorer_targets().items()]
    for line in format_table(rows):
        typer.echo(line.rstrip())

    notes = [row.note for row in rows if row.note]
    if notes:
        typer.echo("")
        for note in notes:
            typer.echo(note)
    typer.echo(f"\nOther packages add scorers under the entry-point group {ENTRY_POINT_GROUP}.")
