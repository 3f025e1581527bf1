"""PII density of prose segments, found with Presidio's recognizers.

The score of a segment is the number of distinct PII findings in it divided by its
length in characters (Unicode code points), so 0.0 means no finding. Overlapping
Presidio results merge into one finding. Offsets are code-point offsets, so
``segment[start:end]`` is the text of a finding.

Without a spaCy model the scorer runs only pattern recognizers (e-mail, phone, credit
card, IP, URL, IBAN, US SSN) over Presidio's ``NoOpNlpEngine``, which loads no model.
Context words then cannot raise scores, so a result counts only on its pattern score.
No code path opens a network connection. The e-mail recognizer's domain check uses
tldextract's bundled public-suffix snapshot instead of downloading the list, and a
spaCy model that is not installed raises MissingDependencyError instead of being
downloaded. The tests run the pattern and spaCy paths with sockets blocked.

Two recognizers differ from Presidio's defaults (presidio-analyzer 2.2.366):

- URL: matches must start and end at a word boundary. Presidio's pattern has no
  boundaries, so it reports ``jane.ro`` inside ``jane.roe@example.org`` and ``end.Th``
  inside ``the end.Then``, because ``ro`` and ``th`` are country-code TLDs.
- Phone: a number glued to a preceding letter (``office212-555-0142``, as left by
  stripped markup) is found. libphonenumber's VALID leniency rejects such numbers
  to skip IDs like ``abc8005001234``, so those IDs now count as phone numbers. A
  letter directly after the number still rejects it.
"""

from __future__ import annotations

import importlib.metadata
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any, NamedTuple

from scorers.base import PROSE, MissingDependencyError, Score, Scorer, ScorerConfigError

PATTERN_ENTITIES = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IP_ADDRESS",
    "URL",
    "IBAN_CODE",
    "US_SSN",
)
NER_ENTITIES = ("PERSON", "ORGANIZATION", "LOCATION")

# Presidio scores a phone number without a context word 0.4, and the NoOp engine
# provides no context words, so the phone threshold must not exceed 0.4. At 0.5 the
# other entities keep Presidio's medium patterns and drop the "very weak" US SSN
# patterns (0.05) and the bare IPv6 "::" (0.1).
DEFAULT_MIN_SCORE = 0.5
DEFAULT_MIN_SCORES = {"PHONE_NUMBER": 0.4}

# Maximum characters per Presidio call. Longer texts are analyzed in chunks, because
# libphonenumber's matcher gives up after 65,535 rejected candidates per text (its
# max_tries), missing every number after them, and spaCy rejects texts over
# 1,000,000 characters by default.
MAX_CHUNK_CHARS = 100_000

# spaCy NER labels (OntoNotes and WikiNER schemes) and the Presidio entity of each.
SPACY_LABEL_TO_ENTITY = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "ORG": "ORGANIZATION",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
}

# A letter directly before a digit. Replacing it with a space (same length, so offsets
# stay valid) lets libphonenumber accept a number glued to a preceding word.
_LETTER_BEFORE_DIGIT = re.compile(r"[^\W\d_](?=\d)")

# Boundaries added around Presidio's URL pattern, see the module docstring.
_URL_START = r"(?<![\w@.\-])"
_URL_END = r"(?!\w)"


class PiiFinding(NamedTuple):
    """One merged finding. ``text[start:end]`` is the matched text, and ``score`` is
    the highest Presidio score among the merged results."""

    entity: str
    start: int
    end: int
    score: float


class PresidioPiiScorer(Scorer):
    """Count Presidio PII findings per character of a prose segment.

    Options:
        entities: Presidio entity names to look for. Defaults to `PATTERN_ENTITIES`,
            plus `NER_ENTITIES` when ``spacy_model`` is set.
        min_scores: minimum Presidio score per entity for a result to count, merged
            over `DEFAULT_MIN_SCORES`. Entities not listed use `DEFAULT_MIN_SCORE`.
        spacy_model: name of an installed spaCy model, or the path of a saved spaCy
            pipeline, whose NER finds PERSON, ORGANIZATION and LOCATION. None (the
            default) runs the pattern recognizers only.
        language: language code passed to Presidio ("en").
    """

    name = "pii_presidio_v1"
    alias = "pii"
    kinds = frozenset({PROSE})
    description = "PII findings (e-mail, phone, card, IP, URL, IBAN, SSN) per character"
    requires = ("presidio_analyzer",)
    install_hint = "pip install presidio-analyzer"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._spacy_model = _validate_spacy_model(options.get("spacy_model"))
        self._language = _validate_language(options.get("language", "en"))
        self._entities = _validate_entities(options.get("entities"), self._spacy_model)
        self._min_scores = _validate_min_scores(options.get("min_scores"), self._entities)
        self._analyzer: Any = None
        self._counts: Counter[str] = Counter()

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return ("entities", "min_scores", "spacy_model", "language")

    def setup(self) -> None:
        self.check_dependencies()
        self._analyzer = _build_analyzer(self._entities, self._language, self._spacy_model)
        self._counts = Counter()

    def teardown(self) -> None:
        self._analyzer = None

    def __getstate__(self) -> dict[str, Any]:
        # The engine contains compiled regexes and possibly a spaCy model. A copy made
        # after setup must call setup again.
        state = self.__dict__.copy()
        state["_analyzer"] = None
        return state

    def find(self, text: str) -> list[PiiFinding]:
        """Return the merged findings in ``text``, ordered by start offset.

        Texts longer than `MAX_CHUNK_CHARS` are analyzed in chunks cut after a space
        or newline.
        """
        chunk_starts = _chunk_starts(text, MAX_CHUNK_CHARS)
        if len(chunk_starts) > 1:
            self._counts["texts_split"] += 1

        results = []
        chunk_ends = chunk_starts[1:] + [len(text)]
        for start, end in zip(chunk_starts, chunk_ends, strict=True):
            for entity, result_start, result_end, score in self._analyze(text[start:end]):
                results.append(PiiFinding(entity, start + result_start, start + result_end, score))

        findings = _merge_overlapping(results)
        for finding in findings:
            self._counts[f"findings_{finding.entity.lower()}"] += 1
        return findings

    def score_segments(self, segments: Sequence[str]) -> list[Score]:
        """Analyze each segment on its own and return its findings per character."""
        self._counts["segments_scored"] += _non_blank(segments)
        return [_density(len(self.find(segment)), len(segment)) for segment in segments]

    def score_documents(self, documents: Sequence[Sequence[str]]) -> list[list[Score]]:
        """Analyze each document as a whole and count findings for the segments.

        The segments of a document are joined, in chunks of at most `MAX_CHUNK_CHARS`
        cut at segment boundaries, and analyzed once. A finding counts for the segment
        where it starts. This saves one Presidio call per segment, and the scores
        equal those of `score_segments` for the segments in the tests. They can
        differ at a segment boundary:

        - A finding that crosses the boundary counts once here, for the segment where
          it starts. Per-segment analysis gets only the pieces of it.
        - Regex boundaries and libphonenumber's check of the neighboring characters
          see the other segment's text here. For segments that end after whitespace,
          as sentence splitters cut them, a whitespace neighbor and the edge of the
          text pass these checks alike.
        - With ``spacy_model`` set, NER and context words see the whole document.
        """
        scores = [self._score_document(segments) for segments in documents]
        self._counts["segments_scored"] += sum(_non_blank(segments) for segments in documents)
        return scores

    def stats(self) -> dict[str, int]:
        """Counts since setup: non-blank segments scored, findings per entity, texts split.

        Blank segments get no score in the output, so they are not counted, and
        ``segments_scored`` matches the run's ``scored_<scorer>`` count.
        """
        return dict(self._counts)

    def _score_document(self, segments: Sequence[str]) -> list[Score]:
        counts = [0] * len(segments)
        for first, stop in _segment_chunks(segments, MAX_CHUNK_CHARS):
            chunk = segments[first:stop]
            # Offset of each segment within the joined chunk.
            segment_starts = list(accumulate((len(s) for s in chunk[:-1]), initial=0))
            for finding in self.find("".join(chunk)):
                counts[first + bisect_right(segment_starts, finding.start) - 1] += 1

        return [
            _density(count, len(segment)) for count, segment in zip(counts, segments, strict=True)
        ]

    def _analyze(self, text: str) -> list[tuple[str, int, int, float]]:
        """Return the Presidio results in ``text`` that reach their minimum score."""
        if self._analyzer is None:
            raise RuntimeError(f"scorer {self.name} is not set up. Call setup() before scoring.")
        if not text:
            return []

        # score_threshold=0.0 turns off Presidio's own thresholds, because min_scores
        # apply below.
        results = self._analyzer.analyze(
            text=text, language=self._language, entities=list(self._entities), score_threshold=0.0
        )
        return [
            (result.entity_type, result.start, result.end, result.score)
            for result in results
            if result.end > result.start and result.score >= self._min_scores[result.entity_type]
        ]


def _non_blank(segments: Sequence[str]) -> int:
    return sum(1 for segment in segments if segment.strip())


def _density(count: int, length: int) -> float:
    return count / length if length else 0.0


def _merge_overlapping(results: list[PiiFinding]) -> list[PiiFinding]:
    """Merge results whose spans overlap into one finding each.

    A merged finding spans all its results and takes the entity and score of the
    highest-scoring one, the longest on a tie. Spans that only touch stay apart.
    """
    merged: list[PiiFinding] = []
    group: list[PiiFinding] = []
    group_end = 0
    for result in sorted(results, key=lambda r: (r.start, r.end)):
        if group and result.start >= group_end:
            merged.append(_merge_group(group))
            group = []
        group_end = max(group_end, result.end) if group else result.end
        group.append(result)

    if group:
        merged.append(_merge_group(group))
    return merged


def _merge_group(group: list[PiiFinding]) -> PiiFinding:
    best = max(group, key=lambda r: (r.score, r.end - r.start, r.entity))
    start = min(r.start for r in group)
    end = max(r.end for r in group)
    return PiiFinding(best.entity, start, end, best.score)


def _chunk_starts(text: str, max_chars: int) -> list[int]:
    """Return the start offsets of chunks of at most ``max_chars`` characters.

    A cut goes after the last space or newline in the second half of a chunk, so that
    findings, which rarely contain spaces, stay whole. A chunk with neither there is
    cut at ``max_chars``.
    """
    # NOTE: a finding that contains whitespace (a phone number written "212 555 0142")
    # and lies across a cut is lost or found in pieces.
    starts = [0]
    while len(text) - starts[-1] > max_chars:
        start = starts[-1]
        cut = max(
            text.rfind(" ", start + max_chars // 2, start + max_chars),
            text.rfind("\n", start + max_chars // 2, start + max_chars),
        )
        starts.append(cut + 1 if cut >= 0 else start + max_chars)
    return starts


def _segment_chunks(segments: Sequence[str], max_chars: int) -> list[tuple[int, int]]:
    """Group consecutive segments into ``(first, stop)`` index ranges.

    A range spans at most ``max_chars`` characters, except that a longer segment forms
    a range of its own.
    """
    ranges = []
    first, length = 0, 0
    for index, segment in enumerate(segments):
        if index > first and length + len(segment) > max_chars:
            ranges.append((first, index))
            first, length = index, 0
        length += len(segment)

    if first < len(segments):
        ranges.append((first, len(segments)))
    return ranges


def _validate_spacy_model(spacy_model: Any) -> str | None:
    if spacy_model is None:
        return None
    if not isinstance(spacy_model, str) or not spacy_model:
        raise ScorerConfigError(
            f"scorer 'pii': spacy_model must be a spaCy model name or path, got {spacy_model!r}"
        )
    _require_spacy_model(spacy_model)
    return spacy_model


def _require_spacy_model(spacy_model: str) -> None:
    """Raise MissingDependencyError unless ``spacy_model`` is installed or a path.

    Presidio's SpacyNlpEngine downloads a missing model, so this check must run first.
    """
    if Path(spacy_model).exists():
        return
    try:
        importlib.metadata.distribution(spacy_model)
    except importlib.metadata.PackageNotFoundError:
        raise MissingDependencyError(
            f"scorer 'pii': spaCy model {spacy_model!r} (option spacy_model) is not "
            f"installed. Install it with: python -m spacy download {spacy_model}, "
            "or set spacy_model to the path of a saved spaCy pipeline."
        ) from None


def _validate_language(language: Any) -> str:
    if not isinstance(language, str) or not language.strip():
        raise ScorerConfigError(
            f"scorer 'pii': language must be a language code such as 'en', got {language!r}"
        )
    return language


def _validate_entities(entities: Any, spacy_model: str | None) -> tuple[str, ...]:
    available = PATTERN_ENTITIES + (NER_ENTITIES if spacy_model else ())
    if entities is None:
        return available
    if isinstance(entities, str) or not isinstance(entities, Sequence) or not entities:
        raise ScorerConfigError(
            f"scorer 'pii': entities must be a non-empty list of names, got {entities!r}"
        )

    for entity in entities:
        if entity in NER_ENTITIES and not spacy_model:
            raise ScorerConfigError(
                f"scorer 'pii': entity {entity!r} needs a spaCy NER model. "
                "Set the spacy_model option."
            )
        if entity not in available:
            raise ScorerConfigError(
                f"scorer 'pii': unknown entity {entity!r}. Valid entities: "
                f"{', '.join(PATTERN_ENTITIES + NER_ENTITIES)}"
            )
    return tuple(dict.fromkeys(entities))


def _validate_min_scores(min_scores: Any, entities: tuple[str, ...]) -> dict[str, float]:
    if min_scores is None:
        min_scores = {}
    if not isinstance(min_scores, Mapping):
        raise ScorerConfigError(
            f"scorer 'pii': min_scores must map entity names to scores, got {min_scores!r}"
        )

    for entity, score in min_scores.items():
        if entity not in entities:
            raise ScorerConfigError(
                f"scorer 'pii': min_scores names {entity!r}, which is not among the "
                f"entities scored: {', '.join(entities)}"
            )
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 1:
            raise ScorerConfigError(
                f"scorer 'pii': min_scores[{entity!r}] must be a number from 0 to 1, got {score!r}"
            )

    merged = {entity: DEFAULT_MIN_SCORES.get(entity, DEFAULT_MIN_SCORE) for entity in entities}
    merged.update({entity: float(score) for entity, score in min_scores.items()})
    return merged


def _build_analyzer(entities: tuple[str, ...], language: str, spacy_model: str | None) -> Any:
    """Build a Presidio AnalyzerEngine with a recognizer for each entity."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    recognizers = [_pattern_recognizer(e, language) for e in entities if e in PATTERN_ENTITIES]
    if spacy_model is None:
        nlp_engine = NoOpNlpEngine(models=[{"lang_code": language, "model_name": "none"}])
    else:
        nlp_engine = _spacy_nlp_engine(spacy_model, language)
        ner_entities = [e for e in entities if e in NER_ENTITIES]
        if ner_entities:
            recognizers.append(_spacy_recognizer(ner_entities, language))

    registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
    return AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[language])


def _pattern_recognizer(entity: str, language: str) -> Any:
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        IpRecognizer,
        UsSsnRecognizer,
    )

    if entity == "EMAIL_ADDRESS":
        return _offline_email_recognizer(language)
    if entity == "PHONE_NUMBER":
        return _glued_phone_recognizer(language)
    if entity == "URL":
        return _bounded_url_recognizer(language)
    recognizer_classes = {
        "CREDIT_CARD": CreditCardRecognizer,
        "IP_ADDRESS": IpRecognizer,
        "IBAN_CODE": IbanRecognizer,
        "US_SSN": UsSsnRecognizer,
    }
    return recognizer_classes[entity](supported_language=language)


def _offline_email_recognizer(language: str) -> Any:
    """Return Presidio's e-mail recognizer with a domain check that never downloads.

    Presidio's check calls ``tldextract.extract``, whose shared extractor downloads
    the public-suffix list on first use. This extractor uses the snapshot bundled
    with tldextract and no cache directory.
    """
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extractor = tldextract.TLDExtract(
        cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True
    )

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return extractor(pattern_text).fqdn != ""

    return OfflineEmailRecognizer(supported_language=language)


def _glued_phone_recognizer(language: str) -> Any:
    """Return Presidio's phone recognizer, also finding numbers glued to a preceding letter."""
    from presidio_analyzer.predefined_recognizers import PhoneRecognizer

    class GluedPhoneRecognizer(PhoneRecognizer):
        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> Any:
            return super().analyze(_LETTER_BEFORE_DIGIT.sub(" ", text), entities, nlp_artifacts)

    return GluedPhoneRecognizer(supported_language=language)


def _bounded_url_recognizer(language: str) -> Any:
    """Return Presidio's URL recognizer with word boundaries around each match.

    Presidio's quoted-URL patterns are left out, because the bounded patterns match a
    URL after a quote too.
    """
    from presidio_analyzer import Pattern
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    base = UrlRecognizer.BASE_URL_REGEX
    patterns = [
        Pattern("Standard Url", f"(?i){_URL_START}(?:https?://){base}{_URL_END}", 0.6),
        Pattern("Non schema URL", f"(?i){_URL_START}{base}{_URL_END}", 0.5),
    ]
    return UrlRecognizer(patterns=patterns, supported_language=language)


def _spacy_nlp_engine(spacy_model: str, language: str) -> Any:
    """Load ``spacy_model`` into a SpacyNlpEngine that keeps the labels of SPACY_LABEL_TO_ENTITY."""
    from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine

    _require_spacy_model(spacy_model)
    engine = SpacyNlpEngine(
        models=[{"lang_code": language, "model_name": spacy_model}],
        ner_model_configuration=NerModelConfiguration(
            model_to_presidio_entity_mapping=dict(SPACY_LABEL_TO_ENTITY)
        ),
    )
    engine.load()

    # Presidio logs a warning for every entity whose label it cannot map, so the
    # model's other labels (DATE, MONEY, ...) are ignored outright.
    pipeline = engine.nlp[language]
    labels = {label for pipe in pipeline.pipe_labels.values() for label in pipe}
    engine.ner_model_configuration.labels_to_ignore = sorted(labels - set(SPACY_LABEL_TO_ENTITY))
    return engine


def _spacy_recognizer(entities: list[str], language: str) -> Any:
    from presidio_analyzer.predefined_recognizers import SpacyRecognizer

    return SpacyRecognizer(supported_language=language, supported_entities=entities)
