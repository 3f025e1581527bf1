"""Options of a run, kept in one plain dataclass that is pickled to workers
and written into the manifest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PERCENTILE = 5.0
DEFAULT_GOOD_TOKEN = "<|good|>"
DEFAULT_BAD_TOKEN = "<|bad|>"
DEFAULT_SCORER_TOKEN_FORMAT = "<|{scorer}:{label}|>"

WEIGHTS = ("segments", "characters")
TOKEN_MODES = ("label", "scorer", "bucket")
LAYOUTS = ("tokens", "phf")

# Fixed thresholds by scorer alias. "phf" is the configuration of the reference
# work (Korbak et al., 2023): Detoxify toxicity 0.00056, PII and code style 0.0,
# a segment being good when its score is at or below the threshold.
THRESHOLD_PRESETS: dict[str, dict[str, float]] = {
    "phf": {"toxicity": 0.00056, "pii": 0.0, "code_style": 0.0},
}

# Values of the language field that make a document code. Lower-cased.
PROGRAMMING_LANGUAGES = frozenset(
    {
        "python", "py", "javascript", "js", "typescript", "ts", "java", "c", "c++", "cpp",
        "c#", "csharp", "go", "golang", "rust", "ruby", "php", "shell", "bash", "sh", "perl",
        "scala", "kotlin", "swift", "r", "julia", "lua", "haskell", "sql", "html", "css",
    }
)  # fmt: skip


@dataclass(frozen=True)
class SegmentOptions:
    """How documents are classified and cut into segments.

    Attributes:
        language_field: metadata field whose value, when it names a programming
            language, makes a document code.
        kind: ``auto`` (use language_field), ``prose`` or ``code`` for all documents.
        spacy_language: language code of the blank spaCy pipeline whose
            sentencizer splits prose. ``xx`` is spaCy's multi-language tokenizer.
    """

    language_field: str = "lang"
    kind: str = "auto"
    spacy_language: str = "xx"


@dataclass(frozen=True)
class ReadOptions:
    """How input records are read.

    Attributes:
        text_field: field holding the document text.
        id_field: field holding the document id; missing ids get a stable
            id from the file name and line number.
    """

    text_field: str = "text"
    id_field: str = "id"


@dataclass(frozen=True)
class LabelOptions:
    """Options of the threshold rules, the control tokens and the shard layout.

    Attributes:
        percentiles: scorer alias or name -> P in percent (0 to 100). The threshold
            is the P-th percentile of that scorer's scores over the whole run.
        thresholds: scorer alias or name -> fixed threshold, in the scorer's unit.
        preset: name of an entry of THRESHOLD_PRESETS, applied to the scorers it
            names unless `percentiles` or `thresholds` names them too.
        default_percentile: P for scorers that no other rule names.
        percentile_weight: ``segments`` (every segment counts once) or ``characters`` (a
            segment counts with its length) in the percentiles and fractions.
        quantile_epsilon: rank accuracy of Beam's approximate quantiles, as a
            fraction of the number (or, weighted, the characters) of scores.
        good_token, bad_token: control tokens written in front of segments.
        document_token: token written at the start of every document that has a
            non-blank segment; None writes none.
        token_mode: ``label`` (one good or bad token per segment), ``scorer`` (one
            token per applicable scorer, good or bad) or ``bucket`` (one token per
            applicable scorer naming the score's percentile bucket).
        scorer_token_format: format of the ``scorer`` and ``bucket`` tokens, with
            the fields ``{scorer}`` (the scorer alias) and ``{label}`` (good, bad,
            or the bucket number).
        buckets: number of equal-frequency buckets in ``bucket`` mode.
        drop_token_fraction: fraction of non-blank segments written without a
            token, chosen by a hash of seed, document id and segment index.
        drop_token_seed: seed of that hash.
        layout: ``tokens`` (the default shards) or ``phf`` (the columns the
            reference trainer reads, for the one scorer `layout_scorer`).
        layout_scorer: scorer alias or name written by the ``phf`` layout.
    """

    percentiles: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    preset: str | None = None
    default_percentile: float = DEFAULT_PERCENTILE
    percentile_weight: str = "segments"
    quantile_epsilon: float = 0.001
    good_token: str = DEFAULT_GOOD_TOKEN
    bad_token: str = DEFAULT_BAD_TOKEN
    document_token: str | None = None
    token_mode: str = "label"
    scorer_token_format: str = DEFAULT_SCORER_TOKEN_FORMAT
    buckets: int = 10
    drop_token_fraction: float = 0.0
    drop_token_seed: int = 0
    layout: str = "tokens"
    layout_scorer: str | None = None

    def __post_init__(self) -> None:
        _check_choice("percentile_weight", self.percentile_weight, WEIGHTS)
        _check_choice("token_mode", self.token_mode, TOKEN_MODES)
        _check_choice("layout", self.layout, LAYOUTS)
        if self.preset is not None:
            _check_choice("preset", self.preset, tuple(THRESHOLD_PRESETS))
        for name, percentile in self.percentiles.items():
            if not 0 <= percentile <= 100:
                raise ValueError(f"percentile of {name} is {percentile}; P must be 0 to 100")
        if not 0 <= self.default_percentile <= 100:
            raise ValueError(f"default_percentile is {self.default_percentile}; must be 0 to 100")
        if not 0 <= self.drop_token_fraction <= 1:
            raise ValueError(
                f"drop_token_fraction is {self.drop_token_fraction}; must be between 0 and 1"
            )
        if self.buckets < 2:
            raise ValueError(f"buckets is {self.buckets}; bucket tokens need at least 2 buckets")
        overlap = set(self.percentiles) & set(self.thresholds)
        if overlap:
            raise ValueError(
                f"scorer {sorted(overlap)[0]!r} has both a percentile and a fixed threshold; "
                "give one of them"
            )


def _check_choice(option: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{option} must be one of {', '.join(choices)}, got {value!r}")


DEDUP_METHODS = ("none", "exact", "minhash")


@dataclass(frozen=True)
class DedupOptions:
    """Options of duplicate removal, which runs before scoring.

    Attributes:
        method: ``none``, ``exact`` or ``minhash``. ``exact`` removes copies whose
            normalized text is equal. ``minhash`` also removes near copies, whose word
            n-gram sets have an estimated Jaccard similarity of at least `threshold`.
        threshold: Jaccard similarity, 0 to 1, at which two documents are near copies.
        num_perm: MinHash permutations per document signature.
        ngram_size: words per shingle. Documents with fewer words have no shingles and
            are removed only as exact copies.
        seed: seed of the MinHash permutations.
        write_duplicates: write every removed document, with the key of the document
            kept in its place, to OUT/duplicates/.
    """

    method: str = "none"
    threshold: float = 0.8
    num_perm: int = 128
    ngram_size: int = 5
    seed: int = 1
    write_duplicates: bool = False


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's output, apart from Beam's own options.

    Attributes:
        inputs: input file, glob or directory.
        output_dir: directory receiving shards/, thresholds.json and manifest.json.
        scorers: scorer aliases or names, in column order.
        scorer_options: scorer alias -> keyword options for its constructor.
        docs_per_shard: documents per output shard; 0 means one shard per input file.
        batch_documents: documents segmented and scored together; with a cap of 1,000,000
            characters per batch it bounds a worker's memory.
        fail_fast: raise on the first scorer error, invalid score or segmentation error
            instead of writing a null score or cutting the document into lines.
        dedup: how duplicate documents are removed before scoring.
    """

    inputs: str
    output_dir: str
    scorers: tuple[str, ...]
    scorer_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    read: ReadOptions = field(default_factory=ReadOptions)
    segment: SegmentOptions = field(default_factory=SegmentOptions)
    label: LabelOptions = field(default_factory=LabelOptions)
    docs_per_shard: int = 0
    batch_documents: int = 256
    fail_fast: bool = False
    dedup: DedupOptions = field(default_factory=DedupOptions)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
