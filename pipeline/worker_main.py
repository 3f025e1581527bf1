"""Beam's SDK worker for local multi-process runs: quiet, and stopped outright by Ctrl-C.

`pipeline.local.LocalRunner` starts its worker processes with ``python -m
pipeline.worker_main`` in place of ``python -m
apache_beam.runners.worker.sdk_worker_main``. Ctrl-C on a terminal sends SIGINT
to the launcher and to every worker. Under Python's own handler each worker
would raise KeyboardInterrupt, print a traceback and shut down while its
bundle still runs. With SIGINT's default action the system ends the worker at
once and silently, like SIGKILL, and the launcher reports the interruption.

A worker sends its log records to the launcher, which prints them at the
launcher's level (`pipeline.logs`). Beam's harness would also print its INFO
start-up lines to the worker's stderr, so that every run began with a dozen
lines per worker; the worker's own stderr now shows errors only.
"""

import logging
import runpy
import signal


def quiet_worker_logging() -> None:
    """Print only errors on the worker's stderr; the launcher prints the rest."""
    # Importing pipeline.logs filters Beam's import-time warning about Google Cloud clients.
    import pipeline.logs  # noqa: F401

    # A handler on the root logger makes the harness's implicit logging.basicConfig a no-op.
    handler = logging.StreamHandler()
    handler.setLevel(logging.ERROR)
    logging.getLogger().addHandler(handler)
    # The harness, run as __main__, warns that a local worker has no semi-persistent
    # directory, which no local run has.
    logging.getLogger("__main__").setLevel(logging.ERROR)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    quiet_worker_logging()
    runpy.run_module(
        "apache_beam.runners.worker.sdk_worker_main", run_name="__main__", alter_sys=True
    )
