"""Ctrl-C during a command: one line on stderr and exit code 130, not Beam's traceback."""

from __future__ import annotations

import logging
import signal
import threading
import traceback

import typer

logger = logging.getLogger(__name__)

# 128 + SIGINT, the status a shell reports for a program stopped by Ctrl-C.
INTERRUPTED_EXIT_CODE = 130


class Interrupted(KeyboardInterrupt):
    """Raised by the SIGINT handler of `ExitOnInterrupt` in place of KeyboardInterrupt.

    When a KeyboardInterrupt leaves an exec() of a string (dataclasses and
    typing run such code), CPython notes it, and a ``python -m`` process then
    kills itself with SIGINT at exit whatever exit code it chose (seen with
    3.11.7). That check matches the exact type, so this subclass keeps exit
    code 130.
    """


class ExitOnInterrupt(logging.Filter):
    """Turn SIGINT inside the block into one line naming `command` and exit code 130.

    Beam re-raises a KeyboardInterrupt from inside a DoFn as a RuntimeError
    ("KeyboardInterrupt [while running 'Score']"), so the exception type alone
    does not show an interruption. The SIGINT handler therefore records that
    the signal came, and any exception that follows it counts as the
    interruption. From then on, what the interruption causes is not printed
    either: log records with a traceback (Beam's, of the stopped bundle and of
    broken connections to worker processes) and errors of Beam's threads that
    watch the workers. With -v they are printed.

    Args:
        command: the command as the user typed it, such as "annotate run".
        output_dir: the output directory, named in the message.
        verbose: the -v count.
    """

    def __init__(self, command: str, output_dir: str, verbose: int = 0) -> None:
        super().__init__()
        self.command = command
        self.output_dir = output_dir
        self.verbose = verbose
        self.received = threading.Event()

    def __enter__(self) -> ExitOnInterrupt:
        self._previous_handler = signal.getsignal(signal.SIGINT)
        # Only the main thread can set handlers, and a SIGINT that the caller
        # ignores or handles itself is left to the caller.
        self._installed = (
            self._previous_handler is signal.default_int_handler
            and threading.current_thread() is threading.main_thread()
        )
        if self._installed:
            signal.signal(signal.SIGINT, self._record_and_raise)
        self._previous_hook = threading.excepthook
        threading.excepthook = self._hide_thread_error
        self._handlers = list(logging.getLogger().handlers)
        for handler in self._handlers:
            handler.addFilter(self)
        return self

    def __exit__(self, exc_type, error, error_traceback) -> None:
        for handler in self._handlers:
            handler.removeFilter(self)
        threading.excepthook = self._previous_hook
        if self._installed:
            signal.signal(signal.SIGINT, self._previous_handler)
        if error is None:
            return
        if not (self.received.is_set() or isinstance(error, KeyboardInterrupt)):
            return
        if self.verbose:
            traceback.print_exception(error)
        typer.echo(interrupted_message(self.command, self.output_dir), err=True)
        raise typer.Exit(INTERRUPTED_EXIT_CODE) from None

    def filter(self, record: logging.LogRecord) -> bool:
        """Keep a log record unless it carries a traceback and SIGINT came, without -v."""
        return self.verbose > 0 or not self.received.is_set() or not record.exc_info

    def _record_and_raise(self, signal_number, frame) -> None:
        self.received.set()
        raise Interrupted("interrupted by SIGINT")

    def _hide_thread_error(self, args: threading.ExceptHookArgs) -> None:
        if self.received.is_set() and not self.verbose:
            logger.debug("thread %s failed after SIGINT: %r", args.thread, args.exc_value)
            return
        self._previous_hook(args)


def interrupted_message(command: str, output_dir: str) -> str:
    return (
        f"annotate: interrupted: '{command}' stopped before it finished. Run the same "
        f"command again to resume it: the shards completed in {output_dir} are kept "
        "and skipped."
    )
