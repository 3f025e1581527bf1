"""`annotate inspect`: print documents of an output directory with their segments and labels."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from pipeline.cli.app import app, fail

if TYPE_CHECKING:
    from pipeline.report_data import DocumentShards

LABEL_COLORS = {"good": "green", "bad": "red"}


@app.command(
    "inspect",
    epilog=(
        "Each segment line shows its index, its label, the score of every scorer that applies "
        "(* marks a score above the scorer's threshold) and the segment as a JSON string. "
        "Colors are used only when the output is a terminal."
    ),
)
def inspect_command(
    output_dir: Annotated[str, typer.Argument(help="Output directory of 'annotate run'.")],
    document_ids: Annotated[
        list[str],
        typer.Option("--id", help="Show only the document with this id. Repeatable."),
    ] = [],  # noqa: B006
    bad_only: Annotated[
        bool,
        typer.Option(
            "--bad-only", help="Show only documents with a bad segment, and only those segments."
        ),
    ] = False,
    limit: Annotated[
        int, typer.Option(min=0, help="Maximum number of documents to show; 0 shows all.")
    ] = 10,
    max_chars: Annotated[
        int,
        typer.Option(min=0, help="Cut each segment to this many characters; 0 shows it whole."),
    ] = 120,
) -> None:
    """Print documents with their segments, scores and labels."""
    from pipeline.report_data import NoDocumentShardsError, NotAnOutputDirectoryError

    try:
        run = load_output(output_dir.rstrip("/") or "/")
    except (NotAnOutputDirectoryError, NoDocumentShardsError) as error:
        fail(str(error), 2)
    shown = 0
    found: set[str] = set()
    for row in iter_documents(run["shards"], run["scorer_names"]):
        if document_ids and row["id"] not in document_ids:
            continue
        if bad_only and "bad" not in row["labels"]:
            continue
        found.add(row["id"])
        typer.echo(format_document(row, run, bad_only, max_chars))
        shown += 1
        if limit and shown >= limit:
            break
    missing = [doc_id for doc_id in document_ids if doc_id not in found]
    if missing and not (limit and shown >= limit):
        fail(f"no document with id {missing[0]!r} in {output_dir}", 1)


def load_output(output_dir: str) -> dict:
    """Read the scorer names, aliases and thresholds of a finished run, and find its shards."""
    from pipeline.report_data import document_shards, load_run_files

    manifest, thresholds = load_run_files(output_dir)
    scorers = manifest.get("scorers", [])
    return {
        "scorer_names": [scorer["name"] for scorer in scorers],
        "aliases": {scorer["name"]: scorer.get("alias", scorer["name"]) for scorer in scorers},
        "thresholds": {name: entry.get("threshold") for name, entry in thresholds.items()},
        "shards": document_shards(output_dir, manifest, thresholds),
    }


def iter_documents(shards: DocumentShards, scorer_names: Sequence[str]) -> Iterator[dict]:
    """Yield the documents of a run, in shard order, as dicts."""
    from pipeline.report_data import document_batches
    from schemas.output import score_column

    columns = ["id", "kind", "segments", "labels", "input_file", "input_line"]
    columns += [score_column(name) for name in scorer_names]
    for batch in document_batches(shards, columns):
        yield from batch.to_pylist()


def format_document(row: Mapping, run: Mapping, bad_only: bool, max_chars: int) -> str:
    """Format a document's header line and one line per segment (bad ones only with bad_only)."""
    from schemas.output import score_column

    labels = row["labels"]
    counts = [(labels.count(label), label or "blank") for label in ("good", "bad", None)]
    summary = ", ".join(f"{count} {name}" for count, name in counts if count)
    header = (
        typer.style(row["id"], bold=True)
        + f"  {row['kind']}  {row['input_file']}:{row['input_line']}  "
        + f"{len(labels)} segments{': ' + summary if summary else ''}"
    )
    scores = {
        name: row[score_column(name)]
        for name in run["scorer_names"]
        if row[score_column(name)] is not None
    }
    lines = [header]
    for index, (segment, label) in enumerate(zip(row["segments"], labels, strict=True)):
        if bad_only and label != "bad":
            continue
        lines.append(format_segment(index, segment, label, scores, run, max_chars))
    return "\n".join(lines) + "\n"


def format_segment(
    index: int,
    segment: str,
    label: str | None,
    scores: Mapping[str, list],
    run: Mapping,
    max_chars: int,
) -> str:
    dim = True if label is None else None
    tag = typer.style(f"{label or 'blank':5}", fg=LABEL_COLORS.get(label), dim=dim)
    parts = [f"  {index:>4} {tag}"]
    for name, values in scores.items():
        parts.append(format_score(run["aliases"][name], values[index], run["thresholds"].get(name)))
    text = segment if not max_chars or len(segment) <= max_chars else segment[:max_chars] + "…"
    parts.append(json.dumps(text, ensure_ascii=False))
    return " ".join(parts)


def format_score(alias: str, score: float | None, threshold: float | None) -> str:
    if score is None:
        return f"{alias}=-"
    if threshold is not None and score > threshold:
        return typer.style(f"{alias}={score:.4g}*", fg="red")
    return f"{alias}={score:.4g}"
