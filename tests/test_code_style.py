"""Tests of the pycodestyle scorer: exact scores, syntax errors, crashes, context.

The expected values hold on Python 3.11, 3.12 and 3.13 alike (pycodestyle 2.15): the
cases where pycodestyle's own E901 differs between versions are among them.
"""

from __future__ import annotations

import pytest

from scorers.code_style import PycodestyleScorer, syntax_error_line


@pytest.fixture
def scorer() -> PycodestyleScorer:
    scorer = PycodestyleScorer()
    scorer.setup()
    return scorer


def lines_of(source: str) -> list[str]:
    return source.splitlines(keepends=True)


def codes(violations: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return sorted((line, message.split()[0]) for line, message in violations)


def test_violations_per_character(scorer):
    lines = lines_of("import os,sys\nx=1 \n")

    assert codes(scorer.violations(lines)) == [(1, "E231"), (1, "E401"), (2, "E225"), (2, "W291")]
    assert scorer.score_documents([lines]) == [[2 / 14, 2 / 5]]


def test_whole_file_checked_once(scorer):
    # E302 needs the line before the definition, so it is found only in the whole file.
    lines = lines_of("import os\ndef f():\n    return 1\n")

    assert codes(scorer.violations(lines)) == [(2, "E302")]
    assert scorer.score_documents([lines]) == [[0.0, 1 / 9, 0.0]]


def test_segments_checked_alone(scorer):
    assert scorer.score_segments(["x=1\n", "y = 2\n"]) == [1 / 4, 0.0]


def test_missing_final_newline(scorer):
    assert scorer.score_documents([["x = 1"]]) == [[1 / 5]]


def test_clean_file_scores_zero(scorer):
    lines = lines_of("def f():\n    return 1\n")

    assert scorer.score_documents([lines]) == [[0.0, 0.0]]
    assert scorer.stats() == {"syntax_errors": 0, "unscorable_files": 0}


def test_extra_parenthesis_is_syntax_error(scorer):
    lines = lines_of("value = compute(1))\n")

    assert scorer.violations(lines) == [(1, "E999 SyntaxError: the file does not compile")]
    assert scorer.score_documents([lines]) == [[1 / 20]]
    assert scorer.stats() == {"syntax_errors": 1, "unscorable_files": 0}


def test_unclosed_bracket_same_on_all_versions(scorer):
    # From Python 3.12 on, pycodestyle adds "E901 TokenError" on line 3, and before 3.12
    # on line 4, past the end. Dropping E901 gives the same scores everywhere.
    lines = lines_of("x = (1,\ny = 2\nz = 3\n")

    assert codes(scorer.violations(lines)) == [
        (1, "E999"),
        (2, "E128"),
        (2, "E251"),
        (2, "E251"),
        (3, "E128"),
        (3, "E251"),
        (3, "E251"),
    ]
    assert scorer.score_documents([lines]) == [[1 / 8, 3 / 6, 3 / 6]]


def test_unterminated_string_counts_once(scorer):
    # pycodestyle reports "E901 TokenError: EOF in multi-line string" here as well.
    lines = lines_of('x = """abc\n')

    assert codes(scorer.violations(lines)) == [(1, "E999")]
    assert scorer.score_documents([lines]) == [[1 / 11]]


def test_null_character_on_its_line(scorer):
    # compile() raises ValueError before Python 3.12, and from 3.12 on a SyntaxError
    # without a line number.
    lines = lines_of("x = 1\n\x00\n")

    assert scorer.score_documents([lines]) == [[0.0, 1 / 2]]
    assert scorer.stats()["syntax_errors"] == 1


def test_syntax_error_moved_off_blank_line():
    # Python reports the missing function body on line 2, which is blank.
    lines = lines_of("def f():\n\n")

    assert syntax_error_line(lines) == 1


def test_syntax_error_line_of_valid_file():
    assert syntax_error_line(lines_of("x = 1\n")) is None
    assert syntax_error_line(lines_of("print 'hi'\n")) == 1


def test_byte_order_mark_compiles(scorer):
    lines = lines_of("\ufeffx = 1\n")

    assert scorer.score_documents([lines]) == [[0.0]]
    assert scorer.stats()["syntax_errors"] == 0


def test_lone_surrogate_file_unscorable(scorer):
    # pycodestyle raises UnicodeEncodeError on this file from Python 3.12 on.
    documents = [lines_of('x = "\udc80"\ny = 2\n'), lines_of("x=1\n")]

    assert scorer.score_documents(documents) == [[None, None], [1 / 4]]
    assert scorer.stats() == {"syntax_errors": 0, "unscorable_files": 1}


def test_checker_crash_unscorable(scorer, monkeypatch):
    def crash(self, *args, **kwargs):
        raise RuntimeError("checker bug")

    monkeypatch.setattr("pycodestyle.Checker.check_all", crash)

    assert scorer.score_documents([lines_of("x = 1\ny = 2\n")]) == [[None, None]]
    assert scorer.stats()["unscorable_files"] == 1


def test_stats_reset_by_setup(scorer):
    scorer.score_documents([lines_of("value = compute(1))\n"), lines_of('"\udc80"\n')])
    assert scorer.stats() == {"syntax_errors": 1, "unscorable_files": 1}

    scorer.setup()

    assert scorer.stats() == {"syntax_errors": 0, "unscorable_files": 0}


def test_empty_file_has_no_scores(scorer):
    assert scorer.score_documents([[]]) == [[]]
