"""Logging set-up for the command line: lifecycle lines at INFO, Beam's chatter at WARNING."""

from __future__ import annotations

import logging

OWN_LOGGERS = ("pipeline", "scorers", "schemas")


class _DropBeamImportNoise(logging.Filter):
    """Drop Beam's import-time warning about the optional Google Cloud client libraries."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


# Beam logs that warning on the root logger while it is imported, before any
# handler exists, so the filter sits on the root logger itself.
logging.getLogger().addFilter(_DropBeamImportNoise())


# Errors of a scorer's setup that the command line reports in one line of its own.
SCORER_SETUP_ERRORS = ("ModelDownloadError", "ScorerConfigError", "MissingDependencyError")


class _DropScorerSetupTracebacks(logging.Filter):
    """Drop Beam's log record, with traceback, of an error in a scorer's setup.

    The command line reports such an error in one line (see `fail_on_scorer_setup`).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[1] is None:
            return True
        return type(record.exc_info[1]).__name__ not in SCORER_SETUP_ERRORS


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """-q: warnings only; default: our INFO lines; -v: Beam's INFO too; -vv: DEBUG."""
    if quiet:
        own_level = logging.WARNING
    elif verbose >= 2:
        own_level = logging.DEBUG
    else:
        own_level = logging.INFO
    other_level = logging.INFO if verbose >= 1 else logging.WARNING
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_DropScorerSetupTracebacks())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(other_level)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own_level)
