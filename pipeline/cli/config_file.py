"""Options of `annotate run` read from a TOML file, and the effective options printed as TOML.

A key is the long option name without its leading dashes (``default-percentile``;
underscores work too), and a ``[beam]`` table contains Beam pipeline options. The file's
values become click's defaults for this one invocation (``Context.default_map``), so click
converts and checks them like flags, and an option given on the command line overrides the
file.

The arguments INPUTS and OUTPUT_DIR stay on the command line. Because `annotate run` passes
unknown options on to Beam, click would otherwise take a Beam option such as
``--direct_num_workers`` for a missing argument.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any

import typer

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 reads TOML with the tomli backport
    import tomli as tomllib

BEAM_TABLE = "beam"
# Keys of ctx.meta that carry the file's path and Beam options from the callback to the command.
CONFIG_PATH_KEY = "annotate.config_file"
CONFIG_BEAM_ARGS_KEY = "annotate.config_beam_args"
# Options about the configuration itself, which a configuration file cannot set.
NOT_IN_FILE = ("config", "print-config", "help")


def load_config_file(
    ctx: typer.Context, param: typer.CallbackParam, path: str | None
) -> str | None:
    """Click callback of an eager ``--config`` option: make the file's values the defaults.

    Raises:
        typer.BadParameter: the file is missing, is not valid TOML, or contains an unknown
            key or a value of the wrong shape; click reports it with exit code 2.
    """
    if path is None:
        return None
    try:
        with open(path, "rb") as stream:
            table = tomllib.load(stream)
    except OSError as error:
        raise typer.BadParameter(f"cannot read {path}: {error.strerror}", ctx, param) from None
    except tomllib.TOMLDecodeError as error:
        raise typer.BadParameter(f"{path} is not valid TOML: {error}", ctx, param) from None

    beam_table = table.pop(BEAM_TABLE, {})
    try:
        defaults = option_defaults(table, ctx.command.params)
        beam_args = beam_arguments(beam_table)
    except ValueError as error:
        raise typer.BadParameter(f"{path}: {error}", ctx, param) from None
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[CONFIG_PATH_KEY] = os.path.abspath(path)
    ctx.meta[CONFIG_BEAM_ARGS_KEY] = beam_args
    return path


def option_defaults(table: Mapping[str, Any], params: Iterable[Any]) -> dict:
    """Map a configuration table to click parameter names, with values shaped as click expects.

    Raises:
        ValueError: a key names no option, or a value has the wrong shape.
    """
    params = list(params)
    by_key = {key_of(p): p for p in params if is_file_option(p)}
    arguments = {key_of(p) for p in params if p.param_type_name == "argument"}
    defaults = {}
    for key, value in table.items():
        param = by_key.get(key.replace("_", "-"))
        if key.replace("_", "-") in arguments:
            raise ValueError(f"{key} is an argument; give it on the command line")
        if param is None:
            raise ValueError(unknown_key_message(key, by_key))
        defaults[param.name] = shape_value(key, value, param.multiple)
    return defaults


def is_file_option(param: Any) -> bool:
    """Return whether a configuration file may set the click parameter `param`."""
    return param.param_type_name == "option" and key_of(param) not in NOT_IN_FILE


def key_of(param: Any) -> str:
    """Return the configuration key of a parameter: its long option name or argument name."""
    long_names = [opt for opt in param.opts if opt.startswith("--")]
    name = long_names[0][2:] if long_names else param.name
    return name.replace("_", "-")


def unknown_key_message(key: str, known: Iterable[str]) -> str:
    message = f"unknown key {key!r}"
    close = difflib.get_close_matches(key.replace("_", "-"), list(known), n=1)
    if close:
        message += f"; did you mean {close[0]!r}?"
    return message + " Keys are the options of 'annotate run' without their leading dashes."


def shape_value(key: str, value: Any, multiple: bool) -> Any:
    """Turn a TOML value into what click parses for the option.

    A repeatable option takes an array, one value, or a table, which becomes
    ``KEY=VALUE`` entries (``SCORER.KEY=VALUE`` for a table of tables). A single-valued
    option given an array gets its items joined with commas, as ``--scorers`` expects.
    """
    if multiple:
        if isinstance(value, dict):
            return assignments(value)
        return [scalar_text(key, item) for item in value] if isinstance(value, list) else [value]
    if isinstance(value, dict):
        raise ValueError(f"{key} takes a single value, not a table")
    if isinstance(value, list):
        return ",".join(scalar_text(key, item) for item in value)
    return value


def assignments(table: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Flatten ``{a = 1, b = {c = "x"}}`` to ``["a=1", "b.c=x"]``; non-strings as JSON."""
    result = []
    for key, value in table.items():
        if isinstance(value, dict):
            result.extend(assignments(value, f"{prefix}{key}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value)
            result.append(f"{prefix}{key}={text}")
    return result


def scalar_text(key: str, value: Any) -> str:
    if isinstance(value, (dict, list)):
        raise ValueError(f"{key} takes a list of plain values, not nested arrays or tables")
    return value if isinstance(value, str) else json.dumps(value)


def beam_arguments(table: Mapping[str, Any]) -> list[str]:
    """Turn the ``[beam]`` table into Beam command-line arguments.

    ``true`` gives a bare flag, ``false`` leaves the flag out, and an array repeats
    the option once per item.
    """
    if not isinstance(table, dict):
        raise ValueError(f"{BEAM_TABLE} must be a table of Beam pipeline options")
    args = []
    for key, value in table.items():
        if key == "runner":
            raise ValueError("set the runner with the top-level key 'runner', not in [beam]")
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                args.append(f"--{key}")
            elif item is not False:
                args.append(f"--{key}={scalar_text(f'{BEAM_TABLE}.{key}', item)}")
    return args


def merge_beam_arguments(file_args: Sequence[str], command_line_args: Sequence[str]) -> list[str]:
    """Merge Beam arguments: the file's, less the options the command line sets, then its own.

    A Beam option on the command line replaces the file's value for that option, also for
    options that Beam collects into a list, such as ``--experiments``.
    """
    given = set(parse_beam_arguments(command_line_args))
    kept = [arg for arg in file_args if arg[2:].partition("=")[0] not in given]
    return [*kept, *command_line_args]


def parse_beam_arguments(args: Iterable[str]) -> dict[str, Any]:
    """Read ``--key=value``, ``--key value`` and bare ``--flag`` arguments back into a table.

    A key given more than once becomes an array. Used only to print the configuration.
    """
    table: dict[str, Any] = {}
    pending = list(args)
    while pending:
        arg = pending.pop(0)
        if not arg.startswith("--"):
            continue
        key, sep, value = arg[2:].partition("=")
        if not sep:
            has_value = pending and not pending[0].startswith("-")
            value = pending.pop(0) if has_value else True
        if key in table:
            previous = table[key]
            table[key] = [*previous, value] if isinstance(previous, list) else [previous, value]
        else:
            table[key] = value
    return table


def effective_config_toml(ctx: typer.Context, beam_args: Iterable[str]) -> str:
    """Format the options this invocation runs with as a TOML file that `--config` reads.

    Options without a value (None) are left out, and the arguments are only named in a
    comment, because a configuration file cannot set them.
    """
    arguments = [
        str(ctx.params.get(p.name)) for p in ctx.command.params if p.param_type_name == "argument"
    ]
    lines = [f"# annotate {ctx.info_name} {' '.join(arguments)} --config FILE"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if not is_file_option(param) or value is None:
            continue
        if param.multiple:
            value = list(value)
        lines.append(f"{key_of(param)} = {toml_value(value)}")
    beam = parse_beam_arguments(beam_args)
    if beam:
        lines += ["", f"[{BEAM_TABLE}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in beam.items()]
    return "\n".join(lines) + "\n"


def toml_value(value: Any) -> str:
    """Format a string, number, boolean, choice or list of them as a TOML value."""
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    # A JSON string is a TOML basic string, except that TOML also requires DEL escaped.
    return json.dumps(str(value), ensure_ascii=False).replace("\x7f", "\\u007f")
