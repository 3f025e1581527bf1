"""The `annotate` Typer application and helpers shared by its commands.

Exit codes: 0 success, 1 the run failed, 2 invalid usage (bad option,
missing input), reported before any work starts, 130 interrupted by Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

try:  # Typer 0.2x vendors its own copy of click.
    from typer._click import exceptions as cli_errors
except ImportError:  # older Typer uses click itself
    from click import exceptions as cli_errors

from pipeline.logs import configure_logging


class AnnotateGroup(TyperGroup):
    """The command group, printing every usage error as one line with exit code 2.

    Click would print the usage, a hint and a framed message over several
    lines; one line naming the option reads better in logs of batch jobs.
    """

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            result = super().main(*args, standalone_mode=False, **kwargs)
        except cli_errors.NoArgsIsHelpError:
            # Let Typer print its formatted help, as it does without this class.
            return super().main(*args, standalone_mode=True, **kwargs)
        except cli_errors.UsageError as error:
            typer.echo(f"annotate: error: {error.format_message()}", err=True)
            sys.exit(2)
        except cli_errors.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("annotate: aborted", err=True)
            sys.exit(1)
        # Without standalone mode, click returns the code of typer.Exit instead of exiting.
        sys.exit(result if isinstance(result, int) else 0)


app = typer.Typer(
    cls=AnnotateGroup,
    help=(
        "Cut a corpus into sentences (code: lines), score every segment, choose a threshold "
        "per scorer from the global score distribution, and write Parquet shards with a "
        "control token in front of every segment.\n\n"
        "Exit codes: 0 success, 1 run failure, 2 usage error, 130 interrupted (Ctrl-C)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

logger = logging.getLogger(__name__)

LOCAL_RUNNERS = {"directrunner", "direct", "fnapirunner"}

# Options of `annotate` itself, which must come before the command.
GLOBAL_OPTION = re.compile(r"-q|--quiet|-v+|--verbose")


class UsageError(Exception):
    """An invalid option value; reported as a one-line message with exit code 2."""


def parse_assignments(values: list[str], option: str) -> dict[str, str]:
    """Parse repeated KEY=VALUE options into a dict."""
    result = {}
    for value in values:
        key, sep, item = value.partition("=")
        if not sep or not key.strip() or not item.strip():
            raise UsageError(f"{option} expects NAME=VALUE, got {value!r}")
        result[key.strip()] = item.strip()
    return result


def parse_percentiles(values: list[str]) -> dict[str, float]:
    result = {}
    for name, text in parse_assignments(values, "--percentile").items():
        try:
            percentile = float(text)
        except ValueError:
            raise UsageError(f"--percentile {name}={text}: {text!r} is not a number") from None
        result[name] = check_percentile(f"--percentile {name}={text}", percentile)
    return result


def check_percentile(option: str, percentile: float) -> float:
    """Return `percentile`, or raise UsageError naming `option` when it is outside 0-100."""
    if not 0 <= percentile <= 100:
        raise UsageError(f"{option}: P is a percentage and must be between 0 and 100")
    return percentile


def parse_scorer_options(values: list[str]) -> dict[str, dict[str, Any]]:
    """Parse ``SCORER.KEY=VALUE``; VALUE is read as JSON when it parses, else as a string."""
    result: dict[str, dict[str, Any]] = {}
    for key, text in parse_assignments(values, "--scorer-option").items():
        scorer, dot, option = key.partition(".")
        if not dot or not option:
            raise UsageError(f"--scorer-option expects SCORER.KEY=VALUE, got {key}={text}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        result.setdefault(scorer, {})[option] = value
    return result


def check_beam_args(args: list[str], command: str = "run") -> None:
    """Reject arguments that no Beam pipeline option accepts, instead of dropping them.

    Extra positional arguments are rejected too: Beam would only log them.
    """
    import argparse

    from apache_beam.options.pipeline_options import PipelineOptions

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pending = [PipelineOptions]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:
            continue
    _, unknown = parser.parse_known_args(args)
    if not unknown:
        return
    first = unknown[0]
    if not first.startswith("-"):
        raise UsageError(
            f"unexpected extra argument {first!r}; 'annotate {command}' takes the arguments "
            f"shown by 'annotate {command} --help'"
        )
    if GLOBAL_OPTION.fullmatch(first):
        raise UsageError(
            f"unknown option {first}; put -q/-v before the command: annotate {first} {command} ..."
        )
    raise UsageError(
        f"unknown option {first}; run 'annotate {command} --help' for this tool's options "
        "(other options must be Beam pipeline options)"
    )


def local_runner(runner: str):
    """Return the runner to use: Beam's FnApiRunner for DirectRunner, else the name as given."""
    if runner.lower() not in LOCAL_RUNNERS:
        return runner
    from pipeline.local import local_runner as fn_api_runner

    # pipeline.local.log_runner logs the runner once the output directory is claimed,
    # so a usage error found before then is the only line printed.
    return fn_api_runner()


def verbosity(ctx: typer.Context) -> int:
    """Return the number of -v options given to `annotate` before the command."""
    return ctx.find_root().params.get("verbose", 0)


def fail(message: str, code: int) -> None:
    typer.echo(f"annotate: error: {message}", err=True)
    raise typer.Exit(code)


Verbose = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]


@app.callback()
def main(verbose: Verbose = 0, quiet: Quiet = False) -> None:
    configure_logging(verbose=verbose, quiet=quiet)
