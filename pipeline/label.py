"""Label segments against thresholds and write control tokens in front of them.

A segment is good when every scorer that applies to it scored at or below
that scorer's threshold; it is bad when any of them scored above it or could
not score it. Blank segments (empty or whitespace only) get no label and no
token.

Control-token strings that already occur in the input are escaped by putting
ESCAPE_CHARACTER (U+2060 WORD JOINER) after their first character, and every
U+2060 of the input is doubled. So the only control tokens in a written text
are the ones inserted here, and `restore_text` gives back the input exactly:
it removes the control tokens, then replaces every run of n U+2060 characters
by n // 2 of them.
"""

from __future__ import annotations

import bisect
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from schemas.config import LabelOptions
from scorers.base import Score

GOOD = "good"
BAD = "bad"

ESCAPE_CHARACTER = "\u2060"
_ESCAPE_RUN = re.compile(ESCAPE_CHARACTER + "+")


def segment_label(
    index: int,
    scores: Mapping[str, Sequence[Score] | None],
    thresholds: Mapping[str, float | None],
) -> str:
    """Label of segment `index` given each scorer's scores (None: scorer does not apply)."""
    for name, values in scores.items():
        if values is None:
            continue
        if scorer_label(values[index], thresholds.get(name)) == BAD:
            return BAD
    return GOOD


def scorer_label(score: Score, threshold: float | None) -> str:
    """Return GOOD for a score at or below the threshold, else BAD (also without a score)."""
    if score is None or threshold is None or score > threshold:
        return BAD
    return GOOD


def label_segments(
    segments: Sequence[str],
    scores: Mapping[str, Sequence[Score] | None],
    thresholds: Mapping[str, float | None],
) -> list[str | None]:
    """One label per segment; None for blank segments."""
    return [
        segment_label(i, scores, thresholds) if segment.strip() else None
        for i, segment in enumerate(segments)
    ]


def score_bucket(score: Score, edges: Sequence[float]) -> int:
    """Bucket of a score: the number of bucket edges strictly below it.

    Bucket 0 contains the scores at or below the first edge, as a good segment
    is at or below its threshold. An unscored segment goes to the last bucket.
    """
    if score is None:
        return len(edges)
    return bisect.bisect_left(edges, score)


def token_dropped(document_id: str, index: int, fraction: float, seed: int) -> bool:
    """Return True when segment `index` of a document is to be written without a token.

    The first 8 bytes of BLAKE2b("{seed}:{document_id}:{index}", digest_size=8),
    read as a big-endian integer and divided by 2**64, give a number in [0, 1)
    that is compared with `fraction`. Reruns and relabels drop the same segments.
    """
    if fraction <= 0:
        return False
    key = f"{seed}:{document_id}:{index}".encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < fraction


class TokenWriter:
    """Chooses the control tokens of each segment and writes the token-inserted text.

    Args:
        options: token strings, mode and drop fraction.
        scorer_aliases: scorer name -> alias, in column order; the alias fills
            ``{scorer}`` in per-scorer and bucket tokens.
        thresholds: scorer name -> threshold (None: no scores in the run).
        bucket_edges: scorer name -> ascending bucket edges, for ``bucket`` mode.

    Raises:
        ValueError: the control tokens are ambiguous (see `check_control_tokens`).
    """

    def __init__(
        self,
        options: LabelOptions,
        scorer_aliases: Mapping[str, str],
        thresholds: Mapping[str, float | None],
        bucket_edges: Mapping[str, Sequence[float]] | None = None,
    ) -> None:
        self.options = options
        self.scorer_aliases = dict(scorer_aliases)
        self.thresholds = dict(thresholds)
        self.bucket_edges = {name: list(edges) for name, edges in (bucket_edges or {}).items()}
        self.control_tokens = control_tokens(options, self.scorer_aliases)
        check_control_tokens(self.control_tokens)
        self.control_token_pattern = control_token_pattern(self.control_tokens)

    def write(
        self,
        document_id: str,
        segments: Sequence[str],
        scores: Mapping[str, Sequence[Score] | None],
        counts: Counter[str],
    ) -> tuple[list[str | None], str]:
        """Return the labels of a document's segments and its token-inserted text."""
        labels = label_segments(segments, scores, self.thresholds)
        tokens = [
            self._segment_tokens(document_id, i, label, scores, counts)
            for i, label in enumerate(labels)
        ]
        if self.options.document_token and any(label is not None for label in labels):
            tokens[0].insert(0, self.options.document_token)
        text = insert_tokens(segments, tokens, self.control_token_pattern, counts)
        return labels, text

    def _segment_tokens(
        self,
        document_id: str,
        index: int,
        label: str | None,
        scores: Mapping[str, Sequence[Score] | None],
        counts: Counter[str],
    ) -> list[str]:
        if label is None:
            return []
        options = self.options
        if token_dropped(document_id, index, options.drop_token_fraction, options.drop_token_seed):
            counts["segments_token_dropped"] += 1
            return []
        if options.token_mode == "label":
            return [options.good_token if label == GOOD else options.bad_token]
        tokens = []
        for name, values in scores.items():
            if values is None:
                continue
            if options.token_mode == "scorer":
                value: object = scorer_label(values[index], self.thresholds.get(name))
            else:
                value = score_bucket(values[index], self.bucket_edges.get(name, []))
            tokens.append(self._scorer_token(name, value))
        return tokens

    def _scorer_token(self, name: str, label: object) -> str:
        return self.options.scorer_token_format.format(
            scorer=self.scorer_aliases[name], label=label
        )


def control_tokens(options: LabelOptions, scorer_aliases: Mapping[str, str]) -> list[str]:
    """Return every control token a run with these options can write, in a fixed order.

    The document token comes first. Then come the tokens of the chosen mode:
    good and bad, or good and bad per scorer, or per scorer the buckets from 0 up.
    """
    tokens = [options.document_token] if options.document_token else []
    if options.token_mode == "label":
        return tokens + [options.good_token, options.bad_token]
    if options.token_mode == "scorer":
        labels: list[object] = [GOOD, BAD]
    else:
        labels = list(range(options.buckets))
    for alias in scorer_aliases.values():
        tokens += [options.scorer_token_format.format(scorer=alias, label=x) for x in labels]
    return tokens


def check_control_tokens(tokens: Sequence[str]) -> None:
    """Raise ValueError unless the tokens can be inserted and removed unambiguously.

    Every token has at least two characters and no whitespace or U+2060, the
    tokens are distinct, none contains another, and no token ends with the
    start of a token. Then no control-token string in a text crosses the
    boundary of an inserted token, and removing the tokens is exact.
    """
    for token in tokens:
        if len(token) < 2 or any(c.isspace() for c in token) or ESCAPE_CHARACTER in token:
            raise ValueError(
                f"control token {token!r} is invalid: it needs at least 2 characters, "
                "no whitespace and no U+2060"
            )
    if len(set(tokens)) != len(tokens):
        duplicate = next(t for t in tokens if tokens.count(t) > 1)
        raise ValueError(f"control token {duplicate!r} is given twice; choose distinct tokens")
    for first in tokens:
        for second in tokens:
            if first != second and first in second:
                raise ValueError(
                    f"control token {first!r} is part of {second!r}; choose tokens that "
                    "do not contain each other"
                )
            if _overlap(first, second):
                raise ValueError(
                    f"control token {first!r} ends with the start of {second!r}; choose "
                    "tokens such as <|name|> that cannot overlap"
                )


def _overlap(first: str, second: str) -> bool:
    return any(first[-k:] == second[:k] for k in range(1, min(len(first), len(second))))


def control_token_pattern(tokens: Iterable[str]) -> re.Pattern[str]:
    alternatives = sorted(tokens, key=len, reverse=True) + [ESCAPE_CHARACTER]
    return re.compile("|".join(re.escape(t) for t in alternatives))


def escape_positions(text: str, pattern: re.Pattern[str], counts: Counter[str]) -> list[int]:
    """Return the offsets in `text` before which ESCAPE_CHARACTER goes, ascending.

    An escape character of the input gets another in front of it, and a
    control-token string gets one after its first character.
    """
    positions = []
    for match in pattern.finditer(text):
        if match.group() == ESCAPE_CHARACTER:
            positions.append(match.start())
            counts["escape_characters_doubled"] += 1
        else:
            positions.append(match.start() + 1)
            counts["control_tokens_escaped"] += 1
    return positions


def insert_tokens(
    segments: Sequence[str],
    tokens: Sequence[Sequence[str]],
    pattern: re.Pattern[str],
    counts: Counter[str] | None = None,
) -> str:
    """Join the segments, each preceded by its tokens, escaping the input text.

    Escaping works on the whole document, not per segment, so a control-token
    string that spans a segment boundary without a token is escaped too.

    Args:
        segments: the document's segments; their concatenation is the document.
        tokens: the control tokens to write before each segment.
        pattern: `control_token_pattern` of every control token of the run.
        counts: receives the number of escapes.
    """
    text = "".join(segments)
    positions = escape_positions(text, pattern, counts if counts is not None else Counter())
    pieces = []
    start = 0
    cursor = 0
    for segment, segment_tokens in zip(segments, tokens, strict=True):
        end = start + len(segment)
        pieces.extend(segment_tokens)
        while cursor < len(positions) and positions[cursor] < end:
            pieces.append(text[start : positions[cursor]] + ESCAPE_CHARACTER)
            start = positions[cursor]
            cursor += 1
        pieces.append(text[start:end])
        start = end
    return "".join(pieces)


def remove_tokens(text: str, tokens: Iterable[str]) -> str:
    """Remove every control token from a written text; the input stays escaped."""
    tokens = sorted(tokens, key=len, reverse=True)
    if not tokens:
        return text
    return re.sub("|".join(re.escape(t) for t in tokens), "", text)


def unescape(text: str) -> str:
    """Undo the escaping: a run of n U+2060 characters becomes n // 2 of them."""
    return _ESCAPE_RUN.sub(lambda run: ESCAPE_CHARACTER * (len(run.group()) // 2), text)


def restore_text(text: str, tokens: Iterable[str]) -> str:
    """Return the input document of a written text, given the run's control tokens."""
    return unescape(remove_tokens(text, tokens))
