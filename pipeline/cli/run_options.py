"""Input, shard and duplicate options shared by `annotate run` and `annotate score`.

Both commands declare the parameters below with these types, so the flags, their
help and their checks are the same in both.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Annotated, Any

import typer

from pipeline.cli.app import UsageError
from pipeline.cli.scorer_options import build_scorer_options, parse_scorer_list
from schemas.config import (
    DEDUP_METHODS,
    DedupOptions,
    LabelOptions,
    ReadOptions,
    RunConfig,
    SegmentOptions,
)

SCORER_OPTION_NAMES = tuple(inspect.signature(build_scorer_options).parameters)

INPUT = "Input and segments"
RUN = "Run"
DEDUP = "Duplicates"

Inputs = Annotated[
    str,
    typer.Argument(help="JSON Lines file (.jsonl, .gz, .zst) or Parquet file, glob or directory."),
]
OutputDir = Annotated[str, typer.Argument(help="Output directory (local path or gs://, s3://).")]
Runner = Annotated[
    str,
    typer.Option(
        help="Beam runner. DirectRunner runs in this process on Beam's FnApiRunner, offline.",
        rich_help_panel=RUN,
    ),
]
TextField = Annotated[
    str,
    typer.Option(
        help="Input field (JSON Lines) or column (Parquet) holding the document text.",
        rich_help_panel=INPUT,
    ),
]
IdField = Annotated[
    str,
    typer.Option(
        help=(
            "Input field or column holding the document id; without one, the id is FILE:LINE "
            "(FILE:ROW for Parquet, counting from 1)."
        ),
        rich_help_panel=INPUT,
    ),
]
LanguageField = Annotated[
    str,
    typer.Option(
        help=(
            "Metadata field that makes a document code when it names a programming language "
            "(such as python)."
        ),
        rich_help_panel=INPUT,
    ),
]
Kind = Annotated[
    str,
    typer.Option(
        help=(
            "auto: code when the language field names a programming language, else prose; or "
            "force prose or code."
        ),
        rich_help_panel=INPUT,
    ),
]
SpacyLanguage = Annotated[
    str,
    typer.Option(
        help=(
            "Language code of the blank spaCy pipeline whose sentencizer splits prose (en "
            "keeps abbreviations such as 'Dr.' inside sentences; xx is multi-language)."
        ),
        rich_help_panel=INPUT,
    ),
]
DocsPerShard = Annotated[
    int,
    typer.Option(
        min=0,
        help="Documents per output shard; 0 writes one shard per input file.",
        rich_help_panel=RUN,
    ),
]
Overwrite = Annotated[
    bool,
    typer.Option(
        help="Replace the output of a different earlier run in OUTPUT_DIR.", rich_help_panel=RUN
    ),
]
FailFast = Annotated[
    bool,
    typer.Option(
        help=(
            "Stop on the first scorer or segmentation error instead of writing a null "
            "score or cutting the document into lines."
        ),
        rich_help_panel=RUN,
    ),
]
Dedup = Annotated[
    str,
    typer.Option(
        help=(
            "Remove duplicate documents before scoring: none; exact (equal text after NFKC, "
            "case folding and whitespace collapsing); or minhash (exact copies and near "
            "copies by MinHash LSH over word n-grams). Each cluster keeps its smallest id."
        ),
        rich_help_panel=DEDUP,
    ),
]
DedupThreshold = Annotated[
    float,
    typer.Option(
        max=1.0,
        help="minhash: Jaccard similarity of word n-gram sets at which documents are copies.",
        rich_help_panel=DEDUP,
    ),
]
DedupNumPerm = Annotated[
    int,
    typer.Option(min=2, help="minhash: permutations per signature.", rich_help_panel=DEDUP),
]
DedupNgram = Annotated[
    int,
    typer.Option(
        min=1,
        help=(
            "minhash: words per shingle. Documents with fewer words are removed only as "
            "exact copies."
        ),
        rich_help_panel=DEDUP,
    ),
]
DedupSeed = Annotated[
    int,
    typer.Option(
        min=0,
        max=2**32 - 1,
        help="minhash: seed of the permutations.",
        rich_help_panel=DEDUP,
    ),
]
WriteDuplicates = Annotated[
    bool,
    typer.Option(
        help=(
            "Write removed documents, with the id, file and line of the document kept in "
            "their place, to OUTPUT_DIR/duplicates/."
        ),
        rich_help_panel=DEDUP,
    ),
]
Progress = Annotated[
    bool | None,
    typer.Option(
        help=(
            "Show documents and segments scored, rate and time left on stderr during local "
            "runs (default: on, off with --quiet)."
        ),
        show_default=False,
        rich_help_panel=RUN,
    ),
]


def check_kind(kind: str) -> None:
    if kind not in ("auto", "prose", "code"):
        raise UsageError(f"--kind must be auto, prose or code, got {kind!r}")


def dedup_options(
    method: str, threshold: float, num_perm: int, ngram_size: int, seed: int, write: bool
) -> DedupOptions:
    """Check the --dedup options that Typer cannot check and collect them."""
    if method not in DEDUP_METHODS:
        raise UsageError(f"--dedup must be none, exact or minhash, got {method!r}")
    if threshold <= 0:
        raise UsageError(f"--dedup-threshold must be above 0 and at most 1, got {threshold}")
    return DedupOptions(method, threshold, num_perm, ngram_size, seed, write)


def build_run_config(params: Mapping[str, Any], label: LabelOptions | None = None) -> RunConfig:
    """Check and collect the options that `annotate run` and `annotate score` share.

    Args:
        params: the command's parameter values by name (``ctx.params``).
        label: the threshold and token options of `annotate run`; None keeps the defaults.

    Raises:
        UsageError: an invalid --kind, --dedup or scorer option.
    """
    check_kind(params["kind"])
    output_dir = params["output_dir"]
    label_options = {"label": label} if label is not None else {}
    return RunConfig(
        inputs=params["inputs"],
        output_dir=output_dir.rstrip("/") if output_dir != "/" else output_dir,
        scorers=parse_scorer_list(params["scorers"]),
        scorer_options=build_scorer_options(**{name: params[name] for name in SCORER_OPTION_NAMES}),
        read=ReadOptions(text_field=params["text_field"], id_field=params["id_field"]),
        segment=SegmentOptions(
            language_field=params["language_field"],
            kind=params["kind"],
            spacy_language=params["spacy_language"],
        ),
        docs_per_shard=params["docs_per_shard"],
        fail_fast=params["fail_fast"],
        dedup=dedup_options(
            params["dedup"],
            params["dedup_threshold"],
            params["dedup_num_perm"],
            params["dedup_ngram"],
            params["dedup_seed"],
            params["write_duplicates"],
        ),
        **label_options,
    )
