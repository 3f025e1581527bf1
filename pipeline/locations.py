"""Reject an output directory that overlaps the input, before any work starts.

A run writes JSON and JSON Lines files into its output directory. If that
directory were an input directory, inside one, or matched by the input glob,
a rerun would read the earlier output as input. If an input file were inside
the output directory, ``--overwrite`` could delete it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from apache_beam.io.filesystem import FileSystem

from pipeline.read import is_directory

# Paths that a run writes, relative to the output directory; the names stand
# for any shard name.
OUTPUT_PATH_EXAMPLES = (
    "manifest.json",
    "thresholds.json",
    "rejected/input-00000.jsonl",
    "shards/input-00000.parquet",
    "scored/input-00000.parquet",
    "_progress/run.json",
)


class OutputLocationError(ValueError):
    """The output directory overlaps the input."""


def check_output_location(inputs: str, input_files: Sequence[str], output_dir: str) -> None:
    """Raise OutputLocationError when OUTPUT_DIR overlaps the input.

    Args:
        inputs: the input file, glob or directory as given.
        input_files: the files that `inputs` matched.
        output_dir: the output directory as given.
    """
    output = _absolute(output_dir)
    files = [(_absolute(input_file), input_file) for input_file in input_files]
    for path, input_file in files:
        if path == output:
            raise OutputLocationError(
                f"OUTPUT_DIR {output_dir} is the input file {input_file}; "
                "choose a new directory for the output"
            )
    if is_directory(inputs):
        _check_input_directory(_absolute(inputs), output, inputs, output_dir)
    elif re.search(r"[*?\[]", inputs):
        _check_input_pattern(_absolute(inputs), output, inputs, output_dir)
    for path, input_file in files:
        if _is_inside(path, output):
            raise OutputLocationError(
                f"the input file {input_file} is inside OUTPUT_DIR {output_dir}, where "
                "--overwrite deletes earlier output; choose an output directory that contains "
                "no input"
            )
    if "://" not in output:
        _check_not_a_file(output, output_dir)


def _check_not_a_file(output: str, output_dir: str) -> None:
    if os.path.isfile(output):
        raise OutputLocationError(
            f"OUTPUT_DIR {output_dir} is an existing file; pass a directory for the output"
        )
    parent = os.path.dirname(output)
    while parent != os.path.dirname(parent) and not os.path.isdir(parent):
        if os.path.lexists(parent):
            raise OutputLocationError(
                f"OUTPUT_DIR {output_dir} is below {parent}, which is not a directory; "
                "pass a directory for the output"
            )
        parent = os.path.dirname(parent)


def _check_input_directory(directory: str, output: str, inputs: str, output_dir: str) -> None:
    if output == directory or _is_inside(output, directory):
        where = "is" if output == directory else "is inside"
        raise OutputLocationError(
            f"OUTPUT_DIR {output_dir} {where} the input directory {inputs}, so a rerun would "
            f"read the output as input; choose an output directory outside {inputs}"
        )


def _check_input_pattern(pattern: str, output: str, inputs: str, output_dir: str) -> None:
    regex = re.compile(FileSystem.translate_pattern(pattern))
    for example in OUTPUT_PATH_EXAMPLES:
        if regex.match(_join(output, example)):
            raise OutputLocationError(
                f"the input pattern {inputs} matches files that the run writes into OUTPUT_DIR "
                f"{output_dir} (such as {example}); choose an output directory that the "
                "pattern does not match"
            )


def _absolute(path: str) -> str:
    """Return the path without a trailing separator; a local path absolute, symlinks resolved."""
    if "://" in path:
        return path.rstrip("/")
    return os.path.realpath(path)


def _separator(path: str) -> str:
    return "/" if "://" in path else os.sep


def _is_inside(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip(_separator(directory)) + _separator(directory))


def _join(directory: str, relative: str) -> str:
    return directory + _separator(directory) + relative.replace("/", _separator(directory))
