"""Cut documents into segments without losing a character.

Prose is cut into sentences by spaCy's rule-based ``sentencizer`` on a blank
pipeline, as in the reference work (Korbak et al., 2023). Code is cut into
physical lines. Each segment keeps its trailing whitespace or line ending, so
``"".join(segments) == text`` holds for every document, and segments carry
their start and end offsets in code points.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from schemas.config import PROGRAMMING_LANGUAGES, SegmentOptions
from scorers.base import CODE, PROSE

# spaCy rejects texts over nlp.max_length (1,000,000 characters) and its memory
# grows with the text, so long documents go to spaCy in pieces of at most this
# many characters. Pieces end at a paragraph break when one exists, else at a
# line break, else at a space, else anywhere; a piece boundary is always a
# segment boundary.
MAX_CHUNK_CHARS = 100_000

# spaCy adds every new token text to the pipeline's vocabulary and never
# removes it, so a worker's memory would grow with every distinct token it
# has seen (about 450 bytes each with spaCy 3.8, measured on one million
# distinct tokens). The pipeline is rebuilt, in about 25 ms, once its
# vocabulary has more than this many entries.
MAX_VOCABULARY_ENTRIES = 100_000

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+")

Span = tuple[int, int]


def document_kind(metadata: dict[str, Any], options: SegmentOptions) -> str:
    """Return ``code`` when forced, or when the language field names a programming language."""
    if options.kind != "auto":
        return options.kind
    language = metadata.get(options.language_field)
    if isinstance(language, str) and language.strip().lower() in PROGRAMMING_LANGUAGES:
        return CODE
    return PROSE


def line_spans(text: str) -> list[Span]:
    """Physical lines, each with its line ending (``\\r\\n``, ``\\r`` or ``\\n``)."""
    return [match.span() for match in _LINE.finditer(text)]


class Segmenter:
    """Cuts documents into segments; the spaCy pipeline is built on first use."""

    def __init__(self, options: SegmentOptions | None = None) -> None:
        self.options = options or SegmentOptions()
        self._nlp = None

    def __getstate__(self) -> dict[str, Any]:
        return {"options": self.options, "_nlp": None}

    def spans(self, text: str, kind: str) -> list[Span]:
        """Return (start, end) offsets of the segments of `text`, covering it exactly."""
        spans = line_spans(text) if kind == CODE else self._sentence_spans(text)
        _check_cover(text, spans)
        return spans

    def _sentence_spans(self, text: str) -> list[Span]:
        spans: list[Span] = []
        for chunk_start, chunk_end in _chunks(text, MAX_CHUNK_CHARS):
            starts = self._sentence_starts(text[chunk_start:chunk_end])
            bounds = [chunk_start + s for s in starts] + [chunk_end]
            spans.extend(zip(bounds, bounds[1:], strict=False))
        return spans

    def _sentence_starts(self, chunk: str) -> list[int]:
        """Offsets where sentences start; whitespace before a sentence trails the one before."""
        if self._nlp is None:
            self._nlp = _blank_sentencizer(self.options.spacy_language)
        starts = [0]
        for sentence in self._nlp(chunk).sents:
            start = sentence.start_char
            while start < len(chunk) and chunk[start].isspace():
                start += 1
            if starts[-1] < start < len(chunk):
                starts.append(start)
        if len(self._nlp.vocab) > MAX_VOCABULARY_ENTRIES:
            self._nlp = None
        return starts


def _blank_sentencizer(language: str):
    import spacy

    nlp = spacy.blank(language)
    nlp.add_pipe("sentencizer")
    nlp.max_length = MAX_CHUNK_CHARS + 1
    return nlp


def _chunks(text: str, limit: int) -> Iterator[Span]:
    start = 0
    while len(text) - start > limit:
        end = _break_before(text, start, start + limit)
        yield start, end
        start = end
    if start < len(text):
        yield start, len(text)


def _break_before(text: str, start: int, limit: int) -> int:
    """The latest good break in text[start:limit]: after a blank line, a newline or a space."""
    for separator in ("\n\n", "\n", " "):
        position = text.rfind(separator, start + 1, limit)
        if position != -1:
            return position + len(separator)
    return limit


def _check_cover(text: str, spans: list[Span]) -> None:
    position = 0
    for start, end in spans:
        if start != position or end <= start:
            raise AssertionError(f"segments do not cover the text at offset {position}")
        position = end
    if position != len(text):
        raise AssertionError(f"segments end at {position}, text at {len(text)}")
