"""`annotate explain`: segment one text and show every scorer's score for each segment."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated, Any

import typer

from pipeline.cli.app import UsageError, app, fail
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
    build_scorer_options,
    parse_scorer_list,
)

logger = logging.getLogger(__name__)


@app.command(
    "explain",
    help=(
        "Show the segments of TEXT with their code-point offsets and every scorer's score."
        "\n\nScoring is the same as in 'annotate run' and takes the same scorer options. A "
        "scorer that does not apply to the kind of TEXT is skipped with a warning, and a "
        "blank segment, or one that a scorer failed on, shows null."
    ),
)
def explain_command(
    text: Annotated[
        str, typer.Argument(help="Text to segment and score; '-' reads it from standard input.")
    ],
    scorers: ScorerList = DEFAULT_SCORER_LIST,
    kind: Annotated[
        str, typer.Option(help="Segment the text as prose (sentences) or code (lines).")
    ] = "prose",
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help='Print one JSON object: {"segments": [{"text", "start", "end", "scores"}]}.',
        ),
    ] = False,
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
) -> None:
    try:
        if kind not in ("prose", "code"):
            raise UsageError(f"--kind must be prose or code, got {kind!r}")
        names = parse_scorer_list(scorers)
        options = build_scorer_options(
            toxicity_model=toxicity_model,
            toxicity_checkpoint=toxicity_checkpoint,
            toxicity_hf_dir=toxicity_hf_dir,
            toxicity_device=toxicity_device,
            toxicity_threads=toxicity_threads,
            toxicity_batch_size=toxicity_batch_size,
            toxicity_max_tokens=toxicity_max_tokens,
            toxicity_fp16=toxicity_fp16,
            pii_spacy_model=pii_spacy_model,
            scorer_option=scorer_option,
        )
    except UsageError as error:
        fail(str(error), 2)

    if text == "-":
        text = sys.stdin.read()
    segments, counts = explain(text, kind, names, options)
    if json_output:
        typer.echo(json.dumps({"segments": segments}, ensure_ascii=False))
    else:
        print_segments(segments, kind, counts)


def explain(
    text: str, kind: str, names: tuple[str, ...], options: dict[str, dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Segment and score ``text``; return one dict per segment and the nonzero counts."""
    from pipeline.read import Document
    from pipeline.score import DocumentScorer
    from schemas.config import SegmentOptions
    from scorers.base import MissingDependencyError, ScorerConfigError
    from scorers.registry import UnknownScorerError, create_scorers

    try:
        scorers = create_scorers(names, options)
    except (UnknownScorerError, MissingDependencyError, ScorerConfigError, ValueError) as error:
        fail(str(error), 2)
    applicable = [scorer for scorer in scorers if scorer.applies_to(kind)]
    for scorer in scorers:
        if scorer not in applicable:
            logger.warning(
                "scorer %s scores %s only, not %s; skipped. Pass --kind to change the kind.",
                scorer.name,
                " and ".join(sorted(scorer.kinds)),
                kind,
            )

    document_scorer = DocumentScorer(applicable, SegmentOptions(kind=kind))
    try:
        document_scorer.setup()
    except (MissingDependencyError, ScorerConfigError) as error:
        fail(str(error), 2)
    except Exception as error:  # noqa: BLE001 - a model that cannot load ends the command
        fail(f"a scorer could not be set up: {error}", 1)
    scored = document_scorer.score([Document("explain", text, {}, "<explain>", 1)])[0]
    document_scorer.teardown()

    segments = []
    for index, (start, end) in enumerate(scored.spans):
        scores = {scorer.name: scored.scores[scorer.name][index] for scorer in applicable}
        segments.append({"text": text[start:end], "start": start, "end": end, "scores": scores})
    counts = {key: value for key, value in sorted(document_scorer.counts.items()) if value}
    return segments, counts


def print_segments(segments: list[dict[str, Any]], kind: str, counts: dict[str, int]) -> None:
    typer.echo(f"{len(segments)} {kind} segment{'' if len(segments) == 1 else 's'}")
    for segment in segments:
        quoted = json.dumps(segment["text"], ensure_ascii=False)
        typer.echo(f"\n[{segment['start']}, {segment['end']})  {quoted}")
        width = max((len(name) for name in segment["scores"]), default=0)
        for name, score in segment["scores"].items():
            value = "null" if score is None else f"{score:.6g}"
            typer.echo(f"    {name.ljust(width)}  {value}")
    if counts:
        typer.echo("\ncounts: " + ", ".join(f"{key}={value}" for key, value in counts.items()))
