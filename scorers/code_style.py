"""Code style: pycodestyle violations per character of a line.

A line's score is the number of violations pycodestyle reports on that line
with its default options, divided by the line's length in characters,
newline included. The whole file is checked at once, because many checks
(blank lines, indentation, continuation lines) depend on the lines around.

Syntax errors come from ``compile()``, not from pycodestyle: a file that does not
compile gets one E999 violation on the line of its first syntax error. pycodestyle's
own E901 reports are dropped, because they depend on the Python version. Before
3.12 its tokenizer reports most syntax errors at the end of the file, and from 3.12
on at the offending token, or not at all. A file that cannot be encoded as UTF-8
(a lone surrogate from a JSON ``\\udc80`` escape) is not checked: pycodestyle
raises on it from Python 3.12 on, so its lines get no score on every version.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence

import pycodestyle

from scorers.base import CODE, Score, Scorer

# Reported on the line of a SyntaxError, as flake8 does. pycodestyle's E901
# depends on the Python version, so the compile check is ours.
SYNTAX_ERROR_CODE = "E999"
TOKENIZER_ERROR_CODE = "E901"

logger = logging.getLogger(__name__)


class PycodestyleScorer(Scorer):
    name = "code_style_pycodestyle_v1"
    alias = "code_style"
    kinds = frozenset({CODE})
    description = "pycodestyle violations per character of each code line"
    requires = ("pycodestyle",)
    install_hint = "pip install pycodestyle"

    def setup(self) -> None:
        self._style = pycodestyle.StyleGuide(quiet=True)
        self._counts: Counter[str] = Counter(syntax_errors=0, unscorable_files=0)

    def violations(self, lines: Sequence[str]) -> list[tuple[int, str]]:
        """Return (1-based line number, message) for every violation in a file.

        Raises:
            UnicodeEncodeError: the file contains a lone surrogate.
        """
        # Raise on a lone surrogate before pycodestyle can, so that every Python version
        # treats such a file alike.
        "".join(lines).encode("utf-8")
        found: list[tuple[int, str]] = []
        report = _CollectingReport(self._style.options, found)
        checker = pycodestyle.Checker(lines=list(lines), options=self._style.options, report=report)
        checker.check_all()
        found = [item for item in found if not item[1].startswith(TOKENIZER_ERROR_CODE)]
        syntax_error = syntax_error_line(lines)
        if syntax_error is not None:
            found.append(
                (syntax_error, f"{SYNTAX_ERROR_CODE} SyntaxError: the file does not compile")
            )
        return found

    def score_documents(self, documents: Sequence[Sequence[str]]) -> list[list[Score]]:
        return [self._score_file(lines) for lines in documents]

    def score_segments(self, segments: Sequence[str]) -> list[Score]:
        """Score each segment as a file of its own (no surrounding context)."""
        return [self._score_file([segment])[0] for segment in segments]

    def _score_file(self, lines: Sequence[str]) -> list[Score]:
        if not lines:
            return []
        try:
            found = self.violations(lines)
        except Exception as error:  # noqa: BLE001 - a checker crash marks one file unscorable
            logger.warning("code style check failed on a file of %d lines: %r", len(lines), error)
            self._counts["unscorable_files"] += 1
            return [None] * len(lines)

        per_line = Counter(line for line, _ in found)
        if any(message.startswith(SYNTAX_ERROR_CODE) for _, message in found):
            self._counts["syntax_errors"] += 1
        return [per_line.get(number, 0) / len(line) for number, line in enumerate(lines, start=1)]

    def stats(self) -> dict[str, int]:
        """Counts since setup: files that do not compile, and files that could not be checked."""
        return dict(self._counts)


def syntax_error_line(lines: Sequence[str]) -> int | None:
    """Return the 1-based line of the file's first syntax error, or None if it compiles.

    A leading byte order mark is ignored, as pycodestyle and Python's own reading of a
    source file ignore it. A null character is a syntax error on its own line. An error
    that Python reports on a blank line, or past the last line (an unclosed bracket), is
    moved to the closest non-blank line before it, because blank lines get no score.
    """
    source = "".join(lines).removeprefix("\ufeff")
    null_lines = [number for number, line in enumerate(lines, start=1) if "\x00" in line]
    if null_lines:
        return null_lines[0]
    try:
        compile(source, "<segment>", "exec", dont_inherit=True)
    except SyntaxError as error:
        return _non_blank_line_at_or_before(lines, error.lineno or 1)
    return None


def _non_blank_line_at_or_before(lines: Sequence[str], number: int) -> int:
    number = min(max(number, 1), len(lines))
    candidates = [n for n in range(number, 0, -1) if lines[n - 1].strip()]
    candidates += [n for n in range(number + 1, len(lines) + 1) if lines[n - 1].strip()]
    return candidates[0] if candidates else number


class _CollectingReport(pycodestyle.BaseReport):
    """A pycodestyle report that records (line, message) instead of printing."""

    def __init__(self, options, found: list[tuple[int, str]]) -> None:
        super().__init__(options)
        self._found = found

    def error(self, line_number, offset, text, check):
        code = super().error(line_number, offset, text, check)
        if code:
            self._found.append((line_number, text))
        return code
