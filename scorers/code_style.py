"""Code style: pycodestyle violations per character of a line.

A line's score is the number of violations pycodestyle reports on that line
with its default options, divided by the line's length in characters,
newline included. The whole file is checked at once, because many checks
(blank lines, indentation, continuation lines) depend on the lines around.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pycodestyle

from scorers.base import CODE, Score, Scorer

# Reported on the line of a SyntaxError. pycodestyle reported E901 for such
# files before Python 3.12 but no longer does, so the compile check is ours.
SYNTAX_ERROR_CODE = "E999"


class PycodestyleScorer(Scorer):
    name = "code_style_pycodestyle_v1"
    alias = "code_style"
    kinds = frozenset({CODE})
    description = "pycodestyle violations per character of each code line"
    requires = ("pycodestyle",)
    install_hint = "pip install pycodestyle"

    def setup(self) -> None:
        self._style = pycodestyle.StyleGuide(quiet=True)
        self._counts: Counter[str] = Counter()

    def violations(self, lines: Sequence[str]) -> list[tuple[int, str]]:
        """Return (1-based line number, message) for every violation in a file."""
        found: list[tuple[int, str]] = []
        report = _CollectingReport(self._style.options, found)
        checker = pycodestyle.Checker(lines=list(lines), options=self._style.options, report=report)
        checker.check_all()
        syntax_error = _syntax_error_line("".join(lines))
        if syntax_error is not None:
            line = min(max(syntax_error, 1), max(len(lines), 1))
            found.append((line, f"{SYNTAX_ERROR_CODE} SyntaxError: the file does not compile"))
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
            per_line = Counter(line for line, _ in self.violations(lines))
        except Exception:  # noqa: BLE001 - a checker crash marks one file unscorable
            self._counts["unscorable_files"] += 1
            return [None] * len(lines)
        return [per_line.get(number, 0) / len(line) for number, line in enumerate(lines, start=1)]

    def stats(self) -> dict[str, int]:
        return dict(self._counts)


def _syntax_error_line(source: str) -> int | None:
    try:
        compile(source, "<segment>", "exec", dont_inherit=True)
    except SyntaxError as error:
        return error.lineno or 1
    except ValueError:  # null bytes in the source
        return 1
    return None


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
