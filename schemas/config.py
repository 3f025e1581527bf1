"""Options of a run, kept in one plain dataclass that is pickled to workers
and written into the manifest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PERCENTILE = 5.0
DEFAULT_GOOD_TOKEN = "<|good|>"
DEFAULT_BAD_TOKEN = "<|bad|>"

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
    """How thresholds are chosen and tokens are written.

    Attributes:
        percentiles: scorer alias or name -> P in percent (0 to 100); segments
            scoring at or below the P-th percentile of that scorer's scores are safe.
        default_percentile: P for scorers not named in `percentiles`.
        good_token, bad_token: control tokens written in front of segments.
        quantile_epsilon: rank accuracy of Beam's approximate quantiles, as a
            fraction of the number of scores.
    """

    percentiles: dict[str, float] = field(default_factory=dict)
    default_percentile: float = DEFAULT_PERCENTILE
    good_token: str = DEFAULT_GOOD_TOKEN
    bad_token: str = DEFAULT_BAD_TOKEN
    quantile_epsilon: float = 0.001


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
