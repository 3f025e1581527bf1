"""Measure the code style scorer against one pycodestyle checker per line and per file.

Three ways to check the code lines of data/sample.jsonl, timed on the same lines:

- ours: ``PycodestyleScorer.score_documents``, as the pipeline calls it: one pycodestyle
  checker per file, plus one ``compile`` per file for syntax errors;
- one checker per line: ``pycodestyle.Checker`` on each line as a file of its own, which
  loses the checks that need the lines around (blank lines, indentation, continuation);
- one checker per file: plain ``pycodestyle.Checker(...).check_all()`` per file, the
  library's own cost without the scorer.

    PYTHONPATH=. python benchmarks/code_style.py
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import pycodestyle

from benchmarks.harness import (
    best_of,
    document_segments,
    machine_description,
    markdown_table,
    read_documents,
)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each way")
    args = parser.parse_args(argv)

    from scorers.code_style import PycodestyleScorer

    files = [segments for _, segments in document_segments(read_documents(), "code")]
    lines = [line for segments in files for line in segments]
    scorer = PycodestyleScorer()
    scorer.setup()
    options = pycodestyle.StyleGuide(quiet=True).options

    ways = {
        "ours: one checker per file, plus compile": lambda: scorer.score_documents(files),
        "one checker per line": lambda: [check(options, [line]) for line in lines],
        "one checker per file": lambda: [check(options, segments) for segments in files],
    }
    print(f"Machine: {machine_description()}")
    print(f"Code: {len(files)} files, {len(lines)} lines\n")
    rows = []
    for name, function in ways.items():
        timing, runs = best_of(function, args.repeat)
        rows.append(
            [
                name,
                f"{timing.seconds:.2f}",
                f"{len(lines) / timing.seconds:,.0f}",
                ", ".join(f"{seconds:.2f}" for seconds in runs),
            ]
        )
    print(markdown_table(["way", "seconds", "lines/s", "all runs, s"], rows))
    print(f"\nMachine at the end: {machine_description()}")


def check(options, lines: Sequence[str]) -> int:
    """Run one pycodestyle checker over ``lines`` and return its violation count."""
    report = pycodestyle.BaseReport(options)
    checker = pycodestyle.Checker(lines=list(lines), options=options, report=report)
    return checker.check_all()


if __name__ == "__main__":
    main()
